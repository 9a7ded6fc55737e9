"""Data-parallel training on torch.distributed: the process group, the shard of each rank,
agreement between ranks, and ``--nproc`` (N local processes started by
``torch.multiprocessing``, the same code path ``torchrun`` drives on several machines).

A rank is one process training a replica of the model on its shard of every epoch
(``torch.utils.data.DistributedSampler``, shuffled from the recipe's seed, so all ranks
agree on the permutation); ``DistributedDataParallel`` averages the gradients, so the
replicas take identical steps. gloo on CPU, NCCL on CUDA. Rank 0 alone evaluates and writes
the run directory; the others only train.

Under ``torchrun`` the process group comes from the environment it sets (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``); under ``--nproc`` from a file store in a
private temporary directory (no port to pick, nothing left behind).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist

from spikeport.core.errors import ConfigError, SpikeportError

# A rank waiting for the others gives up after this long (gloo's default is 30 minutes);
# torchrun and --nproc stop the others as soon as one rank fails, so it only matters if a
# rank hangs.
TIMEOUT = timedelta(minutes=10)
# Each rank's encoder generator is seeded with seed + RANK_SEED_STRIDE * rank.
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Shard:
    """This process's place in the process group: rank ``rank`` of ``world``."""
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """The recipe's seed as this rank's encoder seed (rank 0 keeps it unchanged)."""
        return (seed + RANK_SEED_STRIDE * self.rank) % 2 ** 63


def current() -> Shard:
    """The running process group's shard, or a single process's."""
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(device: torch.device) -> Shard:
    """Join the process group ``torchrun`` describes in the environment (a no-op without
    one, or for a world of one process)."""
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return current()
    dist.init_process_group(backend(device), timeout=TIMEOUT)
    return current()


def rank_device(device: torch.device, shard: Shard) -> torch.device:
    """CUDA ranks each take their own device (LOCAL_RANK under torchrun)."""
    if device.type != "cuda" or device.index is not None or shard.world == 1:
        return device
    local = int(os.environ.get("LOCAL_RANK", shard.rank))
    return torch.device("cuda", local % torch.cuda.device_count())


def sum_across(values: list[float], device: torch.device) -> list[float]:
    """The element-wise sum of ``values`` over all ranks (``values`` in a single process)."""
    if current().world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def weights_digest(model: torch.nn.Module) -> str:
    """A SHA-256 of the model's state (names, shapes and bytes), to compare replicas."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if current().world == 1:
        return [obj]
    out: list[Any] = [None] * current().world
    dist.all_gather_object(out, obj)
    return out


def agree(error: SpikeportError | None) -> None:
    """A collective check: if any rank holds an error, every rank raises (the rank that
    found it its own error, the others one naming that rank), so no rank is left waiting
    in a collective that the failed one never joins."""
    errors = gather(None if error is None else (error.problem, error.fix))
    if error is not None:
        raise error
    for rank, found in enumerate(errors):
        if found is not None:
            raise ConfigError(f"rank {rank} stopped: {found[0]}", found[1])


# --- --nproc: N local processes --------------------------------------------------------

def _worker(rank: int, world: int, store: str, fn: Callable, args: tuple, results) -> None:
    """One ``--nproc`` rank: join the group, run ``fn(*args)``, report to the parent."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world, timeout=TIMEOUT)
    try:
        value = fn(*args)
        results.put((rank, "ok", value))
    except SpikeportError as e:
        results.put((rank, "error", (type(e).__name__, e.problem, e.fix)))
        raise
    except BaseException:
        results.put((rank, "crash", traceback.format_exc()))
        raise
    finally:
        dist.destroy_process_group()


def spawn(nproc: int, fn: Callable, *args) -> Any:
    """Run ``fn(*args)`` in ``nproc`` fresh processes forming one gloo process group and
    return rank 0's value. A rank's SpikeportError is re-raised here as it was (rank 0's
    first, the one that failed first otherwise); torch stops the other ranks as soon as one
    fails."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    quiet = logging.getLogger("torch.multiprocessing.spawn")  # "Terminating process ..." when
    level, quiet.level = quiet.level, logging.ERROR           # a rank failed: the error says it
    with tempfile.TemporaryDirectory(prefix="spikeport-ddp-") as tmp, _restore(quiet, level):
        store = os.path.join(tmp, "store")
        try:
            mp.start_processes(_worker, args=(nproc, store, fn, args, results), nprocs=nproc,
                               join=True, start_method="spawn")
        except mp.ProcessExitedException as e:
            _reraise(_drain(results), f"rank {e.error_index} exited with code {e.exit_code}")
        except mp.ProcessRaisedException as e:
            _reraise(_drain(results), f"rank {e.error_index} failed")
    reports = _drain(results)
    found = next((value for rank, kind, value in reports if rank == 0 and kind == "ok"), None)
    if found is None:
        raise SpikeportError("data-parallel training ended without rank 0's result",
                             "run again with --nproc 1 to see the error of a single process")
    return found


@contextlib.contextmanager
def _restore(logger: logging.Logger, level: int) -> Iterator[None]:
    try:
        yield
    finally:
        logger.setLevel(level)


def _drain(results) -> list[tuple]:
    """Every (rank, kind, value) report the ranks left, errors first, by rank."""
    out = []
    try:
        while not results.empty():
            out.append(results.get())
    except (EOFError, OSError):  # a rank killed while writing its report
        pass
    return sorted(out, key=lambda r: (r[1] == "ok", r[0]))


def _reraise(reports: list[tuple], what: str) -> None:
    from spikeport.core import errors

    for rank, kind, value in reports:
        if kind == "error":
            cls = getattr(errors, value[0], SpikeportError)
            raise cls(value[1], value[2])
    crash = next((value for _, kind, value in reports if kind == "crash"), None)
    if crash is not None:
        raise RuntimeError(f"{what}:\n{crash}")
    raise SpikeportError(f"data-parallel training stopped: {what}",
                         "run again with --nproc 1 to see the error of a single process")
