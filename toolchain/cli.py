"""The ``spikeport`` command line. It parses, calls the library, and maps errors to exit
codes and one-line messages; no logic lives here.

Exit codes: 0 success; 2 a problem the user can fix (unknown name, malformed config,
missing or corrupt checkpoint, run directory in the way), printed as one line on stderr
without a traceback; 130 interrupted.
"""
from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from toolchain.errors import SpikeportError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="spikeport: train spiking networks, export them through NIR, deploy, "
                       "validate and estimate their cost.")


def user_errors(fn):
    """Turn a SpikeportError into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SpikeportError as e:
            typer.echo(f"error: {e.one_line()}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: nothing was written", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _print_json(obj) -> None:
    typer.echo(json.dumps(obj, sort_keys=True))


def _print_metrics(result: dict) -> None:
    rows = [("run directory", result["run_dir"]),
            ("test accuracy", f"{result['test_accuracy']:.4f}"),
            ("test macro F1", f"{result['test_f1']:.4f}"),
            ("hidden usage", "n/a" if result["hidden_usage"] is None
             else f"{result['hidden_usage']:.4f} (fraction of hidden neurons spiking per example)"),
            ("test examples", str(result["n_test"]))]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"{k:<{width}}  {v}")


@app.command()
@user_errors
def train(
    recipe: str = typer.Option(..., "--recipe", "-r", help="built-in recipe name or path to a YAML recipe"),
    out: Path = typer.Option(..., "--out", "-o", help="run directory to create"),
    epochs: Optional[int] = typer.Option(None, help="override train.epochs"),
    seed: Optional[int] = typer.Option(None, help="override train.seed"),
    set_: list[str] = typer.Option([], "--set", help="override any key, e.g. --set model.beta=0.95"),
    force: bool = typer.Option(False, "--force", help="replace an existing run directory"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object with the results"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
):
    """Train a recipe and write a run directory (config, checkpoint, metrics)."""
    from toolchain.config import load_recipe
    from toolchain.train import summary, train_run

    overrides = list(set_)
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    cfg = load_recipe(recipe, overrides)
    result = train_run(cfg, out, force=force, progress=progress and sys.stderr.isatty())
    if as_json:
        _print_json(summary(result))
    else:
        _print_metrics(result)


@app.command()
@user_errors
def evaluate(
    run: Path = typer.Argument(..., help="run directory written by `spikeport train`"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object with the results"),
):
    """Recompute test accuracy, macro F1 and hidden-neuron usage from a run's checkpoint."""
    from toolchain.train import evaluate_run, summary

    result = evaluate_run(run)
    if as_json:
        _print_json(summary(result))
    else:
        _print_metrics(result)


@app.command("list")
@user_errors
def list_(what: str = typer.Argument("all", help="datasets, encoders, losses, models, recipes or all")):
    """List the registered datasets, encoders, losses, model architectures and recipes."""
    from toolchain.catalog import catalog

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


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
