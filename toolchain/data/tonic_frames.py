"""Recordings of a tonic dataset -> transforms -> frames (N, T, P, H, W) uint8, cached.

Each recording is read with tonic's class (:func:`spikeport.data.tonic_sets.open_split`),
put into int64 fields (camera: x, y, t, p with p = 1 ON / 0 OFF; audio: t, x = channel, p),
sorted by t, and passed through tonic.transforms in this order (docs/data.md):

1. ``denoise_us``: ``Denoise(filter_time)``, drops events with no neighbour (1 pixel) within
   that many microseconds;
2. ``crop``: ``[w, h]`` is ``CenterCrop(sensor_size, (w, h))``; ``[x, y, w, h]`` keeps the box
   x <= x' < x + w, y <= y' < y + h and moves it to the origin (tonic 1.7.0 has no
   deterministic box crop: this is a mask and a subtraction);
3. ``downsample``: ``Downsample(spatial_factor=f)``, x' = floor(f x) (and y): the frame is
   floor((W - 1) f) + 1 wide;
4. ``ToFrame``: by time, windows of ``time_window_us`` from the recording's first event
   (tonic's own start), exactly ``frames`` of them (``end_time`` = start + frames * window):
   a shorter recording ends in empty frames, events after the last window are dropped; or
   by count, ``event_count`` events per frame (the last frame may hold fewer), the first
   ``frames`` frames kept and missing ones empty.

Counts become uint8 as in the simulated datasets (``binarize``: ``clip`` min(count, 1),
``count`` min(count, 255)). Audio recordings (SHD, N-TIDIGITS18: one polarity, a channel per
x) become (T, 1, 1, channels), which the dense models flatten like any frame.

A split is binned once into the event cache (:func:`spikeport.data.events.cached_frames`, a
memory map filled recording by recording and flushed every CHUNK) under a key over the
dataset, the split, the selected recordings, these parameters, and the name, size and mtime
of every file in the dataset's folder, so a changed or added file is a new cache entry.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import numpy as np
from pydantic import Field, model_validator
from tqdm import tqdm

from spikeport.core.errors import ConfigError, DataError
from spikeport.core.registry import Invalid, Params
from spikeport.data import events
from spikeport.data import tonic_sets as ts

FORMAT_VERSION = 1  # part of the cache key: bump when the binning below changes
CHUNK = 256         # recordings between flushes of the memory map
AUDIO_DTYPE = np.dtype([("t", "<i8"), ("x", "<i8"), ("p", "<i8")])
Micros = Annotated[int, Field(gt=0, le=100_000_000)]


class TonicParams(Params):
    """The ``dataset`` keys of a tonic dataset (docs/data.md)."""

    data_dir: str | None = None  # else $SPIKEPORT_DATA, else the per-user default
    time_window_us: Micros | None = None  # default: the dataset's (docs/data.md)
    event_count: Annotated[int, Field(gt=0, le=100_000_000)] | None = None
    frames: Annotated[int, Field(gt=0, le=100_000)] | None = None  # T; default: the dataset's
    binarize: Literal["clip", "count"] = "clip"
    denoise_us: Micros | None = None
    crop: list[Annotated[int, Field(ge=0, le=100_000)]] | None = None  # [w, h] or [x, y, w, h]
    downsample: Annotated[float, Field(gt=0, le=1)] = 1.0
    max_per_class: Annotated[int, Field(ge=1)] | None = None  # the first k of each class

    @model_validator(mode="after")
    def _consistent(self) -> "TonicParams":
        if self.time_window_us is not None and self.event_count is not None:
            raise Invalid("set together with time_window_us: frames are cut by time or by "
                          "count, not both", "remove one of them", key="event_count")
        if self.crop is not None and (len(self.crop) not in (2, 4) or 0 in self.crop[-2:]):
            raise Invalid(f"{self.crop} is neither [w, h] (a centre crop) nor [x, y, w, h] "
                          "(a box) with w, h > 0", "write e.g. crop: [32, 32]", key="crop")
        return self


@dataclass(frozen=True)
class Geometry:
    """The frame after crop and downsample: (W, H, P) as tonic's sensor_size."""

    sensor: tuple[int, int, int]
    crop_sensor: tuple[int, int, int]  # after the crop, before downsampling


def geometry(lay: ts.Layout, p: TonicParams) -> Geometry:
    w, h, pol = lay.sensor
    if lay.audio and (p.crop is not None or p.denoise_us is not None):
        raise ConfigError(f"dataset {lay.name!r}: crop and denoise_us apply to camera "
                          "datasets; an audio dataset has channels, not pixels",
                          "remove dataset.crop and dataset.denoise_us (downsample merges "
                          "channels)")
    if p.crop is not None:
        x, y, cw, ch = ([(w - p.crop[0]) // 2, (h - p.crop[1]) // 2] if len(p.crop) == 2
                        else p.crop[:2]) + p.crop[-2:]
        if x < 0 or y < 0 or x + cw > w or y + ch > h:
            raise ConfigError(f"dataset {lay.name!r}: dataset.crop {p.crop} does not fit "
                              f"the {w}x{h} sensor", f"crop within {w}x{h}")
        w, h = cw, ch
    crop_sensor = (w, h, pol)
    w = int(np.floor((w - 1) * p.downsample)) + 1
    h = h if lay.audio else int(np.floor((h - 1) * p.downsample)) + 1
    return Geometry((w, h, pol), crop_sensor)


def _normalise(ev: np.ndarray, audio: bool) -> np.ndarray:
    """tonic's fields of any dtype (bool or uint polarity, uint16 coordinates) as int64,
    polarity 1 where p > 0, sorted by t (stable)."""
    out = np.empty(len(ev), dtype=AUDIO_DTYPE if audio else events.EVENT_DTYPE)
    for k in out.dtype.names:
        out[k] = np.asarray(ev[k]).astype(np.int64) if k != "p" else np.asarray(ev[k]) > 0
    t = out["t"]
    if len(t) > 1 and (np.diff(t) < 0).any():
        out = out[np.argsort(t, kind="stable")]
    return out


def make_transform(lay: ts.Layout, p: TonicParams, geo: Geometry) -> Callable:
    """The transforms 1-3 above as one tonic.transforms.Compose (identity if none)."""
    tonic = ts.tonic_module(lay.name)
    steps: list[Any] = []
    if p.denoise_us is not None:
        steps.append(tonic.transforms.Denoise(filter_time=p.denoise_us))
    if p.crop is not None and len(p.crop) == 2:
        steps.append(tonic.transforms.CenterCrop(sensor_size=lay.sensor,
                                                 size=(p.crop[0], p.crop[1])))
    elif p.crop is not None:
        x0, y0, cw, ch = p.crop

        def box(ev: np.ndarray) -> np.ndarray:
            keep = (ev["x"] >= x0) & (ev["x"] < x0 + cw) & (ev["y"] >= y0) & (ev["y"] < y0 + ch)
            ev = ev[keep]
            ev["x"] -= x0
            ev["y"] -= y0
            return ev
        steps.append(box)
    if p.downsample != 1:
        steps.append(tonic.transforms.Downsample(spatial_factor=p.downsample))
    return tonic.transforms.Compose(steps)


def bin_recording(ev: np.ndarray, lay: ts.Layout, p: TonicParams, geo: Geometry,
                  transform: Callable, where: str) -> np.ndarray:
    """One recording's frames (T, P, H, W) uint8 (audio: (T, 1, 1, channels))."""
    tonic = ts.tonic_module(lay.name)
    window, frames = _window(lay, p), p.frames or lay.frames
    w, h, pol = geo.sensor
    out = np.zeros((frames, pol, h, w), dtype=np.uint8)
    ev = _normalise(ev, lay.audio)
    if len(ev):
        ev = transform(ev)
    if len(ev):
        ev = _inside(ev, lay, geo, where)
    if not len(ev):  # tonic's ToFrame returns one frame of the wrong shape when empty
        return out
    if p.event_count is not None:
        to_frame = tonic.transforms.ToFrame(sensor_size=geo.sensor, event_count=p.event_count,
                                            include_incomplete=True)
    else:
        start = int(ev["t"][0])
        to_frame = tonic.transforms.ToFrame(sensor_size=geo.sensor, time_window=window,
                                            start_time=start, end_time=start + frames * window)
    counts = to_frame(ev)[:frames]  # (n, P, H, W) int16; audio (n, P, channels)
    cap = 1 if p.binarize == "clip" else 255
    out[:len(counts)] = np.minimum(counts, cap).reshape(len(counts), pol, h, w)
    return out


def _window(lay: ts.Layout, p: TonicParams) -> int:
    return p.time_window_us or lay.window_us


def _inside(ev: np.ndarray, lay: ts.Layout, geo: Geometry, where: str) -> np.ndarray:
    """Events inside the frame. N-Caltech101's recordings differ in size (tonic moves each
    to the origin): what lies beyond its frame is dropped. Elsewhere an event outside the
    sensor is a broken file."""
    w, h, _ = geo.sensor
    bad = (ev["x"] < 0) | (ev["x"] >= w) | (ev["t"] < 0)
    if "y" in ev.dtype.names:
        bad |= (ev["y"] < 0) | (ev["y"] >= h)
    if not bad.any():
        return ev
    if lay.name == "ncaltech101":
        return ev[~bad]
    i = int(np.argmax(bad))
    y = f", y={ev['y'][i]}" if "y" in ev.dtype.names else ""
    raise DataError(f"dataset {lay.name!r}: {where}: event {i} (x={ev['x'][i]}{y}, "
                    f"t={ev['t'][i]}) lies outside the {w}x{h} sensor or before t = 0",
                    "replace the file with an intact copy")


# ---------------------------------------------------------------------- labels and files

def labels_of(lay: ts.Layout, ds: Any) -> tuple[np.ndarray, int]:
    """(label of every recording in tonic's order, number of classes), from what tonic's
    object holds without reading the recordings (SHD: the h5 file's ``labels``)."""
    if lay.name == "shd":
        import h5py

        path = Path(ds.location_on_system) / ds.data_filename
        with h5py.File(path, "r") as f:
            return np.asarray(f["labels"][()], dtype=np.int64), lay.n_classes
    if lay.name == "ntidigits18":
        return np.array([ds.class_map[s.split("-")[-1]] for s in ds._samples],
                        dtype=np.int64), lay.n_classes
    if lay.name == "ncaltech101":  # folder names; the classes are those present
        names = sorted(set(ds.targets))
        index = {n: i for i, n in enumerate(names)}
        return np.array([index[t] for t in ds.targets], dtype=np.int64), len(names)
    return np.asarray(ds.targets, dtype=np.int64), lay.n_classes


def recording_name(lay: ts.Layout, ds: Any, i: int) -> str:
    data = getattr(ds, "data", None)  # file paths, arrays (POKER-DVS), [] or an h5 file
    item = data[i] if isinstance(data, list) and i < len(data) else None
    if isinstance(item, str):
        return item
    if lay.name in ("shd", "ntidigits18"):
        h5 = getattr(ds, "data_filename", None) or ds.filename
        return f"recording {i} of {Path(ds.location_on_system) / h5}"
    return f"recording {i} of {ds.location_on_system}"


def files_digest(folder: Path) -> str:
    """SHA-256 over (relative path, size, mtime) of every file below ``folder``."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            st = (Path(root) / name).stat()
            h.update(f"{os.path.relpath(Path(root) / name, folder)}\0{st.st_size}\0"
                     f"{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def first_per_class(y: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of the first ``k`` recordings of each class, in order (all when None)."""
    if k is None:
        return np.arange(len(y))
    keep = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        keep[np.flatnonzero(y == c)[:k]] = True
    return np.flatnonzero(keep)


# ---------------------------------------------------------------------- the splits

def split_frames(lay: ts.Layout, ds: Any, split: str, chosen: np.ndarray, p: TonicParams,
                 digest: str) -> np.ndarray:
    """Frames (len(chosen), T, P, H, W) of recordings ``chosen`` of ``ds``, from the cache."""
    geo = geometry(lay, p)
    w, h, pol = geo.sensor
    shape = (len(chosen), p.frames or lay.frames, pol, h, w)
    params = p.model_dump(exclude={"data_dir", "max_per_class"})
    key = events.cache_key(np.asarray(chosen, dtype=np.float32), dataset=lay.name, split=split,
                           files=digest, params=params, window=_window(lay, p),
                           sensor=geo.sensor, format=FORMAT_VERSION)
    transform = make_transform(lay, p, geo) if len(chosen) else None

    def build(out: np.ndarray) -> None:
        with tqdm(total=len(chosen), desc=f"{lay.name} {split}: binning events",
                  unit="recording", leave=False, disable=None) as bar:
            for j, i in enumerate(chosen):
                where = recording_name(lay, ds, int(i))
                try:
                    ev, _ = ds[int(i)]
                except Exception as e:  # a truncated .bin, a bad .npy/.aedat4/h5 entry
                    raise ts.corrupt(lay, ts.data_dir(p.data_dir), where, e) from None
                out[j] = bin_recording(ev, lay, p, geo, transform, where)
                if (j + 1) % CHUNK == 0 and hasattr(out, "flush"):
                    out.flush()
                bar.update(1)

    return events.cached_frames(key, shape, build)


def load(name: str, p: TonicParams, split_indices: Callable | None = None,
         test_fraction: float = 0.2, split_seed: int = 0
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(x_train, y_train, x_test, y_test, n_classes) of tonic dataset ``name``. A dataset
    without an official split (one "all" part) is divided by ``split_indices(labels,
    test_fraction, split_seed)`` -> (train indices, test indices)."""
    lay, root = ts.layout(name), ts.data_dir(p.data_dir)
    geometry(lay, p)  # refuse bad options before anything is read
    digest = files_digest(root / lay.cls) if (root / lay.cls).is_dir() else ""
    out: list[Any] = []
    if "all" in lay.parts:
        ds = ts.open_split(name, root, "all")
        y, n_classes = labels_of(lay, ds)
        parts = dict(zip(("train", "test"), split_indices(y, test_fraction, split_seed)))
        sets = {s: (ds, y, idx) for s, idx in parts.items()}
    else:
        sets = {}
        for s in ("train", "test"):
            ds = ts.open_split(name, root, s)
            y, n_classes = labels_of(lay, ds)
            sets[s] = (ds, y, np.arange(len(y)))
    for s, (ds, y, idx) in sets.items():
        chosen = idx[first_per_class(y[idx], p.max_per_class)]
        out += [split_frames(lay, ds, s, chosen, p, digest), y[chosen]]
    return (*out, n_classes)
