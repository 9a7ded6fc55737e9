from pathlib import Path

from spikeport.catalog import (BEGIN, END, MATRIX_BEGIN, PROFILES_BEGIN, markdown, profiles_table,
                               support_matrix)

ROOT = Path(__file__).resolve().parent.parent


def test_cli_doc_lists_exactly_what_is_registered():
    text = (ROOT / "docs" / "cli.md").read_text()
    block = text[text.index(BEGIN):text.index(END) + len(END)]
    assert block == markdown(), "docs/cli.md is stale: run .venv/bin/python -m spikeport.catalog"


def test_readme_starts_with_the_two_commands():
    lines = [l for l in (ROOT / "README.md").read_text().splitlines() if l.startswith("make ")]
    assert [l.split()[:2] for l in lines[:2]] == [["make", "demo"], ["make", "test"]]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_targets_doc_support_matrix_is_generated_from_the_registries():
    text = (ROOT / "docs" / "targets.md").read_text()
    start = text.index(MATRIX_BEGIN)
    block = text[start:text.index(END, start) + len(END)]
    assert block == support_matrix(), "docs/targets.md is stale: run .venv/bin/python -m spikeport.catalog"


def test_energy_doc_lists_every_profile_constant_with_its_source():
    text = (ROOT / "docs" / "energy.md").read_text()
    start = text.index(PROFILES_BEGIN)
    block = text[start:text.index(END, start) + len(END)]
    assert block == profiles_table(), "docs/energy.md is stale: run .venv/bin/python -m spikeport.catalog"
