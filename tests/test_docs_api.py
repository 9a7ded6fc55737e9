"""docs/api.md: every example runs, in order, in one namespace (as a reader would paste them),
in an empty working directory; the public names it lists are the package's."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "api.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", API_DOC.read_text(), flags=re.S)


def test_the_api_table_lists_exactly_the_public_names():
    import spikeport

    listed = set(re.findall(r"^\| `spikeport\.(\w+)\(", API_DOC.read_text(), flags=re.M))
    assert listed == set(spikeport.__all__) - {"SpikeportError"}
    for name in spikeport.__all__:
        assert callable(getattr(spikeport, name)), name


def test_import_spikeport_is_light():
    """`import spikeport` alone pulls in neither torch nor onnxruntime (names load on use)."""
    import subprocess
    import sys

    code = ("import sys, spikeport; heavy = [m for m in ('torch', 'onnxruntime', 'snntorch') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.slow
def test_every_example_in_docs_api_runs(tmp_path, monkeypatch, capsys):
    blocks = _blocks()
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/api.md block {i + 1}", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out
    assert "unknown target 'no-such-target' -- fix:" in printed
    assert (tmp_path / "runs" / "api" / "model.net").is_file()
    assert (tmp_path / "runs" / "api" / "validation.json").is_file()
