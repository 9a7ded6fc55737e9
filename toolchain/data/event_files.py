"""Event recordings read from files and binned into a graph's input: ``--events FILE``.

Three formats, each read into tonic's structured layout (:data:`events.EVENT_DTYPE`: x, y,
t in microseconds, p with 1 = ON) without importing tonic (GPL-3.0-only, an optional extra):

- ``.npy``: one recording as a structured array with tonic's fields ``x``, ``y``, ``t``,
  ``p`` (any integer widths; ``p`` may be bool, and ``on`` is read as ``p``, as the aedat
  package names it), or ``x``, ``t``, ``p`` for a one-dimensional sensor such as a cochlea
  (tonic's audio datasets, e.g. SHD's ``("t", int), ("x", int), ("p", int)``); ``y`` is then 0.
  ``t`` is whole microseconds from the start of the recording, as tonic stores it.
- ``.h5`` / ``.hdf5``, SHD's layout: ``spikes/times`` (seconds) and ``spikes/units``
  (channel), each either one array (one recording) or variable-length arrays (one per
  recording), and optionally ``labels`` (one class per recording). Read as tonic's SHD
  reader does (tonic/datasets/hsd.py, tonic 1.7.0): x = unit, polarity 1, t = seconds x 1e6
  in the stored precision, truncated to whole microseconds.
- ``.aedat4`` (iniVation DV) through the ``aedat`` package (MIT), imported only here:
  the packets of the file's event stream, fields t (microseconds since the Unix epoch), x,
  y, on. AEDAT 4 times are absolute, so t is counted from the recording's first event; the
  file declares its sensor size, which is checked against the graph's input.

Binning (:func:`bin_recordings`) is the event datasets' (:func:`events.to_frames`): frame i
holds the events with i*W <= t < (i+1)*W, channel 1 ON and 0 OFF; ``clip`` makes a bin with
several events one spike, ``count`` keeps the count (up to 255). A graph input of (2, H, W)
takes ON and OFF apart, (1, H, W) both in one channel, (N,) the channel x of a
one-dimensional sensor. ``crop`` (X, Y) keeps the events of the H x W window whose top-left
pixel is (X, Y) and moves it to (0, 0).

Every problem with a file is a :class:`DataError` naming the file and the fix.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikeport.core import budget
from spikeport.core.errors import ConfigError, DataError
from spikeport.data import events

AEDAT_HINT = "pip install aedat==2.3.0 (or the events extra: pip install 'spikeport[events]')"
FORMATS = ".npy (tonic's structured x, y, t, p), .h5 (SHD's spikes/times, spikes/units) or .aedat4"
NPY_FIX = ("save one recording as a structured array with tonic's fields x, y, t (integer "
           "microseconds), p")
H5_FIX = "write SHD's layout: spikes/times (seconds), spikes/units, optionally labels"


@dataclass(frozen=True)
class EventFile(os.PathLike):
    """An event recording file and how to bin it: ``bin_us`` the time window (None: the
    run's recipe says), ``crop`` the top-left (X, Y) of the window of the graph's input
    size (None: the whole sensor). A path-like, so a command can check it as a file."""

    path: Path
    bin_us: int | None = None
    crop: tuple[int, int] | None = None

    def __fspath__(self) -> str:
        return os.fspath(self.path)


def event_file(path: str | Path, bin_ms: float | None = None,
               crop: str | None = None) -> EventFile:
    """An :class:`EventFile` from the command line's ``--events``, ``--bin-ms`` (milliseconds,
    a whole number of microseconds) and ``--crop X,Y`` (pixels), checked."""
    bin_us = None
    if bin_ms is not None:
        bin_us = int(round(float(bin_ms) * 1000))
        if not np.isfinite(bin_ms) or bin_us < 1 or abs(bin_us - bin_ms * 1000) > 1e-6 * bin_us:
            raise DataError(f"--bin-ms {bin_ms:g} is not a positive whole number of microseconds",
                            "pass a time window such as --bin-ms 10 or --bin-ms 0.5")
    corner = None
    if crop is not None:
        parts = crop.split(",")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise DataError(f"--crop {crop!r} is not two pixel numbers X,Y >= 0",
                            "pass the window's top-left pixel, e.g. --crop 150,100")
        corner = (int(parts[0]), int(parts[1]))
    return EventFile(Path(path), bin_us, corner)


@dataclass(frozen=True)
class Recordings:
    events: list[np.ndarray]        # one EVENT_DTYPE array per recording, sorted by t
    labels: np.ndarray | None       # (B,) int64 when the file has labels
    sensor: tuple[int, int] | None  # (H, W) when the file declares it
    source: Path


def read_events(path: str | Path) -> Recordings:
    """The recordings in ``path`` (:mod:`module docstring <spikeport.data.event_files>`)."""
    path = Path(path)
    readers = {".npy": _read_npy, ".h5": _read_h5, ".hdf5": _read_h5, ".aedat4": _read_aedat4}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown event file type {path.suffix or '(no extension)'!r}",
                        f"pass a {FORMATS} file")
    if path.is_dir():
        raise DataError(f"event file {path} is a directory", f"pass a {FORMATS} file")
    if not path.is_file():
        raise DataError(f"event file not found: {path}", f"pass a {FORMATS} file")
    return reader(path)


# ---------------------------------------------------------------------------- fields

def tonic_events(arr: np.ndarray, where: str) -> np.ndarray:
    """A structured array with tonic-like fields as :data:`events.EVENT_DTYPE`, checked:
    integer x, y, t (p integer or bool), x, y >= 0, t >= 0 and in time order, not empty."""
    names = arr.dtype.names or ()
    pol = "p" if "p" in names else "on" if "on" in names else None
    missing = [f for f in ("x", "t") if f not in names] + (["p"] if pol is None else [])
    if missing:
        have = ", ".join(names) if names else f"a plain {arr.dtype} array"
        raise DataError(f"{where} has no field{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(missing)} (it has {have})", NPY_FIX)
    for f in ("x", "y", "t", pol):
        if f in names and arr.dtype[f].kind not in ("iu" if f != pol else "iub"):
            raise DataError(f"{where}: field {f} holds {arr.dtype[f]} values, not whole numbers",
                            NPY_FIX + (" (t in whole microseconds)" if f == "t" else ""))
    if len(arr) == 0:
        raise DataError(f"{where} holds no events", "pass a recording with at least one event")
    out = np.empty(len(arr), dtype=events.EVENT_DTYPE)
    out["x"], out["t"] = arr["x"], arr["t"]
    out["y"] = arr["y"] if "y" in names else 0
    out["p"] = np.asarray(arr[pol]) > 0
    _check_times_and_pixels(out, where)
    return out


def _check_times_and_pixels(ev: np.ndarray, where: str) -> None:
    for f in ("x", "y", "t"):
        if ev[f].min() < 0:
            i = int(np.argmax(ev[f] < 0))
            raise DataError(f"{where}: event {i} has {f} = {ev[f][i]}, below 0",
                            "store pixels from 0 and t in microseconds from the start of the "
                            "recording")
    back = np.diff(ev["t"]) < 0
    if back.any():
        i = int(np.argmax(back)) + 1
        raise DataError(f"{where}: events are not in time order (event {i} at t = "
                        f"{ev['t'][i]} us follows t = {ev['t'][i - 1]} us)",
                        "sort the recording by t, e.g. np.sort(events, order='t', kind='stable')")


def _unreadable(path: Path, what: str, e: Exception, fix: str) -> DataError:
    first = str(e).splitlines()[0][:160] if str(e) else ""
    return DataError(f"{path} is not a readable {what} ({type(e).__name__}"
                     f"{': ' + first if first else ''})", fix)


def _check_size(path: Path, n_events: int) -> None:
    budget.check_bytes(2 * n_events * events.EVENT_DTYPE.itemsize,
                       f"{path}: {n_events} events", "pass a shorter recording", DataError)


# ---------------------------------------------------------------------------- formats

def _read_npy(path: Path) -> Recordings:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # numpy raises several types for a damaged file
        raise _unreadable(path, ".npy", e, NPY_FIX) from None
    if arr.ndim != 1 or arr.dtype.names is None:
        raise DataError(f"{path} holds a {arr.dtype} array of shape {arr.shape}, not one "
                        "recording of structured events", NPY_FIX)
    _check_size(path, len(arr))
    return Recordings([tonic_events(np.asarray(arr), str(path))], None, None, path)


def _shd_recording(times: np.ndarray, units: np.ndarray, where: str) -> np.ndarray:
    times, units = np.asarray(times), np.asarray(units)
    if times.shape != units.shape or times.ndim != 1:
        raise DataError(f"{where}: spikes/times has shape {times.shape}, spikes/units "
                        f"{units.shape}", "store one time and one unit per spike")
    if times.dtype.kind not in "iuf" or units.dtype.kind not in "iu":
        raise DataError(f"{where}: spikes/times must be numbers (seconds) and spikes/units "
                        f"whole numbers, not {times.dtype} and {units.dtype}", H5_FIX)
    if not np.isfinite(times).all():
        raise DataError(f"{where}: spikes/times holds NaN or infinity", H5_FIX)
    ev = np.zeros(len(times), dtype=[("x", "<i8"), ("t", "<i8"), ("p", "<i8")])
    ev["x"], ev["p"] = units, 1
    # as tonic's SHD reader: seconds x 1e6 in the stored precision, truncated (float16 is
    # widened to float32 first, where 1e6 would overflow)
    ev["t"] = (times.astype(np.promote_types(times.dtype, np.float32)) * 1e6).astype(np.int64)
    return tonic_events(ev, where)


def _read_h5(path: Path) -> Recordings:
    import h5py

    budget.check_hdf5(path, f"the event file {path}", "pass a smaller file", DataError)
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("spikes/times", "spikes/units") if k not in f]
            if missing:
                raise DataError(f"{path} has no {' or '.join(missing)}", H5_FIX)
            times, units = f["spikes/times"], f["spikes/units"]
            many = h5py.check_vlen_dtype(times.dtype) is not None
            pairs = list(zip(times[()], units[()])) if many else [(times[()], units[()])]
            labels = f["labels"][()] if "labels" in f else None
    except DataError:
        raise
    except Exception as e:  # h5py raises OSError, KeyError, TypeError... for a damaged file
        raise _unreadable(path, "HDF5 file", e, H5_FIX) from None
    recs = [_shd_recording(t, u, f"{path} recording {i}" if many else str(path))
            for i, (t, u) in enumerate(pairs)]
    return Recordings(recs, _h5_labels(labels, len(recs), path), None, path)


def _h5_labels(labels, n: int, path: Path) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.atleast_1d(np.asarray(labels))
    if labels.shape != (n,) or labels.dtype.kind not in "iu" or labels.min() < 0:
        raise DataError(f"{path}: labels has shape {labels.shape} and dtype {labels.dtype}, "
                        f"expected {n} class indices (whole numbers >= 0)",
                        "store one class index per recording, or no labels")
    return labels.astype(np.int64)


def _read_aedat4(path: Path) -> Recordings:
    try:
        import aedat
    except ImportError:
        raise DataError(f"reading {path} (.aedat4) needs the aedat package, which is not "
                        "installed", AEDAT_HINT) from None
    fix = "pass an AEDAT 4 recording with an event stream (written by iniVation DV)"
    try:
        decoder = aedat.Decoder(str(path))
        streams = {k: s for k, s in decoder.id_to_stream().items() if s.get("type") == "events"}
        if len(streams) != 1:
            raise DataError(f"{path} has {len(streams)} event streams, not one", fix)
        (sid, stream), = streams.items()
        parts, n = [], 0
        for packet in decoder:
            if packet.get("stream_id") == sid and "events" in packet:
                parts.append(packet["events"])
                n += len(parts[-1])
                _check_size(path, n)
    except DataError:
        raise
    except Exception as e:  # the decoder raises OSError / RuntimeError for a damaged file
        raise _unreadable(path, "AEDAT 4 file", e, fix) from None
    if not n:
        raise DataError(f"{path} holds no events", "pass a recording with at least one event")
    raw = np.concatenate(parts)
    ev = np.empty(len(raw), dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    ev["x"], ev["y"], ev["p"] = raw["x"], raw["y"], raw["on"]
    ev["t"] = (raw["t"] - raw["t"][0]).astype(np.int64)  # absolute -> from the first event
    return Recordings([tonic_events(ev, str(path))], None,
                      (int(stream["height"]), int(stream["width"])), path)


# ---------------------------------------------------------------------------- binning

def _layout(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, H, W) of a graph input an event recording can feed."""
    if len(input_shape) == 3 and input_shape[0] in (1, 2):
        return tuple(int(s) for s in input_shape)
    if len(input_shape) == 1:
        return 1, 1, int(input_shape[0])
    raise DataError(f"the graph's input has shape {tuple(input_shape)}; event recordings feed "
                    "(2, H, W) (ON and OFF), (1, H, W) or (N,) (one channel per x of a "
                    "one-dimensional sensor)", "pass a graph with one of these input shapes")


def _fit(ev: np.ndarray, rec: Recordings, size: tuple[int, int],
         crop: tuple[int, int] | None, where: str) -> np.ndarray:
    """The events of ``ev`` on a sensor of ``size`` (H, W): cropped to it, or checked to lie
    in it; the sensor the file declares must be that size, or contain the crop."""
    h, w = size
    model = f"the graph's input of {w}x{h} pixels (W x H)"
    sensor = rec.sensor
    if crop is not None:
        x0, y0 = crop
        if sensor is not None and (x0 + w > sensor[1] or y0 + h > sensor[0]):
            raise DataError(f"--crop {x0},{y0}: the {w}x{h} window reaches x = {x0 + w - 1}, "
                            f"y = {y0 + h - 1}, outside the {sensor[1]}x{sensor[0]} sensor of "
                            f"{rec.source}", f"use X <= {sensor[1] - w} and Y <= {sensor[0] - h}")
        keep = (ev["x"] >= x0) & (ev["x"] < x0 + w) & (ev["y"] >= y0) & (ev["y"] < y0 + h)
        ev = ev[keep].copy()
        ev["x"] -= x0
        ev["y"] -= y0
        return ev
    crop_fix = (f"pass --crop X,Y to take the {w}x{h} window at (X, Y), or a graph whose "
                "input matches the recording")
    if sensor is not None and sensor != (h, w):
        raise DataError(f"{rec.source} was recorded on a {sensor[1]}x{sensor[0]} sensor, "
                        f"{model} is another size", crop_fix)
    out = (ev["x"] >= w) | (ev["y"] >= h)
    if out.any():
        raise DataError(f"{where}: events reach x = {ev['x'].max()}, y = {ev['y'].max()}, "
                        f"outside {model}", crop_fix)
    return ev


def _fit_all(recs: Recordings, size: tuple[int, int], crop: tuple[int, int] | None
             ) -> list[tuple[np.ndarray, str]]:
    """(events on the sensor ``size``, name) of every recording (:func:`_fit`); refused when
    the crop window leaves no event at all."""
    n = len(recs.events)
    fitted = [(_fit(ev, recs, size, crop, name), name) for ev, name in zip(
        recs.events, (f"{recs.source} recording {i}" if n > 1 else str(recs.source)
                      for i in range(n)))]
    if not any(len(ev) for ev, _ in fitted):
        raise DataError(f"no event of {recs.source} falls in the --crop window {crop}",
                        "move the window (--crop X,Y) to where the recording has events")
    return fitted


def _frames_array(recs: Recordings, steps: int, input_shape: tuple[int, ...]) -> np.ndarray:
    n = len(recs.events)
    budget.check_bytes(2 * budget.nbytes((steps, n, *input_shape), 1),
                       f"{recs.source} binned: {steps} steps x {n} recordings x "
                       f"{int(np.prod(input_shape))} inputs", "use fewer recordings (--samples) "
                       "or a longer --bin-ms", DataError)
    return np.zeros((steps, n, *input_shape), dtype=np.uint8)


def recording_bins(recs: Recordings, time_window_us: int) -> int:
    """Windows covering the longest recording, from t = 0 to its last event."""
    return events.n_bins(max(int(e["t"][-1]) for e in recs.events) + 1, time_window_us)


def bin_recordings(recs: Recordings, input_shape: tuple[int, ...], time_window_us: int,
                   steps: int, binarize: str = "clip",
                   crop: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (steps, B, *input_shape): each recording binned into ``steps`` windows of
    ``time_window_us`` from t = 0 (events after the last window are not in any frame), as
    the simulated event datasets bin them (:func:`events.to_frames`)."""
    channels, h, w = _layout(input_shape)
    x = _frames_array(recs, steps, input_shape)
    for i, (ev, _) in enumerate(_fit_all(recs, (h, w), crop)):
        frames = events.to_frames(ev, (h, w), time_window_us, steps, "count")
        if channels == 1:
            frames = np.minimum(frames.sum(axis=1, keepdims=True, dtype=np.int64), 255)
        x[:, i] = np.minimum(frames, 1 if binarize == "clip" else 255).reshape(steps, *input_shape)
    return x


def bin_for_run(recs: Recordings, dataset: dict, encoder: str, steps: int,
                input_shape: tuple[int, ...], bin_us: int | None = None,
                crop: tuple[int, int] | None = None) -> tuple[np.ndarray, str]:
    """(uint8 (T, B, *input_shape), how) for a run whose recipe has ``dataset`` (its
    section), ``encoder`` (its name) and ``steps``: binned as that dataset bins its own
    recordings. A tonic dataset (:mod:`spikeport.data.tonic_frames`: its transforms, frames
    from the first event, by time or by count); a simulated event dataset (windows from
    t = 0, its ``time_window_us`` and ``binarize``, ``steps`` of them); a run trained on
    images: windows of ``bin_us`` (required), clipped. ``bin_us`` replaces the recipe's
    time window (and binning by count)."""
    from spikeport.data import tonic_sets

    if dataset.get("name") in tonic_sets.LAYOUTS:
        return _bin_tonic(recs, dataset, input_shape, bin_us, crop)
    if encoder == "events":
        p = events.BinParams(**{k: dataset[k] for k in events.BinParams.model_fields
                                if k in dataset})
        window, binarize = bin_us or p.time_window_us, p.binarize
    elif bin_us is None:
        raise ConfigError(f"the run's recipe trains on {dataset.get('name')} images, so it "
                          "does not say how to bin events", "pass --bin-ms MS")
    else:
        window, binarize = bin_us, "clip"
    x = bin_recordings(recs, input_shape, window, steps, binarize, crop)
    return x, f"{steps} windows of {window} us from t = 0, {binarize}"


def _bin_tonic(recs: Recordings, dataset: dict, input_shape: tuple[int, ...],
               bin_us: int | None, crop: tuple[int, int] | None) -> tuple[np.ndarray, str]:
    """Recordings on a tonic dataset's sensor through that run's transforms and ToFrame
    (:func:`spikeport.data.tonic_frames.bin_recording`)."""
    from spikeport.data import tonic_frames as tf
    from spikeport.data import tonic_sets

    lay = tonic_sets.LAYOUTS[dataset["name"]]
    fields = {k: dataset[k] for k in tf.TonicParams.model_fields if k in dataset}
    if bin_us is not None:
        fields.update(time_window_us=bin_us, event_count=None)
    p = tf.TonicParams(**fields)
    geo = tf.geometry(lay, p)
    w, h, pol = geo.sensor
    if (pol, h, w) != tuple(input_shape):
        raise DataError(f"the run's recipe bins {lay.name} into frames {(pol, h, w)}, its "
                        f"graph takes {tuple(input_shape)}", "pass the run's own model.nir")
    steps, transform = p.frames or lay.frames, tf.make_transform(lay, p, geo)
    x = _frames_array(recs, steps, input_shape)
    for i, (ev, name) in enumerate(_fit_all(recs, lay.sensor[1::-1], crop)):
        x[:, i] = tf.bin_recording(ev, lay, p, geo, transform, name)
    how = (f"{p.event_count} events each" if p.event_count is not None
           else f"windows of {p.time_window_us or lay.window_us} us from the first event")
    return x, f"{steps} frames of {how} as {lay.name}'s recipe, {p.binarize}"
