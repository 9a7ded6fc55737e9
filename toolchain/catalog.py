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
