"""Run directories, atomic writes and safe checkpoint loading.

A run directory holds ``config.yaml`` (the resolved recipe), ``checkpoint.pt`` (the model's
state dict) and ``metrics.json``; later commands add artifacts next to them. Every file is
written to a temporary name in the same directory and then renamed, so an interrupted
command never leaves a half-written file. The files of one command are committed together
and a run directory is replaced as a whole by :mod:`spikeport.core.transactions`.
Checkpoints hold tensors only and are loaded with ``torch.load(weights_only=True)``:
loading never unpickles code.

A directory, a file or a read-only path in the way of a write is a :class:`RunDirError`
naming the path and the fix, never an ``OSError``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from spikeport.core import fs
from spikeport.core.errors import CheckpointError, RunDirError

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"
CHECKPOINT_FORMAT = "spikeport-checkpoint/1"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place.

    One file on its own; the files of one command go through :func:`spikeport.core.transactions.transaction`."""
    path = Path(path)
    fs.prepare_file(path)
    tmp = path.with_name(fs.temp_name(path.name, "tmp"))
    try:
        with fs.live(tmp), fs.os_errors(path):
            fs.create(tmp)
            write(tmp)
            fs.fsync(tmp)
            os.replace(tmp, path)
    except BaseException:
        fs.remove(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict) -> Path:
    payload = {"format": CHECKPOINT_FORMAT, "meta": meta,
               "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}

    def save(p: Path) -> None:
        with open(p, "wb") as f:  # a file object: the archive inside is not named after p,
            torch.save(payload, f)  # a temporary name, so the same weights give the same bytes

    return atomic_write(path, save)


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, meta) of a checkpoint written by :func:`save_checkpoint`, its structure
    checked: a mapping with the format key, ``state_dict`` mapping parameter names to dense
    real tensors of finite values, ``meta`` a mapping. Whether the tensors fit a model is
    the caller's check (``spikeport.training.loop.load_run``)."""
    path = Path(path)
    retrain = "retrain the run with `spikeport train --force`"
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory",
                              "move the directory away, then retrain the run with "
                              "`spikeport train --force`")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}",
                              "train the run first with `spikeport train`, or pass the right run directory")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to parse is a corrupt file, whatever torch raises
        raise CheckpointError(f"checkpoint {path} is corrupt or not a spikeport checkpoint "
                              f"({type(e).__name__})", retrain) from None
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if not isinstance(fmt, str) or fmt != CHECKPOINT_FORMAT:
        found = f" (format {fmt!r})" if isinstance(fmt, str) else ""
        raise CheckpointError(f"{path} is not a spikeport checkpoint{found}", retrain)
    state, meta = payload.get("state_dict"), payload.get("meta", {})
    if not isinstance(state, dict):
        what = "no state_dict" if state is None else f"a state_dict that is a {type(state).__name__}"
        raise CheckpointError(f"checkpoint {path} has {what}, not a mapping of parameter "
                              "names to tensors", retrain)
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: meta is a {type(meta).__name__}, not a "
                              "mapping", retrain)
    for key, value in state.items():
        _check_checkpoint_tensor(path, key, value, retrain)
    return state, meta


def _check_checkpoint_tensor(path: Path, key: Any, value: Any, fix: str) -> None:
    if not isinstance(key, str):
        raise CheckpointError(f"checkpoint {path}: state_dict key {key!r} is not a parameter "
                              "name", fix)
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"checkpoint {path}: state_dict[{key!r}] is a "
                              f"{type(value).__name__}, not a tensor", fix)
    if value.layout != torch.strided or value.is_complex() or value.is_quantized:
        raise CheckpointError(f"checkpoint {path}: state_dict[{key!r}] is a {value.dtype} "
                              f"{str(value.layout).removeprefix('torch.')} tensor, not a dense "
                              "real one", fix)
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise CheckpointError(f"checkpoint {path}: state_dict[{key!r}] holds {bad} NaN or "
                              "infinite values", fix)


def require_run_dir(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file():
        raise RunDirError(f"{path} is a file, not a run directory",
                          "pass a directory written by `spikeport train --out DIR` (a .nir "
                          "graph goes to run, validate, estimate or inspect)")
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}",
                          "pass a directory written by `spikeport train --out DIR`")
    if (path / CONFIG_FILE).is_dir():
        raise RunDirError(f"{path / CONFIG_FILE} is a directory, not the run's config",
                          "restore the run's config.yaml, or retrain with `spikeport train --force`")
    if not (path / CONFIG_FILE).is_file():
        raise RunDirError(f"{path} has no {CONFIG_FILE}: not a spikeport run directory",
                          "pass a directory written by `spikeport train --out DIR`")
    return path


def check_output_dir(path: str | Path, force: bool) -> Path:
    """Refuse to overwrite an existing, non-empty directory unless ``force``; even with
    ``force``, refuse one that is not a run directory (no ``config.yaml``): a mistyped
    ``--out`` such as ``.`` or ``~`` must not empty a directory of other files."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} exists and is not a directory",
                          "choose another --out path")
    blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise RunDirError(f"cannot create {path}: {blocked} is a file, not a directory",
                          "choose another --out path")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise RunDirError(f"run directory {path} already exists",
                              "choose another --out, or pass --force to replace it")
        if not (path / CONFIG_FILE).is_file():  # --force replaces runs, nothing else
            n = sum(1 for _ in path.iterdir())
            raise RunDirError(f"{path} holds {n} entries and no {CONFIG_FILE}: it is not a "
                              "spikeport run directory, and --force replaces only those",
                              "choose another --out (a new or empty directory)")
    return path


def dataclass_json(obj, omit_if_none: tuple[str, ...] | None = ()) -> dict:
    """A result dataclass as the dict its JSON is made of (nested dataclasses too); fields
    named in ``omit_if_none`` are left out when None (``None``: every None field is)."""
    out = dataclasses.asdict(obj)
    for key in list(out):
        if out[key] is None and (omit_if_none is None or key in omit_if_none):
            del out[key]
    return out
