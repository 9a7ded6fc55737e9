"""Check the layers contract of pyproject.toml with import-linter, on the package as installed.

import-linter finds a package's modules by walking its directory; in an editable install
``spikeport`` is ``toolchain/`` and its ``models`` / ``exporters`` subpackages live in other
folders (setuptools' ``package-dir``), so the walk would miss them. This script lays the
installed tree out in a temporary directory (a copy of the three folders, as ``pip install .``
arranges them) and runs ``lint-imports`` on it. Exit code: lint-imports'.

    python tests/tools/lint_layers.py            # check
    python tests/tools/lint_layers.py --tree DIR # also keep the laid-out tree in DIR
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = {"spikeport": "toolchain", "spikeport/models": "models",
          "spikeport/exporters": "exporters"}


def lay_out(dest: Path) -> Path:
    """Copy the source folders into ``dest`` as the installed ``spikeport`` package."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for installed, folder in LAYOUT.items():
        shutil.copytree(ROOT / folder, dest / installed, ignore=ignore, dirs_exist_ok=True)
    return dest


def lint(tree: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(exe), "--no-cache", str(ROOT / "pyproject.toml")], env=env,
                          cwd=tree, capture_output=True, text=True)


def main(argv: list[str]) -> int:
    keep = Path(argv[argv.index("--tree") + 1]) if "--tree" in argv else None
    with tempfile.TemporaryDirectory(prefix="spikeport-layers-") as tmp:
        tree = lay_out(keep or Path(tmp))
        r = lint(tree)
    sys.stdout.write(r.stdout[r.stdout.find("Contract"):] if "Contract" in r.stdout else r.stdout)
    sys.stderr.write(r.stderr)
    return r.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
