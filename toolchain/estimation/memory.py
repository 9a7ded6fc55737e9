"""Memory traffic of one inference (ENERGY.md 4): the Lemaire et al. (ICONIP 2022) model, as
spikingjelly's analytical energy model counts it.

Event-driven: every non-zero input element of a connection is read, every synaptic operation
reads one weight and reads and writes one accumulator, every neuron's state is read and
written at every step, every spike is written once; fp32 values and weights
(:data:`BYTES_PER_VALUE`), bias reads not counted. Traffic is priced as 64-bit accesses
(:data:`ACCESS_BYTES`) to a buffer whose energy per access is piecewise-linear in its size
through (0, 0), (8 KB, e_mem_8kb), (32 KB, e_mem_32kb), (1 MB, e_mem_1mb): the accesses to a
buffer are split between the two neighbouring levels (:func:`accesses_by_level`). Buffers
above 1 MB are charged at the 1 MB figure, a lower bound (DRAM costs 10-25x more); they are
listed in ``buffers_over_1mb``. The same is reported for one dense ANN pass (every input and
weight read once, every output written once), for the naive comparison.
"""
from __future__ import annotations

from dataclasses import dataclass

BYTES_PER_VALUE = 4
ACCESS_BYTES = 8
MEMORY_LEVELS = ((8 * 1024, "8kb"), (32 * 1024, "32kb"), (1024 * 1024, "1mb"))
# state variables read and written per neuron update, per NIR population type
STATE_VARS = {"LIF": 1, "IF": 1, "CubaLIF": 2, "LI": 1, "CubaLI": 2, "I": 1, "Threshold": 0}
MODEL = ("Lemaire et al. 2022 (event-driven): each non-zero input read, one weight read and one "
         "accumulator read+write per synaptic op, every neuron's state read+written every step, "
         "one write per spike; fp32, 64-bit accesses, energy piecewise-linear in buffer size; "
         "bias reads not counted")


@dataclass(frozen=True)
class ConnectionLoad:
    """What one connection does per sample, and the sizes of its buffers (in values)."""
    nonzero_inputs: float  # non-zero input elements per sample (steps <= exit)
    synops: float          # effective synaptic operations per sample
    inputs: int            # elements of one step's input
    weights: int           # weights, zeros included
    outputs: int           # elements of one step's output


@dataclass(frozen=True)
class PopulationLoad:
    """What one neuron population does per sample."""
    kind: str              # NIR node type (LIF, CubaLIF, ...): its state variables
    neurons: int
    updates: float         # dense neuron updates per sample (neurons x exit step)
    spikes: float          # spikes per sample (0 for a non-spiking population)


def accesses_by_level(n_bytes: float, buffer_bytes: float) -> dict[str, float]:
    """n_bytes of traffic to a buffer of buffer_bytes as 64-bit accesses per memory level,
    split between the two neighbouring levels so that the energy is the piecewise-linear
    interpolation in the buffer size."""
    accesses = n_bytes / ACCESS_BYTES
    size = min(float(buffer_bytes), MEMORY_LEVELS[-1][0])
    lo, lo_name = 0.0, None
    for hi, name in MEMORY_LEVELS:
        if size <= hi:
            w = (size - lo) / (hi - lo)
            out = {name: accesses * w}
            if lo_name is not None and w < 1.0:
                out[lo_name] = accesses * (1.0 - w)
            return out
        lo, lo_name = float(hi), name
    return {}  # a size that compares with no level (NaN): no traffic


def _add(levels: dict[str, float], n_bytes: float, buffer_bytes: float) -> None:
    for name, n in accesses_by_level(n_bytes, buffer_bytes).items():
        levels[name] = levels.get(name, 0.0) + n


def memory_traffic(connections: dict[str, ConnectionLoad],
                   populations: dict[str, PopulationLoad]) -> dict:
    """Bytes moved per sample, per connection and population, and as 64-bit accesses per
    memory level; the same for one dense ANN pass (the ``memory`` block of the metrics)."""
    b = BYTES_PER_VALUE
    levels: dict[str, float] = {}
    large: list[str] = []
    conns = {c: _connection_row(c, load, levels, large) for c, load in connections.items()}
    pops = {p: _population_row(p, load, levels, large) for p, load in populations.items()}
    total = sum(v for r in conns.values() for k, v in r.items() if k != "buffers")
    total += sum(r["state_reads_writes"] + r["spike_writes"] for r in pops.values())
    ann_levels: dict[str, float] = {}
    ann_bytes = 0.0
    for load in connections.values():
        # one dense ANN pass: every input and weight read once, every output written once
        for size in (load.inputs * b, load.weights * b, load.outputs * b):
            _add(ann_levels, size, size)
            ann_bytes += size
    return {
        "model": MODEL, "bytes_per_value": b, "access_bytes": ACCESS_BYTES,
        "bytes_per_sample": total,
        "accesses_64bit": levels,
        "connections": conns, "populations": pops,
        "buffers_over_1mb": large,
        "ann_dense": {"bytes_per_sample": ann_bytes, "accesses_64bit": ann_levels},
    }


def _connection_row(name: str, load: ConnectionLoad, levels: dict, large: list) -> dict:
    b = BYTES_PER_VALUE
    row = {"input_reads": load.nonzero_inputs * b, "weight_reads": load.synops * b,
           "accumulator_reads_writes": 2 * load.synops * b,
           "buffers": {"input": load.inputs * b, "weights": load.weights * b,
                       "accumulator": load.outputs * b}}
    _add(levels, row["input_reads"], row["buffers"]["input"])
    _add(levels, row["weight_reads"], row["buffers"]["weights"])
    _add(levels, row["accumulator_reads_writes"], row["buffers"]["accumulator"])
    large.extend(f"{name}.{buf}" for buf, size in row["buffers"].items()
                 if size > MEMORY_LEVELS[-1][0])
    return row


def _population_row(name: str, load: PopulationLoad, levels: dict, large: list) -> dict:
    b = BYTES_PER_VALUE
    k = STATE_VARS.get(load.kind, 1)
    row = {"state_variables": k, "state_reads_writes": load.updates * 2 * k * b,
           "spike_writes": load.spikes * b,
           "buffers": {"state": load.neurons * k * b, "spikes": load.neurons * b}}
    _add(levels, row["state_reads_writes"], row["buffers"]["state"])
    _add(levels, row["spike_writes"], row["buffers"]["spikes"])
    if row["buffers"]["state"] > MEMORY_LEVELS[-1][0]:
        large.append(f"{name}.state")
    return row
