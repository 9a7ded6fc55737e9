"""Exact rewrites of pooling into the weights of the synapse next to it (netx has no pooling
layer, SEMANTICS.md 5).

A pool (SumPool2d, or AvgPool2d: the same with the factor 1/(kh kw)) is a convolution of
each channel with a window of ones, and a composition of linear maps is one linear map:

- **pool of spikes -> Conv2d** (sinabs: ``IF -> SumPool2d -> Conv2d``) is one convolution:
  on each axis, a conv (k, stride S, padding p, dilation d) after a pool (P, stride s,
  padding q) reads input s(S m + d u - p) + a - q for tap u and window offset a, i.e. the
  kernel K[s d u + a] += c w[u] of size s d (k - 1) + P, stride s S, padding s p + q.
- **Conv2d -> pool of the current** is one convolution the same way (K[S a + d u] += c w[u],
  stride S s, padding p, bias c P_h P_w b); the quantiser folds it for a stride-1,
  undilated convolution and a non-overlapping pool.
- **pool of spikes [-> Flatten] -> Affine / Linear** is an Affine whose weights are the
  pooled weights spread back over each window (the pool's transpose applied to each row):
  always exact.

Exact in float64 up to the rounding of the 1/(kh kw) factor. One case is not exact: where
the convolution pads the pool's output with zeros but the folded kernel would read real
inputs there (overlapping windows at the left edge, or inputs the pool drops at the right
edge); that is refused with the condition.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import nir
import numpy as np

from spikeport.core.errors import ExportError
from spikeport.exporters.loihi.chain import POOLS, LayerSpec
from spikeport.ir.program import Program, conv_padding, pair


@dataclass(frozen=True)
class Window:
    """One axis of a convolution or a pool: kernel k, stride s, padding p, dilation d."""
    k: int
    s: int
    p: int
    d: int = 1

    def out(self, n: int) -> int:
        return (n + 2 * self.p - self.d * (self.k - 1) - 1) // self.s + 1


def compose(outer: Window, inner: Window, n: int) -> tuple[Window, bool]:
    """``outer`` applied to the output of ``inner`` on an axis of ``n`` inputs, as one window
    (dilation 1; tap offsets inner.s * outer.d * u_outer + inner.d * u_inner), and whether
    that is exact at the outer's zero padding: outer padding must read only the inner's
    padding (always true without outer padding)."""
    k = inner.s * outer.d * (outer.k - 1) + inner.d * (inner.k - 1) + 1
    exact = outer.p == 0 or (inner.d * (inner.k - 1) < inner.s + inner.p
                             and inner.s * inner.out(n) >= n + inner.p)
    return Window(k, inner.s * outer.s, inner.s * outer.p + inner.p), exact


def _pool_windows(pool) -> tuple[Window, Window]:
    k, s, p = pair(pool.kernel_size), pair(pool.stride), pair(pool.padding)
    return Window(k[0], s[0], p[0]), Window(k[1], s[1], p[1])


def _pool_factor(pool) -> float:
    k = pair(pool.kernel_size)
    return 1.0 / (k[0] * k[1]) if isinstance(pool, nir.AvgPool2d) else 1.0


def _fold_kernel(w: np.ndarray, outer: tuple[Window, Window], inner: tuple[Window, Window],
                 conv_outer: bool, factor: float) -> np.ndarray:
    """The composite kernel of a conv (weights ``w``) and a pool (taps of weight 1)."""
    size = [inner[i].s * outer[i].d * (outer[i].k - 1) + inner[i].d * (inner[i].k - 1) + 1
            for i in (0, 1)]
    out = np.zeros(w.shape[:2] + tuple(size))
    for uo in product(range(outer[0].k), range(outer[1].k)):
        for ui in product(range(inner[0].k), range(inner[1].k)):
            e = [inner[i].s * outer[i].d * uo[i] + inner[i].d * ui[i] for i in (0, 1)]
            u = uo if conv_outer else ui
            out[:, :, e[0], e[1]] += w[:, :, u[0], u[1]]
    return factor * out


@dataclass
class Conv:
    """A convolution being folded: weights, bias and its two axes."""
    weight: np.ndarray
    bias: np.ndarray
    axes: tuple[Window, Window]
    groups: int

    def params(self) -> dict:
        return {"stride": (self.axes[0].s, self.axes[1].s), "padding": (self.axes[0].p, self.axes[1].p),
                "dilation": (self.axes[0].d, self.axes[1].d), "groups": self.groups}

    def out_shape(self, in_shape) -> tuple[int, int, int]:
        return (self.weight.shape[0], self.axes[0].out(in_shape[1]), self.axes[1].out(in_shape[2]))


def conv_of(name: str, conv: nir.Conv2d) -> Conv:
    """A NIR Conv2d as a :class:`Conv`; asymmetric padding is refused (netx pads both sides
    alike)."""
    w = np.asarray(conv.weight, dtype=np.float64)
    b = np.asarray(conv.bias, dtype=np.float64) if conv.bias is not None else np.zeros(w.shape[0])
    b = np.broadcast_to(b.reshape(-1), (w.shape[0],)).copy()
    stride, dil = pair(conv.stride), pair(conv.dilation)
    pads = conv_padding(conv.padding if isinstance(conv.padding, str) else pair(conv.padding),
                        w.shape[2:], dil)
    if any(lo != hi for lo, hi in pads):
        raise ExportError(f"convolution {name!r} uses asymmetric 'same' padding",
                          "use an odd kernel or explicit padding")
    axes = tuple(Window(int(w.shape[2 + i]), stride[i], pads[i][0], dil[i]) for i in (0, 1))
    return Conv(w, b, axes, int(conv.groups))


def conv_after_pool(conv: Conv, conv_name: str, pool, pool_name: str, in_shape) -> Conv:
    """``pool`` (of spikes of shape ``in_shape``) then ``conv``, as one convolution."""
    pw = _pool_windows(pool)
    axes, exact = zip(*(compose(conv.axes[i], pw[i], in_shape[1 + i]) for i in (0, 1)))
    if not all(exact):
        raise ExportError(
            f"pool {pool_name!r} before convolution {conv_name!r} cannot be folded exactly: the "
            "convolution's zero padding would cover inputs the pool reads (overlapping "
            "windows, or rows the pool drops at the edge)",
            "use a pool with stride = kernel on an input whose size is a multiple of it, or "
            "a convolution without padding")
    w = _fold_kernel(conv.weight, conv.axes, pw, True, _pool_factor(pool))
    return Conv(w, conv.bias, tuple(axes), conv.groups)


def pool_after_conv(conv: Conv, conv_name: str, pool, pool_name: str) -> Conv:
    """``conv`` then ``pool`` of its current, as one convolution, for the case the
    quantiser folds: a stride-1 undilated conv, a square pool with stride = kernel and no
    padding (the kernel K'[m, n] = c sum_{a,b<P} w[m-a, n-b], stride P)."""
    pw = _pool_windows(pool)
    k = pair(pool.kernel_size)
    if any(a.s != 1 or a.d != 1 for a in conv.axes) or any(a.s != a.k or a.p for a in pw) \
            or k[0] != k[1]:
        raise ExportError(f"pool {pool_name!r} after convolution {conv_name!r} cannot be folded "
                          "into one convolution (needs a stride-1, undilated convolution and "
                          "a square pool with stride = kernel, no padding)",
                          "use such a pool, or a strided convolution instead of pooling")
    c = _pool_factor(pool)
    axes = tuple(compose(pw[i], conv.axes[i], 0)[0] for i in (0, 1))
    w = _fold_kernel(conv.weight, pw, conv.axes, False, c)
    return Conv(w, conv.bias * (c * k[0] * k[1]), axes, conv.groups)


def dense_after_pool(w: np.ndarray, pool, in_shape) -> np.ndarray:
    """The weights (O, C*H*W) of ``pool`` (of a (C, H, W) input) then a dense layer with
    weights ``w`` (O, C*Hp*Wp): each pooled weight spread over its window (the pool's
    transpose), zero padding cut off."""
    C, H, W = in_shape
    wh, ww = _pool_windows(pool)
    Hp, Wp = wh.out(H), ww.out(W)
    w4 = w.reshape(w.shape[0], C, Hp, Wp)
    big = np.zeros((w.shape[0], C, H + 2 * wh.p + wh.k, W + 2 * ww.p + ww.k))
    for a, b in product(range(wh.k), range(ww.k)):
        big[:, :, a:a + wh.s * (Hp - 1) + 1:wh.s, b:b + ww.s * (Wp - 1) + 1:ww.s] += w4
    return _pool_factor(pool) * big[:, :, wh.p:wh.p + H, ww.p:ww.p + W].reshape(w.shape[0], -1)


def _pre_shapes(program: Program, spec: LayerSpec, prev_shape: tuple) -> list[tuple]:
    """The shape entering each node of ``spec.pre``."""
    shapes = [tuple(prev_shape)]
    for name in spec.pre[:-1]:
        shapes.append(tuple(program.shapes[name]))
    return shapes


def synapse(program: Program, spec: LayerSpec, prev_shape: tuple):
    """(weight, bias, conv parameters or None, population shape) of a layer's synapse with
    the pools before it and after it folded in; ``prev_shape`` is the shape of the spikes
    the layer reads."""
    name = spec.synapse
    syn = program.nodes[name]
    pools = [(n, program.nodes[n], s) for n, s in zip(spec.pre, _pre_shapes(program, spec, prev_shape))
             if isinstance(program.nodes[n], POOLS)]
    if isinstance(syn, nir.Conv2d):
        in_shape = tuple(program.shapes[spec.pre[-1]]) if spec.pre else tuple(prev_shape)
        return _conv_synapse(program, spec, syn, pools, in_shape, tuple(prev_shape))
    w = np.asarray(syn.weight, dtype=np.float64)
    b = getattr(syn, "bias", None)
    b = np.zeros(w.shape[0]) if b is None else np.asarray(b, dtype=np.float64)
    fed = tuple(program.shapes[spec.pre[-1]]) if spec.pre else tuple(prev_shape)
    if w.ndim != 2 or w.shape[1] != int(np.prod(fed)):
        raise ExportError(f"layer {name!r} takes {w.shape[-1]} inputs but receives "
                          f"{int(np.prod(fed))}", "check the graph's shapes (nir.NIRGraph.infer_types)")
    for _, pool, shape in reversed(pools):
        w = dense_after_pool(w, pool, shape)
    return w, b, None, (w.shape[0],)


def _conv_synapse(program, spec, syn, pools, in_shape, prev_shape):
    if len(in_shape) != 3:
        raise ExportError(f"convolution {spec.synapse!r} receives shape {in_shape}, expects (C, H, W)",
                          "feed convolutions an image-shaped input")
    conv = conv_of(spec.synapse, syn)
    C = in_shape[0]
    if conv.weight.shape[1] * conv.groups != C:
        raise ExportError(f"convolution {spec.synapse!r} expects {conv.weight.shape[1] * conv.groups} "
                          f"input channels, receives {C}", "check the graph's shapes")
    for pool_name, pool, shape in reversed(pools):
        conv = conv_after_pool(conv, spec.synapse, pool, pool_name, shape)
    if spec.post_pool is not None:
        conv = pool_after_conv(conv, spec.synapse, program.nodes[spec.post_pool], spec.post_pool)
    return conv.weight, conv.bias, conv.params(), conv.out_shape(prev_shape)
