"""Everything registered, in one place: the CLI's ``list`` and the docs' support tables are
generated from here, and a test keeps docs/cli.md in step with it."""
from __future__ import annotations


def catalog() -> dict[str, list[tuple[str, str]]]:
    from spikeport.data.datasets import DATASETS
    from spikeport.data.encoders import ENCODERS
    from spikeport.models.architectures import ARCHITECTURES
    from spikeport.models.neurons import NEURONS, SURROGATES
    from spikeport.training.losses import LOSSES
    from spikeport.training.methods import method_registry
    from spikeport.training.optimizers import OPTIMIZERS
    from spikeport.training.recipes import RECIPES

    def rows(reg):
        return [(e.name, e.summary) for e in reg.entries()]

    return {
        "datasets": rows(DATASETS),
        "encoders": rows(ENCODERS),
        "losses": rows(LOSSES),
        "methods": rows(method_registry()),
        "models": rows(ARCHITECTURES),
        "neurons": rows(NEURONS),
        "surrogates": rows(SURROGATES),
        "optimizers": rows(OPTIMIZERS),
        "recipes": rows(RECIPES),
    }


BEGIN = "<!-- BEGIN GENERATED: spikeport list (python -m spikeport.catalog) -->"
END = "<!-- END GENERATED -->"


def markdown() -> str:
    """The registries as markdown tables, the block docs/cli.md embeds."""
    lines = [BEGIN]
    for kind, entries in catalog().items():
        lines += ["", f"**{kind}**", "", "| name | what it is |", "|---|---|"]
        lines += [f"| `{name}` | {summary} |" for name, summary in entries]
    lines += ["", END]
    return "\n".join(lines)


MATRIX_BEGIN = "<!-- BEGIN GENERATED: support matrix (python -m spikeport.catalog) -->"


def support_matrix() -> str:
    """NIR node types x targets, and the model layers the exporter handles, as markdown."""
    from spikeport.models.export import HANDLERS
    from spikeport.exporters.targets import TARGETS, target_names

    names = target_names()
    supported = {t: set(TARGETS.get(t).supported()) for t in names}
    nodes = sorted(set().union(*supported.values()))
    lines = [MATRIX_BEGIN, "", "| NIR node | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for n in nodes:
        lines.append(f"| `{n}` | " + " | ".join("yes" if n in supported[t] else "no" for t in names) + " |")
    lines += ["", "| target | what runs | exactness | energy profiles |", "|---|---|---|---|"]
    for t in names:
        tg = TARGETS.get(t)
        lines.append(f"| `{t}` | {tg.summary} | {tg.exactness} | {', '.join(tg.profiles)} |")
    lines += ["", "Model layers the exporter turns into NIR:", "",
              "| layer | becomes |", "|---|---|"]
    for e in HANDLERS.entries():
        lines.append(f"| `{e.name}` | {e.summary} |")
    lines += ["", END]
    return "\n".join(lines)


PROFILES_BEGIN = "<!-- BEGIN GENERATED: energy profiles (python -m spikeport.catalog) -->"


def profiles_table() -> str:
    """Every constant of every shipped energy profile with its marker and source."""
    from spikeport.estimation.profiles import list_profiles, load_profile

    lines = [PROFILES_BEGIN, ""]
    for name in list_profiles():
        p = load_profile(name)
        lines += [f"**{name}** ({p.device}): {p.description}", "",
                  "| constant | value | basis | marker | source |", "|---|---|---|---|---|"]
        for cname, c in p.constants.items():
            d = c.as_dict()
            lines.append(f"| `{cname}` | {d['value']:g} {d['unit']} | {d['basis']} | {d['marker']} | "
                         f"{d['source'].replace('|', '/')} |")
        for note in p.notes:
            lines.append(f"\n- {note}")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def update_doc(path, begin: str = BEGIN, render=None) -> bool:
    """Rewrite the generated block of ``path``; True if it changed."""
    from pathlib import Path

    path = Path(path)
    text = path.read_text()
    start = text.index(begin)
    stop = text.index(END, start) + len(END)
    new = text[:start] + (render or markdown)() + text[stop:]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    import sys
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs"
    for doc, begin, render in ((docs / "cli.md", BEGIN, markdown),
                               (docs / "targets.md", MATRIX_BEGIN, support_matrix),
                               (docs / "energy.md", PROFILES_BEGIN, profiles_table)):
        changed = update_doc(doc, begin, render)
        print(f"{doc}: {'updated' if changed else 'up to date'}", file=sys.stderr)
