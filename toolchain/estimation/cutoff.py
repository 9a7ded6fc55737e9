"""Anytime-inference cutoff on output readouts (METHODS.md 4, ENERGY.md 5). Pure numpy.

Input everywhere is the per-step output readout ``o`` of shape (T, B, C): the spike counts
per step of the output layer, on the model's time axis -- ``rec.aligned(rec.output)`` of a
target's Recording (on Loihi the raw ``output_values`` lag by the pipeline delay). The criterion is always evaluated on the **cumulative** readout
Y(t) = sum of o(1..t); step numbers returned here are **1-based** (t = 1..T).

Predictions use argmax of Y(t) with ties going to the lowest class index, like
``spikeport.validate.predict`` / ``spikeport.training.loop.predict`` (numpy's argmax does this).

Criteria:

* Top-K gap (AOI-SNN, ``Dengyu-Wu/snncutoff:snncutoff/cutoff/topk_cutoff.py``): exit at the
  first t with g(t) = top1(Y(t)) - top2(Y(t)) > beta_t; per-step thresholds beta_t are
  calibrated on training data with :func:`calibrate_topk`.
* Confidence (``conf_cutoff.py``, the STR paper's cutoff): exit when max softmax(Y(t)) > 1 - eps.
* None: every sample runs all T steps.

A sample that never meets the criterion exits at T and is **forced**; the ``apply_*``
functions can return the forced mask next to the exit steps.

Deviations from the snncutoff code, on purpose:

* The calibration grid is beta_m = m * max(g) / grid, m = 0..grid-1, over all steps and all
  calibration samples at once (METHODS.md 4). The code builds a min..max grid per batch and
  sums the per-batch counts, which mixes grids from different batches.
* C(t, beta) with no calibration sample above beta (0/0) counts as "not reaching 1 - eps",
  as NaN >= x is false in the code; only the top grid value is forced to C = 1, so a step
  with no usable grid value gets beta_t = (grid-1)/grid * max(g).
* The comparison C >= 1 - eps uses a 1e-12 tolerance so that e.g. 99/100 >= 1 - 0.01 holds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeport.core.errors import SpikeportError
from spikeport.core.io import write_json

THRESHOLDS_FORMAT = "spikeport-cutoff/1"
READOUT = "output spike counts"
_TOL = 1e-12


# ----------------------------------------------------------------------------------- helpers

def _check_o(o) -> np.ndarray:
    o = np.asarray(o)
    if o.ndim != 3 or o.shape[0] < 1 or o.shape[2] < 2:
        raise SpikeportError(f"cutoff needs per-step outputs of shape (T, B, C) with C >= 2, "
                             f"got shape {o.shape}",
                             "pass the output layer's per-step values, e.g. "
                             "Recording.output_values")
    return o


def _check_y(y, o: np.ndarray) -> np.ndarray:
    """Labels as int64 (B,), one per sample of ``o`` (T, B, ...) or of predictions (T, B)."""
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if y.shape[0] != o.shape[1]:
        raise SpikeportError(f"{y.shape[0]} labels for {o.shape[1]} samples",
                             "pass one label per sample (the B axis of o)")
    return y


def cumulative(o) -> np.ndarray:
    """Y(t) = sum of o(1..t), shape (T, B, C), as float64."""
    return np.cumsum(_check_o(o).astype(np.float64), axis=0)


def predictions(o) -> np.ndarray:
    """argmax of Y(t) per step, shape (T, B); ties go to the lowest class index."""
    return cumulative(o).argmax(-1)


def gaps(o) -> np.ndarray:
    """g(t) = top1 - top2 of Y(t), shape (T, B); 0 where the top two tie."""
    s = np.sort(cumulative(o), axis=-1)
    return s[..., -1] - s[..., -2]


def correct_from(o, y) -> np.ndarray:
    """(T, B) bool: prediction correct at t and at every later step (the OCT condition)."""
    o = _check_o(o)
    return _correct_from_predictions(predictions(o), _check_y(y, o))


def _correct_from_predictions(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    correct = pred == y[None, :]
    # backward cumulative AND over steps: reverse, running AND, reverse back
    return np.logical_and.accumulate(correct[::-1], axis=0)[::-1]


def _oct(ok: np.ndarray) -> np.ndarray:
    """OCT (B,) from the (T, B) "correct from here on" mask; T + 1 where never."""
    return np.where(ok.any(0), ok.argmax(0) + 1, ok.shape[0] + 1).astype(np.int64)


def _first_true(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based index of the first True along axis 0, T where none; and the 'none' mask."""
    T = mask.shape[0]
    hit = mask.any(0)
    steps = np.where(hit, mask.argmax(0) + 1, T)
    return steps.astype(np.int64), ~hit


# ------------------------------------------------------------------------------ calibration

def calibrate_topk(o_train, y_train, epsilon: float = 0.0, grid: int = 100,
                   calibration_set: str | None = None) -> dict:
    """Per-step Top-K gap thresholds beta_t (AOI-SNN ``TopKCutoff.setup``).

    1. correct_from_t = prediction correct at t and at every later step;
    2. grid beta_m = m * max(g) / grid, m = 0..grid-1 (max over all steps and samples);
    3. C(t, beta_m) = #(g(t) > beta_m and correct_from_t) / #(g(t) > beta_m); 0/0 does not
       qualify; the top grid value gets C = 1;
    4. beta_t = smallest beta_m with C(t, beta_m) >= 1 - epsilon.

    The paper calibrates on the **training set with dropout p = 0.3 on**; name the set in
    ``calibration_set`` (required by :func:`save_thresholds`).
    Returns a dict ready for :func:`save_thresholds` plus diagnostics (``max_gap``,
    ``coverage`` = #(g > beta_t) per step, ``precision`` = C(t, beta_t)).
    """
    o = _check_o(o_train)
    y = _check_y(y_train, o)
    if not 0.0 <= float(epsilon) <= 1.0:
        raise SpikeportError(f"epsilon must be in [0, 1], got {epsilon}",
                             "pass e.g. epsilon=0.0 (strict) or 0.01")
    if int(grid) < 1:
        raise SpikeportError(f"grid must be a positive integer, got {grid}", "pass grid=100")
    grid = int(grid)
    T = o.shape[0]
    g = gaps(o)                                  # (T, B)
    ok = correct_from(o, y)                      # (T, B)
    gmax = float(g.max()) if g.size else 0.0
    betas = np.arange(grid, dtype=np.float64) * gmax / grid          # (M,)
    above = g[None, :, :] > betas[:, None, None]                     # (M, T, B)
    n_above = above.sum(-1)                                          # (M, T)
    n_good = (above & ok[None]).sum(-1)                              # (M, T)
    with np.errstate(invalid="ignore", divide="ignore"):
        C = np.where(n_above > 0, n_good / np.maximum(n_above, 1), np.nan)
    C[-1, :] = 1.0
    qualifies = C >= (1.0 - float(epsilon)) - _TOL                   # NaN -> False
    idx = qualifies.argmax(0)                                        # first True; last is True
    thresholds = betas[idx]
    cols = np.arange(T)
    return {
        "format": THRESHOLDS_FORMAT,
        "method": "topk",
        "epsilon": float(epsilon),
        "grid": grid,
        "readout": READOUT,
        "calibration_set": calibration_set,
        "calibration_samples": int(o.shape[1]),
        "T": int(T),
        "max_gap": gmax,
        "thresholds": [float(b) for b in thresholds],
        "coverage": [int(n) for n in n_above[idx, cols]],
        "precision": [float(c) for c in C[idx, cols]],
    }


# -------------------------------------------------------------------------------- criteria

def apply_topk(o, thresholds, return_forced: bool = False):
    """Exit step (B,) 1-based: first t with g(t) > beta_t, else T (forced).

    ``thresholds`` is the list of beta_t (length T) or a dict from :func:`calibrate_topk` /
    :func:`load_thresholds`. With ``return_forced`` also returns the forced mask (B,).
    """
    o = _check_o(o)
    T = o.shape[0]
    if isinstance(thresholds, dict):
        thresholds = thresholds["thresholds"]
    beta = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if beta.shape[0] != T:
        raise SpikeportError(f"{beta.shape[0]} thresholds for T = {T} steps",
                             "calibrate with outputs of the same T, or run with the T the "
                             "thresholds were calibrated for")
    steps, forced = _first_true(gaps(o) > beta[:, None])
    return (steps, forced) if return_forced else steps


def softmax_confidence(o) -> np.ndarray:
    """max softmax(Y(t)) per step, shape (T, B) (numerically stable)."""
    Y = cumulative(o)
    z = Y - Y.max(-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(-1, keepdims=True)).max(-1)


def apply_confidence(o, epsilon: float, return_forced: bool = False):
    """Exit step (B,) 1-based: first t with max softmax(Y(t)) > 1 - epsilon, else T (forced).

    Caution: softmax of spike **counts** depends on the count scale. Y(t) grows with t and
    with the firing rate, so the same epsilon exits earlier for a network that fires more
    (or for a readout multiplied by a constant); thresholds do not transfer between
    readouts (counts vs membrane) or between targets with a different output scale.
    """
    o = _check_o(o)
    steps, forced = _first_true(softmax_confidence(o) > 1.0 - float(epsilon))
    return (steps, forced) if return_forced else steps


def apply_none(o, return_forced: bool = False):
    """No cutoff: every sample exits at T (not flagged forced)."""
    o = _check_o(o)
    steps = np.full(o.shape[1], o.shape[0], dtype=np.int64)
    return (steps, np.zeros(o.shape[1], bool)) if return_forced else steps


def oct_steps(o, y) -> np.ndarray:
    """Optimal Cutoff Timestep (oracle), (B,) int64, 1-based.

    The earliest t from which argmax Y(t') == y for every t' >= t. A sample whose prediction
    is wrong at T has no such step: it gets the sentinel **T + 1** (kept as an integer so the
    array stays int64; filter with ``oct < T + 1`` or use samples correct at T).
    """
    return _oct(correct_from(o, y))


# ---------------------------------------------------------------------------------- report

def cutoff_report(o, y, exit_steps, forced=None) -> dict:
    """Latency and accuracy of a cutoff (ENERGY.md 5, step 3).

    ``exit_steps`` (B,) 1-based. ``forced`` (B,) bool, as returned by the ``apply_*``
    functions with ``return_forced=True``; if omitted, every sample that exits at T counts
    as forced (an upper bound: a criterion met exactly at T is indistinguishable).
    p95 uses numpy's default linear interpolation. OCT is the oracle "earliest step from
    which the prediction stays correct" (not SEENN's "first correct step"), averaged over
    the samples correct at T (NaN if there are none).
    """
    o = _check_o(o)
    return report_from_predictions(predictions(o), _check_y(y, o), exit_steps, forced)


def report_from_predictions(pred, y, exit_steps, forced=None) -> dict:
    """:func:`cutoff_report` from the per-step predictions (T, B) alone (:func:`predictions`
    of the outputs, which is all the report reads: the estimator keeps them, not the outputs)."""
    pred = np.asarray(pred)
    y = _check_y(y, pred)
    T, B = pred.shape[0], pred.shape[1]
    t = np.asarray(exit_steps).astype(np.int64).reshape(-1)
    if t.shape[0] != B:
        raise SpikeportError(f"{t.shape[0]} exit steps for {B} samples",
                             "pass one exit step per sample")
    if B == 0:
        raise SpikeportError("cutoff report on zero samples", "pass at least one sample")
    if t.min() < 1 or t.max() > T:
        raise SpikeportError(f"exit steps must lie in 1..{T}, got {t.min()}..{t.max()}",
                             "exit steps are 1-based (t = 1 is the first step)")
    forced_definition = "criterion never met (exit forced to T)"
    if forced is None:
        forced = t == T
        forced_definition = "exit at T (includes samples that met the criterion at T)"
    forced = np.asarray(forced, bool).reshape(-1)
    at_cut = pred[t - 1, np.arange(B)]
    correct_T = pred[-1] == y
    oct_ = _oct(_correct_from_predictions(pred, y))
    mean = float(t.mean())
    return {
        "samples": int(B),
        "T": int(T),
        "readout": READOUT,
        "mean_steps": mean,
        "median_steps": float(np.median(t)),
        "p95_steps": float(np.percentile(t, 95)),
        "histogram": [int(n) for n in np.bincount(t, minlength=T + 1)[1:T + 1]],
        "fraction_forced": float(forced.mean()),
        "forced_definition": forced_definition,
        "accuracy_at_cutoff": float((at_cut == y).mean()),
        "accuracy_at_T": float(correct_T.mean()),
        # the oracle is defined on the samples correct at T; none correct: no figure (null)
        "mean_oct": float(oct_[correct_T].mean()) if correct_T.any() else None,
        "oct_definition": "earliest step from which the prediction stays correct; "
                          "mean over samples correct at T",
        "speedup": T / mean,
    }


# --------------------------------------------------------------------------- storage (JSON)

_REQUIRED = ("method", "epsilon", "readout", "calibration_set", "T", "thresholds")


def save_thresholds(path: str | Path, thresholds: dict) -> Path:
    """Write calibrated thresholds as JSON (atomic). Needs method, epsilon, readout,
    calibration_set, T and thresholds (one per step)."""
    d = dict(thresholds)
    d.setdefault("format", THRESHOLDS_FORMAT)
    d.setdefault("readout", READOUT)
    missing = [k for k in _REQUIRED if d.get(k) in (None, "")]
    if missing:
        raise SpikeportError(f"thresholds to save lack {', '.join(missing)}",
                             "pass calibration_set='<name of the calibration data>' to "
                             "calibrate_topk (a cutoff report always names its calibration "
                             "set), or fill the missing keys")
    if len(d["thresholds"]) != int(d["T"]):
        raise SpikeportError(f"{len(d['thresholds'])} thresholds for T = {d['T']}",
                             "store one threshold per step")
    return write_json(path, d)


def load_thresholds(path: str | Path, T: int | None = None) -> dict:
    """Read thresholds written by :func:`save_thresholds`; with ``T``, refuse another T."""
    import json

    path = Path(path)
    if not path.is_file():
        raise SpikeportError(f"cutoff thresholds not found: {path}",
                             "calibrate first (calibrate_topk + save_thresholds)")
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SpikeportError(f"{path} is not valid JSON ({type(e).__name__})",
                             "recalibrate and save the thresholds again") from None
    if not isinstance(d, dict) or d.get("format") != THRESHOLDS_FORMAT:
        raise SpikeportError(f"{path} is not a spikeport cutoff file "
                             f"(format {THRESHOLDS_FORMAT!r} expected)",
                             "recalibrate and save with save_thresholds")
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise SpikeportError(f"{path} lacks {', '.join(missing)}",
                             "recalibrate and save with save_thresholds")
    if len(d["thresholds"]) != int(d["T"]):
        raise SpikeportError(f"{path}: {len(d['thresholds'])} thresholds for T = {d['T']}",
                             "recalibrate and save with save_thresholds")
    if T is not None and int(d["T"]) != int(T):
        raise SpikeportError(f"{path} holds thresholds calibrated for T = {d['T']}, "
                             f"but the run uses T = {T}",
                             f"recalibrate on outputs with T = {T} (calibrate_topk), or run "
                             f"with T = {d['T']}")
    return d
