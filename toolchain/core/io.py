"""Run directories, atomic writes and safe checkpoint loading.

A run directory holds ``config.yaml`` (the resolved recipe), ``checkpoint.pt`` (the model's
state dict) and ``metrics.json``; later commands add artifacts next to them. Every file is
written to a temporary name in the same directory and then renamed, so an interrupted
command never leaves a half-written file. Checkpoints hold tensors only and are loaded with
``torch.load(weights_only=True)``: loading never unpickles code.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from spikeport.core.errors import CheckpointError, RunDirError

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"
CHECKPOINT_FORMAT = "spikeport-checkpoint/1"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict) -> Path:
    payload = {"format": CHECKPOINT_FORMAT, "meta": meta,
               "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}
    return atomic_write(path, lambda p: torch.save(payload, p))


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}",
                              "train the run first with `spikeport train`, or pass the right run directory")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to parse is a corrupt file, whatever torch raises
        raise CheckpointError(f"checkpoint {path} is corrupt or not a spikeport checkpoint "
                              f"({type(e).__name__})",
                              "retrain the run with `spikeport train --force`") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a spikeport checkpoint",
                              "retrain the run with `spikeport train --force`")
    return payload["state_dict"], payload.get("meta", {})


def require_run_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}",
                          "pass a directory written by `spikeport train --out DIR`")
    if not (path / CONFIG_FILE).is_file():
        raise RunDirError(f"{path} has no {CONFIG_FILE}: not a spikeport run directory",
                          "pass a directory written by `spikeport train --out DIR`")
    return path


def check_output_dir(path: str | Path, force: bool) -> Path:
    """Refuse to overwrite an existing, non-empty directory unless ``force``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} exists and is not a directory",
                          "choose another --out path")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise RunDirError(f"run directory {path} already exists",
                          "choose another --out, or pass --force to replace it")
    return path


class StagedDir:
    """Build a directory under a temporary sibling name; :meth:`commit` swaps it into place.

    Until commit, an existing directory at the target path is untouched; if the block fails
    the staging directory is removed and the old one survives.
    """

    def __init__(self, target: str | Path):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".staging",
                                          dir=self.target.parent))

    def commit(self) -> Path:
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
        os.replace(self.path, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def dataclass_json(obj, omit_if_none: tuple[str, ...] | None = ()) -> dict:
    """A result dataclass as the dict its JSON is made of (nested dataclasses too); fields
    named in ``omit_if_none`` are left out when None (``None``: every None field is)."""
    out = dataclasses.asdict(obj)
    for key in list(out):
        if out[key] is None and (omit_if_none is None or key in omit_if_none):
            del out[key]
    return out
