"""Shared fixtures. The tests folder is deliberately not a package (lava-dl installs a
top-level ``tests`` package of its own; SEMANTICS.md 11)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def tiny_recipe() -> Path:
    """A digits recipe small enough to train in about a second."""
    return FIXTURES / "tiny.yaml"
