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


def _brute_force_conv_ops(x, w, stride, pad, groups, all_ones=False):
    """Count (non-zero input, non-zero weight) pairs that reach an output, one by one."""
    B, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    Ho = (H + 2 * pad - kh) // stride + 1
    Wo = (W + 2 * pad - kw) // stride + 1
    og = O // groups
    n = 0
    for b in range(B):
        for o in range(O):
            g = o // og
            for i in range(Ho):
                for j in range(Wo):
                    for c in range(Cg):
                        for a in range(kh):
                            for d in range(kw):
                                r, q = i * stride - pad + a, j * stride - pad + d
                                if 0 <= r < H and 0 <= q < W:
                                    xi = 1 if all_ones else x[b, g * Cg + c, r, q] != 0
                                    wi = 1 if all_ones else w[o, c, a, d] != 0
                                    n += int(xi and wi)
    return n


@pytest.fixture
def brute_force_conv_ops():
    """(non-zero input, non-zero weight) pairs of a convolution, counted element by element:
    f(x (B, C, H, W), w (O, C/groups, kh, kw), stride, pad, groups, all_ones=False)."""
    return _brute_force_conv_ops
