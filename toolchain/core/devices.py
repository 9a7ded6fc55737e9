"""The torch device a command computes on: ``cpu`` (the default) or ``cuda`` / ``cuda:N``,
refused in one line where torch sees no such device. Training (``train --device``) and the
torch-based targets (``run | validate | estimate --device``) take it."""
from __future__ import annotations

from spikeport.core.errors import ConfigError


def check_device(device: str):
    """``device`` as a ``torch.device``, refused unless it is the CPU or a CUDA device torch
    sees."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"unknown device {device!r}", "use --device cpu or --device cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported", "use --device cpu or --device cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} needs CUDA, and this torch {torch.__version__} sees "
                          "no CUDA device", "use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices",
                          "use --device cuda:0")
    return dev


# Targets that compute with torch and so honour --device; the others run on the CPU.
DEVICE_TARGETS = ("snntorch",)


def check_target_device(device: str, targets) -> None:
    """``device`` for a command running ``targets``: refused in one line where it is not
    the CPU and none of the targets can use it (it would be ignored silently)."""
    dev = check_device(device)
    if dev.type != "cpu" and not any(t in DEVICE_TARGETS for t in targets):
        raise ConfigError(f"--device {device} applies to the snntorch target only; "
                          f"{', '.join(targets)} compute on the CPU",
                          "drop --device, or include the snntorch target")
