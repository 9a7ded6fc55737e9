"""Everything registered, in one place: the CLI's ``list`` and the docs' support tables are
generated from here, and a test keeps docs/cli.md in step with it."""
from __future__ import annotations


def catalog() -> dict[str, list[tuple[str, str]]]:
    from models.architectures import ARCHITECTURES
    from toolchain.config import RECIPE_DIR, recipe_names
    from toolchain.data import DATASETS
    from toolchain.encoders import ENCODERS
    from toolchain.losses import LOSSES

    def rows(reg):
        return [(e.name, e.summary) for e in reg.entries()]

    def recipe_summary(name):
        first = (RECIPE_DIR / f"{name}.yaml").read_text().splitlines()[0]
        return first.lstrip("# ").strip()

    return {
        "datasets": rows(DATASETS),
        "encoders": rows(ENCODERS),
        "losses": rows(LOSSES),
        "models": rows(ARCHITECTURES),
        "recipes": [(n, recipe_summary(n)) for n in recipe_names()],
    }


BEGIN = "<!-- BEGIN GENERATED: spikeport list (python -m toolchain.catalog) -->"
END = "<!-- END GENERATED -->"


def markdown() -> str:
    """The registries as markdown tables, the block docs/cli.md embeds."""
    lines = [BEGIN]
    for kind, entries in catalog().items():
        lines += ["", f"**{kind}**", "", "| name | what it is |", "|---|---|"]
        lines += [f"| `{name}` | {summary} |" for name, summary in entries]
    lines += ["", END]
    return "\n".join(lines)


def update_doc(path) -> bool:
    """Rewrite the generated block of ``path``; True if it changed."""
    from pathlib import Path

    path = Path(path)
    text = path.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + markdown() + text[stop:]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    import sys
    from pathlib import Path

    doc = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    changed = update_doc(doc)
    print(f"{doc}: {'updated' if changed else 'up to date'}", file=sys.stderr)
