"""Static images -> events -> frames: a saccade event-camera simulator, binning, a disk cache.

The simulator follows the protocol N-MNIST was recorded with (G. Orchard, A. Jayawant,
G. K. Cohen, N. Thakor, "Converting Static Image Datasets to Spiking Neuromorphic Datasets
Using Saccades", Front. Neurosci. 9:437, 2015): the sensor, not the image, moves, along three
saccades that form a triangle, each ``saccade_us`` (100 ms) long, 300 ms in all. Here the
image is displaced along the triangle instead (the same relative motion) with bilinear
sub-pixel interpolation, and every pixel is a DVS pixel (docs/data.md has the equations):

- log intensity L = ln(log_offset + I), I in [0, 1] the displaced image at that moment;
- the pixel remembers L_ref, its log intensity at its last event (at t = 0: the image at
  the first vertex, before any motion); sampled every ``dt_us``, it emits an ON event when
  L - L_ref >= threshold and an OFF event when L - L_ref <= -threshold, provided
  ``refractory_us`` have passed since its last event; an event sets L_ref = L;
- background noise (``noise_hz`` per pixel, Poisson) adds events of random polarity, which
  obey the refractory period and reset the pixel like any other event.

Events come in tonic's structured layout (fields x, y, t in microseconds, p with 1 = ON,
0 = OFF; tonic's own dtype, four little-endian int64 fields) without importing tonic, which
is GPL-3.0-only and stays an optional extra. Binning turns a recording into frames
(T, 2, H, W) by time window, channel = polarity, and ``binarize`` decides what a bin with
several events becomes: ``clip`` one spike (what the Loihi targets take), ``count`` the
count. Binned splits are cached on disk (:func:`cached_frames`), so only the first load of a
dataset simulates anything.

No randomness except the noise, drawn from a generator seeded by (``noise_seed``, image
index), so a recording does not depend on how images are grouped into batches.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
from pydantic import Field, model_validator

from spikeport.core import io
from spikeport.core.errors import DataError
from spikeport.core.registry import Invalid, Params

log = logging.getLogger(__name__)

# tonic's event layout (tonic.datasets.NMNIST.dtype: x, y, t, p as Python int = int64).
EVENT_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
OFF, ON = 0, 1
N_SACCADES = 3
# Part of every cache key: bump it when the simulator or the binning changes what they
# produce, so no cache written by an older version is read.
SIMULATOR_VERSION = 1
CHUNK = 256  # images simulated together (bounds the working memory, not the result)

NoiseSeed = Annotated[int, Field(ge=0, lt=2 ** 32, description="an integer from 0 to 4294967295")]


class SaccadeParams(Params):
    """The simulator's parameters (docs/data.md)."""

    threshold: Annotated[float, Field(gt=0, le=10)] = 0.2  # contrast threshold C, log units
    refractory_us: Annotated[int, Field(ge=0, le=10_000_000)] = 1000
    noise_hz: Annotated[float, Field(ge=0, le=100_000)] = 0.0  # per pixel
    noise_seed: NoiseSeed = 0
    saccade_px: Annotated[float, Field(gt=0, le=64)] = 3.0  # the triangle's base and height
    saccade_us: Annotated[int, Field(gt=0, le=10_000_000)] = 100_000
    dt_us: Annotated[int, Field(gt=0, le=1_000_000)] = 1000  # sampling step of the pixels
    log_offset: Annotated[float, Field(gt=0, le=100)] = 0.1  # dark level in L = ln(offset + I)

    @model_validator(mode="after")
    def _whole_steps(self) -> "SaccadeParams":
        if self.saccade_us % self.dt_us:
            raise Invalid(f"{self.dt_us} does not divide saccade_us {self.saccade_us}: a "
                          "saccade must last a whole number of steps",
                          "use a dt_us that divides saccade_us, e.g. 1000", key="dt_us")
        return self

    @property
    def duration_us(self) -> int:
        return N_SACCADES * self.saccade_us

    @property
    def steps(self) -> int:
        return self.duration_us // self.dt_us


class BinParams(Params):
    """How events become frames: windows of ``time_window_us`` from t = 0 to the end of the
    recording, and what a (pixel, polarity, window) with several events becomes."""

    time_window_us: Annotated[int, Field(gt=0, le=10_000_000)] = 10_000
    binarize: Literal["clip", "count"] = "clip"


def n_bins(duration_us: int, time_window_us: int) -> int:
    """Windows covering [0, duration): the last one may be partly empty."""
    return -(-duration_us // time_window_us)


# ---------------------------------------------------------------------------- motion

def saccade_vertices(amplitude: float) -> np.ndarray:
    """The triangle (dx, dy) in pixels, first vertex repeated at the end: an isosceles
    triangle of base and height ``amplitude`` with its centroid at (0, 0) (so the image
    stays centred on average); y grows downwards, the apex is up."""
    a = float(amplitude)
    return np.array([[-a / 2, a / 3], [a / 2, a / 3], [0.0, -2 * a / 3], [-a / 2, a / 3]])


def saccade_offsets(p: SaccadeParams) -> np.ndarray:
    """(steps + 1, 2): the displacement at t = k * dt_us, k = 0 ... steps, moving at constant
    speed along each side of the triangle, one side per saccade."""
    t = np.arange(p.steps + 1, dtype=np.int64) * p.dt_us
    leg = np.minimum(t // p.saccade_us, N_SACCADES - 1)
    frac = (t - leg * p.saccade_us) / p.saccade_us
    v = saccade_vertices(p.saccade_px)
    return v[leg] + frac[:, None] * (v[leg + 1] - v[leg])


def _shift_int(a: np.ndarray, n: int, axis: int) -> np.ndarray:
    """out[..., i, ...] = a[..., i - n, ...] along ``axis``, zero where i - n is outside."""
    out = np.zeros_like(a)
    size = a.shape[axis]
    if abs(n) >= size:
        return out
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    src[axis] = slice(max(0, -n), size - max(0, n))
    dst[axis] = slice(max(0, n), size - max(0, -n))
    out[tuple(dst)] = a[tuple(src)]
    return out


def _shift_axis(a: np.ndarray, d: float, axis: int) -> np.ndarray:
    n = math.floor(d)
    f = d - n
    if f == 0:
        return _shift_int(a, n, axis)
    return (1 - f) * _shift_int(a, n, axis) + f * _shift_int(a, n + 1, axis)


def shift_images(images: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Images (B, H, W) displaced by (dx, dy) pixels: out(y, x) = I(y - dy, x - dx), bilinear
    between pixel centres, zero (dark) outside the image."""
    return _shift_axis(_shift_axis(images, dy, axis=1), dx, axis=2)


def resize_linear(images: np.ndarray, scale: int) -> np.ndarray:
    """Images (B, H, W) enlarged ``scale`` times, linear between pixel centres (edges held)."""
    if scale == 1:
        return images
    for axis in (1, 2):
        n = images.shape[axis]
        pos = np.clip((np.arange(n * scale) + 0.5) / scale - 0.5, 0, n - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        w = (pos - lo).reshape([-1 if i == axis else 1 for i in range(3)])
        images = (1 - w) * np.take(images, lo, axis) + w * np.take(images, hi, axis)
    return images


def place(images: np.ndarray, size: int) -> np.ndarray:
    """Images (B, h, w) centred in a dark (B, size, size) frame."""
    b, h, w = images.shape
    if h > size or w > size:
        raise ValueError(f"images of {h}x{w} do not fit a {size}x{size} frame")
    out = np.zeros((b, size, size), dtype=images.dtype)
    top, left = (size - h) // 2, (size - w) // 2
    out[:, top:top + h, left:left + w] = images
    return out


def jitter_copies(images: np.ndarray, copies: int, jitter_px: int, seed: int) -> np.ndarray:
    """(copies * N, H, W): the images (N, H, W) first, then ``copies - 1`` more of them, each
    image displaced by whole pixels (dx, dy) drawn uniformly from [-jitter_px, jitter_px]
    (copy c from a generator seeded by (seed, c)); dark where the image moved away."""
    out = [images]
    for c in range(1, copies):
        d = np.random.default_rng([seed, c]).integers(-jitter_px, jitter_px + 1, (len(images), 2))
        moved = np.empty_like(images)
        for i, (dx, dy) in enumerate(d):
            moved[i] = _shift_int(_shift_int(images[i], int(dy), 0), int(dx), 1)
        out.append(moved)
    return np.concatenate(out)


# ---------------------------------------------------------------------------- events

def _noise(p: SaccadeParams, shape: tuple[int, int], indices: range) -> dict[int, tuple]:
    """Background noise of a batch: step k -> (batch index, y, x, polarity) arrays. Per
    image a Poisson number of events (mean noise_hz * duration per pixel) at uniform
    steps, pixels and polarities, from a generator seeded by (noise_seed, image index)."""
    if p.noise_hz == 0:
        return {}
    h, w = shape
    mean = p.noise_hz * p.duration_us * 1e-6 * h * w
    cols = []
    for j, index in enumerate(indices):
        rng = np.random.default_rng([p.noise_seed, index])
        n = int(rng.poisson(mean))
        k, y, x, pol = (rng.integers(0, m, n) for m in (p.steps, h, w, 2))
        cols.append(np.stack([k, np.full(n, j), y, x, pol]))
    k, b, y, x, pol = np.concatenate(cols, axis=1)
    order = np.argsort(k, kind="stable")
    k, b, y, x, pol = k[order], b[order], y[order], x[order], pol[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    ends = np.r_[starts[1:], len(k)]
    return {int(k[s]): (b[s:e], y[s:e], x[s:e], pol[s:e]) for s, e in zip(starts, ends)}


def simulate(images: np.ndarray, p: SaccadeParams, first_index: int = 0) -> list[np.ndarray]:
    """Events of each image (B, H, W), values in [0, 1], seen by a DVS pixel array moving
    along the saccades of ``p``: one structured array (:data:`EVENT_DTYPE`) per image,
    sorted by t, then y, then x. ``first_index``: the index of images[0] in its dataset
    (seeds its noise)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"images must be (B, H, W), got shape {images.shape}")
    bsz, h, w = images.shape
    offsets = saccade_offsets(p)
    noise = _noise(p, (h, w), range(first_index, first_index + bsz))

    offset = np.float32(p.log_offset)

    def log_intensity(k: int) -> np.ndarray:  # float32: the cost is in these arrays
        dx, dy = (float(v) for v in offsets[k])
        return np.log(offset + np.clip(shift_images(images, dx, dy), 0, None))

    ref = log_intensity(0)
    last = np.full(images.shape, -(1 << 62), dtype=np.int64)
    found = []
    # The change during step k (from t_k to t_k + dt) is stamped t_k = k * dt_us.
    for k in range(p.steps):
        t = k * p.dt_us
        level = log_intensity(k + 1)
        diff = level - ref
        ready = (t - last) >= p.refractory_us
        on = ready & (diff >= p.threshold)
        fire = on | (ready & (diff <= -p.threshold))
        if k in noise:
            b, y, x, pol = noise[k]
            extra = np.zeros_like(fire)
            extra[b, y, x] = ready[b, y, x] & ~fire[b, y, x]
            on[b, y, x] |= extra[b, y, x] & (pol == ON)
            fire |= extra
        ref[fire] = level[fire]
        last[fire] = t
        b, y, x = np.nonzero(fire)
        found.append((b, y, x, np.full(len(b), t), on[b, y, x].astype(np.int64)))
    return _per_image(found, bsz)


def _per_image(found: list[tuple], bsz: int) -> list[np.ndarray]:
    b, y, x, t, pol = (np.concatenate(c) for c in zip(*found))
    order = np.argsort(b, kind="stable")  # keeps each image's (t, y, x) order
    ev = np.empty(len(b), dtype=EVENT_DTYPE)
    for name, col in zip("xytp", (x, y, t, pol)):
        ev[name] = col[order]
    bounds = np.cumsum(np.bincount(b.astype(np.int64), minlength=bsz))[:-1]
    return [np.ascontiguousarray(e) for e in np.split(ev, bounds)]


# ---------------------------------------------------------------------------- binning

def to_frames(events: np.ndarray, sensor: tuple[int, int], time_window_us: int, bins: int,
              binarize: str = "clip") -> np.ndarray:
    """Frames (bins, 2, H, W) uint8 of one recording: bin i holds the events with
    i * time_window_us <= t < (i + 1) * time_window_us, channel 1 = ON (p > 0), 0 = OFF;
    events at or after bins * time_window_us are not in any frame. ``binarize``: ``clip``
    gives 1 where at least one event fell (at most one spike per pixel, polarity and
    step), ``count`` the number of events (saturating at 255). An event outside the sensor
    or before t = 0 is a :class:`DataError`."""
    h, w = sensor
    x, y, t = (np.asarray(events[k], dtype=np.int64) for k in "xyt")
    bad = (x < 0) | (x >= w) | (y < 0) | (y >= h) | (t < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"event {i} (x={x[i]}, y={y[i]}, t={t[i]}) lies outside a {w}x{h} "
                        "sensor or before t = 0", "bin the events with the sensor size they "
                        "were recorded with")
    b = t // time_window_us
    keep = b < bins
    pol = (np.asarray(events["p"])[keep] > 0).astype(np.int64)
    flat = ((b[keep] * 2 + pol) * h + y[keep]) * w + x[keep]
    counts = np.bincount(flat, minlength=bins * 2 * h * w)
    counts = np.minimum(counts, 1 if binarize == "clip" else 255)
    return counts.astype(np.uint8).reshape(bins, 2, h, w)


def simulate_frames(images: np.ndarray, sim: SaccadeParams, binning: BinParams,
                    out: np.ndarray, progress: Callable[[int], None] | None = None) -> None:
    """Fill ``out`` (N, T, 2, H, W) with the binned events of images (N, H, W), CHUNK images
    at a time (the working memory does not grow with N)."""
    n, h, w = images.shape
    bins = out.shape[1]
    for start in range(0, n, CHUNK):
        batch = simulate(images[start:start + CHUNK], sim, first_index=start)
        for j, ev in enumerate(batch):
            out[start + j] = to_frames(ev, (h, w), binning.time_window_us, bins, binning.binarize)
        if progress is not None:
            progress(len(batch))


# ---------------------------------------------------------------------------- cache

def cache_dir() -> Path:
    """``$SPIKEPORT_CACHE/events``, else ``${XDG_CACHE_HOME:-~/.cache}/spikeport/events``
    (the Lava environment's cache root, exporters/lava/env.py; empty = unset)."""
    explicit = os.environ.get("SPIKEPORT_CACHE")
    if explicit:
        return Path(explicit).expanduser() / "events"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "spikeport" / "events"


def cache_key(images: np.ndarray, **parts) -> str:
    """A key for the frames of ``images`` made with ``parts`` (dataset, split, simulator and
    binning parameters): the source pixels are hashed too, so new data never reads old
    frames."""
    h = hashlib.sha256(json.dumps({"version": SIMULATOR_VERSION, **parts}, sort_keys=True,
                                  default=str).encode())
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    return h.hexdigest()[:32]


def _read_cache(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached frames, memory-mapped copy-on-write (writable, as torch.from_numpy wants,
    and never written back), or None when absent or not what was expected."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        arr = None
    if arr is None or arr.shape != shape or arr.dtype != np.uint8:
        log.warning("event cache %s is unreadable or stale; rebuilding it", path)
        return None
    return arr


def cached_frames(key: str, shape: tuple[int, ...], build: Callable[[np.ndarray], None]
                  ) -> np.ndarray:
    """Frames of ``shape`` (uint8) from the cache file ``<cache_dir>/<key>.npy``; built first
    (``build(out)`` fills a memory-mapped array) when the file is absent or stale. The file
    is written to a temporary name and renamed, so a killed build leaves no partial cache."""
    if math.prod(shape) == 0:
        out = np.zeros(shape, dtype=np.uint8)
        build(out)
        return out
    path = cache_dir() / f"{key}.npy"
    arr = _read_cache(path, shape)
    if arr is not None:
        return arr

    def write(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        build(out)
        out.flush()
        del out

    io.atomic_write(path, write)
    arr = _read_cache(path, shape)
    if arr is None:
        raise DataError(f"the event cache {path} could not be read back after writing it",
                        f"check the disk, or point SPIKEPORT_CACHE at another directory")
    return arr
