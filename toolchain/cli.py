"""The ``spikeport`` command line. It parses, calls the library, and maps errors to exit
codes and one-line messages; no logic lives here.

Exit codes: 0 success; 2 a problem the user can fix (unknown name, malformed config,
missing or corrupt checkpoint, run directory in the way), printed as one line on stderr
without a traceback; 130 interrupted.
"""
from __future__ import annotations

import errno
import functools
import importlib
import json
import logging
import os
import warnings
import sys
from pathlib import Path
from typing import Optional

import typer

from spikeport.core.errors import SpikeportError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="spikeport: train spiking networks, export them through NIR, deploy, "
                       "validate and estimate their cost.")


# Imported before a command runs, with Ctrl-C held back until they are loaded: an interrupt
# inside torch's C++ initialisation aborts the process ("terminate called after throwing an
# instance of 'python_error'"), and one inside numpy's or onnxruntime's leaves a broken module
# that fails later with an unrelated traceback.
_HEAVY_IMPORTS = ("numpy", "torch", "h5py", "onnxruntime")


# path errors that a user's argument causes, wherever they surface (os.stat raises them
# from Path.is_file and the like): one line, not a traceback
_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP}


def user_errors(fn):
    """Turn a SpikeportError into one line on stderr and exit code 2, Ctrl-C into exit code
    130 and a line saying what, if anything, was written."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from spikeport.core import interrupts

        written_before = None
        try:
            with interrupts.deferred(strict=True):
                for name in _HEAVY_IMPORTS:
                    try:
                        importlib.import_module(name)
                    except ImportError:
                        pass  # the command that needs it says so
            from spikeport.core import transactions

            written_before = len(transactions.committed())
            return fn(*args, **kwargs)
        except SpikeportError as e:
            typer.echo(f"error: {e.one_line()}", err=True)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:
            if e.errno not in _PATH_ERRNOS:
                raise  # not a path the user gave: a bug, with its traceback
            name = os.fsdecode(e.filename) if e.filename is not None else "a path"
            shown = name if len(name) <= 80 else name[:77] + "..."
            typer.echo(f"error: cannot use {shown}: {e.strerror} -- fix: check the path "
                       "(each name at most 255 bytes, the whole path at most 4096)", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            written = [] if written_before is None else transactions.committed()[written_before:]
            if written:  # Ctrl-C during a commit waits for it, so these are complete
                typer.echo(f"interrupted after writing {', '.join(map(str, written))}", err=True)
            else:
                typer.echo("interrupted: nothing was written", err=True)
            raise typer.Exit(130) from None

    return wrapper


# options several commands share: one declaration each
DT_OPTION = typer.Option(None, "--dt", help="seconds per step of a .nir file that records no dt")
WORKERS_OPTION = typer.Option(1, "--workers", help="sample shards to run at once (Lava: "
                              "simulator processes); same result for any number")
DEVICE_OPTION = typer.Option("cpu", "--device", help="where the torch-based target (snntorch) "
                             "computes: cpu, or cuda where present")
EVENTS_OPTION = typer.Option(None, "--events", help="an event recording (.npy, .h5 or "
                             ".aedat4), binned as the run's recipe says or by --bin-ms")
BIN_MS_OPTION = typer.Option(None, "--bin-ms", help="milliseconds per step when binning --events "
                             "(required with a .nir file; replaces a run's time window)")
CROP_OPTION = typer.Option(None, "--crop", help="X,Y: bin only the --events in the window of the "
                           "graph's input size whose top-left pixel is (X, Y)")


def _inputs(input_file: Optional[Path], events: Optional[Path], bin_ms: Optional[float],
            crop: Optional[str]):
    """The ``input_file`` a command passes on: the --input .npz, or the --events recording
    with its binning options."""
    if events is None:
        if bin_ms is not None or crop is not None:
            raise SpikeportError(f"{'--bin-ms' if bin_ms is not None else '--crop'} bins an "
                                 "event recording, but no --events was given",
                                 "pass --events FILE, or drop the option")
        return input_file
    if input_file is not None:
        raise SpikeportError("--events and --input both give the inputs", "pass one of them")
    from spikeport.data.event_files import event_file

    return event_file(events, bin_ms, crop)


def _print_json(obj) -> None:
    typer.echo(json.dumps(obj, sort_keys=True))


def _print_metrics(result, as_json: bool) -> None:
    """A training or evaluation result: its summary as JSON, or a small table."""
    if as_json:
        _print_json(result.summary())
        return
    rows = [("run directory", result.run_dir),
            ("test accuracy", f"{result.test_accuracy:.4f}"),
            ("test macro F1", f"{result.test_f1:.4f}"),
            ("hidden usage", "n/a" if result.hidden_usage is None
             else f"{result.hidden_usage:.4f} (fraction of hidden neurons spiking per example)"),
            ("test examples", str(result.n_test))]
    for key, label in (("knn_accuracy", "kNN accuracy"),
                       ("linear_probe_accuracy", "linear probe accuracy")):
        if getattr(result, key, None) is not None:  # an embedding method's run
            rows.insert(-1, (label, f"{getattr(result, key):.4f}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"{k:<{width}}  {v}")


@app.command("train")
@user_errors
def train_cmd(
    recipe: str = typer.Option(..., "--recipe", "-r", help="built-in recipe name or path to a YAML recipe"),
    out: Path = typer.Option(..., "--out", "-o", help="run directory to create"),
    epochs: Optional[int] = typer.Option(None, help="override train.epochs"),
    seed: Optional[int] = typer.Option(None, help="override train.seed"),
    set_: list[str] = typer.Option([], "--set", help="override any key, e.g. --set model.beta=0.95"),
    force: bool = typer.Option(False, "--force", help="replace an existing run directory"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object with the results"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
    nproc: int = typer.Option(1, "--nproc", help="train data-parallel in N local processes (gloo)"),
    device: str = typer.Option("cpu", "--device", help="cpu, or cuda where present"),
):
    """Train a recipe and write a run directory (config, checkpoint, metrics); under torchrun,
    every rank trains its shard and rank 0 writes (docs/scaling.md)."""
    from spikeport.training.loop import train

    overrides = list(set_)
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    result = train(recipe, out, overrides, force=force, progress=progress and sys.stderr.isatty(),
                   nproc=nproc, device=device)
    if result is not None:  # None: a torchrun rank other than 0, which writes nothing
        _print_metrics(result, as_json)


@app.command("evaluate")
@user_errors
def evaluate_cmd(
    run: Path = typer.Argument(..., help="run directory written by `spikeport train`"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object with the results"),
):
    """Recompute test accuracy, macro F1 and hidden-neuron usage from a run's checkpoint."""
    from spikeport.training.loop import evaluate_run

    _print_metrics(evaluate_run(run), as_json)


@app.command("export")
@user_errors
def export_cmd(
    run: Path = typer.Argument(..., help="run directory written by `spikeport train`"),
    to: str = typer.Option(..., "--to", help="nir, onnx or loihi"),
    allow_approximation: bool = typer.Option(
        False, "--allow-approximation", help="allow documented lossy rewrites (recorded in the artifact)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """Export a run's model; the artifact is written into the run directory."""
    from spikeport.deploy import export

    info = export(run, to, allow_approximation=allow_approximation)
    if as_json:
        _print_json(info.to_json())
        return
    typer.echo(f"wrote {info.artifact}")
    for layer in info.layers or []:
        typer.echo(f"  {layer['neuron']:<12} {layer['neuron_type']:<8} weights clipped "
                   f"{100 * layer['weights_clipped_fraction']:.1f} %, weight rms error "
                   f"{100 * layer['weight_rms_error']:.2f} %, voltage decay "
                   f"{layer['voltage_decay']['requested']:.6f} -> {layer['voltage_decay']['realised']:.6f}, "
                   f"threshold {layer['threshold']['requested']:.6g} -> {layer['threshold']['realised']:.6g}; "
                   f"bias: {layer['bias']}")
    for note in info.approximations or []:
        typer.echo(f"  approximation: {note}")
    if info.mapping:
        from spikeport.exporters.loihi.mapping import format_mapping

        typer.echo(format_mapping(info.mapping))


@app.command("inspect")
@user_errors
def inspect_cmd(
    graph: Path = typer.Argument(..., help="a .nir file"),
    dt: Optional[float] = DT_OPTION,
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """Summarise a NIR graph: nodes, shapes, neuron counts, parameters, metadata."""
    from spikeport.runs import read_graph
    from spikeport.ir.inspect import format_summary, summarize

    s = summarize(read_graph(graph, dt))
    if as_json:
        _print_json(s)
    else:
        typer.echo(format_summary(s))


def _targets_option(text: str) -> list[str]:
    from spikeport.validation import check_target_names

    return check_target_names([t.strip() for t in text.split(",") if t.strip()])


@app.command("run")
@user_errors
def run_cmd(
    graph: Path = typer.Argument(..., help="a .nir file or a run directory"),
    target: str = typer.Option("reference", "--target", help="target to run on"),
    input_file: Optional[Path] = typer.Option(None, "--input", help=".npz with x (T, B, ...) and optional y"),
    samples: Optional[int] = typer.Option(None, help="use only the first N samples"),
    out: Optional[Path] = typer.Option(None, "--out", help="write every node's values to this .npz"),
    events: Optional[Path] = EVENTS_OPTION,
    bin_ms: Optional[float] = BIN_MS_OPTION,
    crop: Optional[str] = CROP_OPTION,
    dt: Optional[float] = DT_OPTION,
    workers: int = WORKERS_OPTION,
    device: str = DEVICE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """Run a graph on one target and report output spikes (and accuracy with labels)."""
    from spikeport.deploy import run

    (name,) = _targets_option(target)
    info = run(graph, name, input_file=_inputs(input_file, events, bin_ms, crop),
               samples=samples, out=out, dt=dt, workers=workers, device=device).to_json()
    if as_json:
        _print_json(info)
    else:
        for k, v in info.items():
            typer.echo(f"{k:<26} {v}")


@app.command("validate")
@user_errors
def validate_cmd(
    run_or_graph: Path = typer.Argument(..., help="a run directory or a .nir file"),
    targets: str = typer.Option("reference,snntorch,onnx", "--targets", help="comma-separated targets"),
    samples: Optional[int] = typer.Option(None, help="use only the first N test samples"),
    input_file: Optional[Path] = typer.Option(None, "--input", help=".npz with x (T, B, ...) and optional y"),
    allow_approximation: bool = typer.Option(
        False, "--allow-approximation", help="let Loihi targets apply documented lossy rewrites"),
    events: Optional[Path] = EVENTS_OPTION,
    bin_ms: Optional[float] = BIN_MS_OPTION,
    crop: Optional[str] = CROP_OPTION,
    dt: Optional[float] = DT_OPTION,
    workers: int = WORKERS_OPTION,
    device: str = DEVICE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """Run the same inputs on several targets: accuracy per target, spike mismatches per pair."""
    from spikeport.validation import validate

    result = validate(run_or_graph, _targets_option(targets), samples=samples,
                      input_file=_inputs(input_file, events, bin_ms, crop),
                      allow_approximation=allow_approximation, dt=dt, workers=workers,
                      device=device)
    if as_json:
        _print_json(result.to_json())
        return
    typer.echo(f"inputs: {result.inputs}")
    for t, acc in result.targets.items():
        typer.echo(f"  {t:<12} accuracy {'n/a' if acc is None else f'{acc:.4f}'}")
    for p in result.pairs:
        typer.echo(f"  {p.a} vs {p.b}: {p.mismatched_spike_bins} of "
                   f"{p.total_spike_bins} spike bins differ")
        for node, v in p.layers.items():
            typer.echo(f"      {node:<20} {v.mismatched_spike_bins} / {v.total_spike_bins}")


@app.command("bench")
@user_errors
def bench_cmd(
    run: Path = typer.Option(Path("runs/digits"), "--run", help="a trained run directory"),
    samples: int = typer.Option(20, help="test samples to run on every side"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the figures to this JSON file"),
    estimator_targets: str = typer.Option(
        "reference,snntorch,onnx,loihi-emu", "--estimator-targets",
        help="targets on which to time estimation against plain inference (whole test split)"),
    scale: bool = typer.Option(True, "--scale/--no-scale", help="also the scale-out benchmarks: "
                               "training in 1 and 2 processes, estimate's memory at 1,000 and "
                               "10,000 samples, binning 60,000 event recordings (minutes, 4 GB "
                               "of temporary disk)"),
):
    """Time the Loihi emulator against Lava, one batched Lava run against per-sample runs,
    estimation against plain inference, validation with 1 and 2 workers, and (--scale) the
    scale-out benchmarks (docs/benchmarks.md)."""
    from spikeport.bench import run_benchmarks

    names = tuple(t.strip() for t in estimator_targets.split(",") if t.strip())
    _print_json(run_benchmarks(run, samples, names, out, scale=scale))


@app.command("estimate")
@user_errors
def estimate_cmd(
    run_or_graph: Path = typer.Argument(..., help="a run directory or a .nir file"),
    target: str = typer.Option(..., "--target", help="reference, snntorch, onnx, loihi-emu or lava"),
    profile: Optional[str] = typer.Option(None, "--profile", help="energy profile name or YAML file "
                                          "(default: every profile of the target)"),
    cutoff: str = typer.Option("topk", "--cutoff", help="topk, confidence or none"),
    epsilon: Optional[float] = typer.Option(None, help="cutoff tolerance (topk 0.0, confidence 0.05)"),
    samples: Optional[int] = typer.Option(None, help="use only the first N test samples"),
    input_file: Optional[Path] = typer.Option(None, "--input", help=".npz with x (T, B, ...) and y"),
    plots: Optional[Path] = typer.Option(None, "--plots", help="write PNG plots into this directory"),
    allow_approximation: bool = typer.Option(False, "--allow-approximation",
                                             help="let Loihi targets apply documented lossy rewrites"),
    events: Optional[Path] = EVENTS_OPTION,
    bin_ms: Optional[float] = BIN_MS_OPTION,
    crop: Optional[str] = CROP_OPTION,
    dt: Optional[float] = DT_OPTION,
    workers: int = WORKERS_OPTION,
    device: str = DEVICE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """Spikes, hidden-neuron usage, synaptic ops, anytime-cutoff latency and energy on a target."""
    from spikeport.estimation.pipeline import estimate

    (name,) = _targets_option(target)
    if samples is not None and samples < 1:
        raise SpikeportError("--samples must be >= 1", "pass a positive number of samples")
    result = estimate(run_or_graph, name, profile=profile, cutoff=cutoff, epsilon=epsilon,
                      samples=samples, input_file=_inputs(input_file, events, bin_ms, crop),
                      allow_approximation=allow_approximation, plots=plots, dt=dt,
                      workers=workers, device=device)
    if as_json:
        _print_json(result.to_json())
    else:
        typer.echo(result.table())
        for p in result.plots or []:
            typer.echo(f"plot: {p}")


data_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Real event datasets read through tonic from a data directory.")
app.add_typer(data_app, name="data")
DATA_DIR_OPTION = typer.Option(None, "--data-dir", help="the data directory (default: "
                               "$SPIKEPORT_DATA, else data/ beside the event cache)")


@data_app.command("list")
@user_errors
def data_list(data_dir: Optional[Path] = DATA_DIR_OPTION,
              as_json: bool = typer.Option(False, "--json", help="print one JSON object")):
    """Which tonic datasets are in the data directory, where, and what a partial one lacks."""
    from spikeport.data.tonic_sets import data_dir as resolve, present

    rows = present(data_dir)
    if as_json:
        _print_json({"data_dir": str(resolve(data_dir)),
                     "datasets": [{"name": n, "path": str(p), "status": st} for n, p, st in rows]})
        return
    typer.echo(f"data directory: {resolve(data_dir)}")
    width = max(len(n) for n, _, _ in rows)
    for name, path, status in rows:
        typer.echo(f"{name:<{width}}  {status:<8}  {path}" if status in ("present", "missing")
                   else f"{name:<{width}}  {status}")


@data_app.command("fetch")
@user_errors
def data_fetch(name: str = typer.Argument(..., help="a tonic dataset (spikeport data list)"),
               data_dir: Optional[Path] = DATA_DIR_OPTION):
    """Download a dataset with tonic's own downloader (needs internet and spikeport[events])."""
    from spikeport.data.tonic_sets import fetch

    typer.echo(str(fetch(name, data_dir)))


lava_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Manage the Python 3.10 environment that runs the Lava simulator.")
app.add_typer(lava_app, name="lava-env")


@lava_app.command("install")
@user_errors
def lava_install():
    """Create (or reuse) the Lava environment in the per-user cache (about 4 minutes, 5.6 GB)."""
    from spikeport.exporters.lava import env

    path = env.install(progress=lambda line: typer.echo(line, err=True))
    typer.echo(str(path))


@lava_app.command("check")
@user_errors
def lava_check(as_json: bool = typer.Option(False, "--json", help="print one JSON object")):
    """Verify the Lava environment: Python, lava-nc and lava-dl versions, import."""
    from spikeport.exporters.lava import env

    status = env.check()
    if as_json:
        _print_json(status)
    else:
        for k, v in status.items():
            typer.echo(f"{k:<14} {v}")
    if not status.get("ok"):
        raise typer.Exit(1)


@lava_app.command("path")
def lava_path():
    """Print where the Lava environment lives (whether or not it exists yet)."""
    from spikeport.exporters.lava import env

    typer.echo(str(env.env_path()))


@app.command("list")
@user_errors
def list_(what: str = typer.Argument("all", help="datasets, encoders, losses, methods, models, neurons, surrogates, optimizers, recipes or all")):
    """List the registered datasets, encoders, losses, training methods, models, neurons, surrogates, optimizers and recipes."""
    from spikeport.catalog import catalog

    cat = catalog()
    if what != "all" and what not in cat:
        raise SpikeportError(f"nothing called {what!r} to list",
                             f"use one of: all, {', '.join(cat)}")
    for kind, entries in cat.items():
        if what not in ("all", kind):
            continue
        typer.echo(f"{kind}:")
        for name, summary_ in entries:
            typer.echo(f"  {name:<18} {summary_}")


_WARNED: set[str] = set()


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning on the command line is one line, ``warning: ...``, printed once per command
    (several modules may read the same graph), without the source line Python would add."""
    text = " ".join(str(message).split())
    if text not in _WARNED:
        _WARNED.add(text)
        typer.echo(f"warning: {text}", err=True)


def main() -> None:
    """The console script: like ``app()``, but a usage error (an unknown option, ``--samples
    abc``) is the same one line and exit code 2 as every other user error, not a box."""
    try:  # typer >= 0.20 raises the exceptions of the click it vendors
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - an older typer on plain click
        from click import exceptions as click_errors

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.showwarning = _one_line_warning
    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError:  # bare `spikeport` or a group: typer has
        code = 0                                # printed its help already
    except click_errors.UsageError as e:
        where = e.ctx.command_path if e.ctx else "spikeport"
        typer.echo(f"error: {' '.join(e.format_message().split())} -- fix: see `{where} --help`",
                   err=True)
        code = 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted: nothing was written", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
