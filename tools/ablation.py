"""Regenerate the tables of docs/methods.md: train variants of a recipe, estimate each on a
target, print one markdown row per variant.

    .venv/bin/python tools/ablation.py losses --recipe digits --out runs/ablation
    .venv/bin/python tools/ablation.py rcs --recipe digits --out runs/rcs --alpha 0 0.1 1

``losses``: the recipe trained with each of spikemax, spikemax-window, ce-count, mse-count
(``--set loss={name: ...}``). ``rcs``: the recipe trained with ``regularizer={name: rcs,
alpha: A, beta: B, layers: L}`` for each A (A = 0: ``regularizer=null``, no regulariser).
Every variant is trained with ``spikeport train`` (one at a time), then ``spikeport
estimate RUN --target T --cutoff topk --json`` and ``--cutoff none --json``; a run
directory that already holds a run is reused unless ``--retrain``. Only the console script
is used, so every figure is one a user gets from the same commands. Each estimate's
``RUN/estimate-TARGET.json`` (the ``--json`` result with the full metrics) is kept as
``OUT/NAME/estimate_{topk,none}.json``, the rows in ``OUT/MODE.json``.

Columns: test accuracy of the trained (float) model (``train --json``); accuracy of the
target at T and with the Top-K cutoff; the Top-K mean exit step (``cutoff.mean_steps``, of
T) and the fraction of samples that never meet the criterion; the oracle OCT
(``cutoff.mean_oct``: the earliest step from which the prediction stays correct, mean over
the samples correct at T); spikes per sample (``spikes_per_sample``; of the output
population alone: ``metrics.layers``, over all T steps) and dynamic energy per
sample on ``--profile`` (``energy_dynamic_j``: every term of ``energy.<profile>.terms_J``
except ``static``), each over all T steps and up to the Top-K exit.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SPIKEPORT = str(Path(sys.executable).with_name("spikeport"))
LOSSES = ("spikemax", "spikemax-window", "ce-count", "mse-count")


def run_json(args: list[str]) -> dict:
    print("$ spikeport " + " ".join(args), file=sys.stderr, flush=True)
    done = subprocess.run([SPIKEPORT, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"spikeport {' '.join(args)} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def dynamic_energy(est: dict, profile: str) -> float:
    """Joules per sample of every energy term except the static one: ``energy_dynamic_j``
    (the sum of ``energy.<profile>.terms_J`` but ``static``, null terms left out)."""
    if "energy_dynamic_j" in est and est.get("energy_profile") == profile:
        return est["energy_dynamic_j"]
    terms = est["energy"][profile]["terms_J"]
    return sum(v for k, v in terms.items() if k != "static" and v is not None)


def output_spikes(est: dict) -> float:
    """Spikes per sample of the output population(s): ``metrics.layers`` entries that are
    not hidden, their ``spikes_per_step`` summed."""
    layers = est["metrics"]["layers"].values()
    return sum(sum(layer["spikes_per_step"]) for layer in layers if not layer["hidden"])


def measure(name: str, sets: list[str], a: argparse.Namespace) -> dict:
    run = Path(a.out) / name
    train_args = ["train", "--recipe", a.recipe, "--out", str(run), "--seed", str(a.seed),
                  "--json", "--no-progress", *[x for s in sets for x in ("--set", s)]]
    if a.retrain or not (run / "metrics.json").exists():
        trained = run_json(train_args + ["--force"])
    else:
        trained = json.loads((run / "metrics.json").read_text())
    est = {}
    for cutoff in ("topk", "none"):
        run_json(["estimate", str(run), "--target", a.target, "--profile", a.profile,
                  "--cutoff", cutoff, "--json"])
        # the same result with the full metrics (per-layer spikes), kept per cutoff
        est[cutoff] = json.loads((run / f"estimate-{a.target}.json").read_text())
        (run / f"estimate_{cutoff}.json").write_text(json.dumps(est[cutoff], indent=1))
    cut = est["topk"]["cutoff"]
    return {"variant": name, "sets": sets, "test_accuracy": trained["test_accuracy"],
            "target_accuracy_at_T": cut["full_accuracy"], "accuracy_at_cutoff": cut["accuracy"],
            "topk_mean_steps": cut["mean_steps"], "T": cut["T"], "mean_oct": cut["mean_oct"],
            "fraction_forced": cut["fraction_forced"],
            "spikes_per_sample_T": est["none"]["spikes_per_sample"],
            "spikes_per_sample_cutoff": est["topk"]["spikes_per_sample"],
            "output_spikes_per_sample_T": output_spikes(est["none"]),
            "dynamic_energy_J_cutoff": dynamic_energy(est["topk"], a.profile),
            "dynamic_energy_J_T": dynamic_energy(est["none"], a.profile)}


def variants(a: argparse.Namespace) -> list[tuple[str, list[str]]]:
    if a.mode == "losses":
        return [(loss, [f"loss={{name: {loss}}}"]) for loss in a.losses]
    out = []
    for alpha in a.alpha:
        reg = (f"regularizer={{name: rcs, alpha: {alpha:g}, beta: {a.beta:g}, "
               f"layers: {a.layers}}}" if alpha > 0 else "regularizer=null")
        out.append((f"alpha-{alpha:g}", [reg, *a.set]))
    return out


def table(rows: list[dict]) -> str:
    head = ("| variant | test accuracy | target accuracy at T / at cutoff | Top-K mean exit "
            "step (forced to T) | oracle OCT | spikes / sample (T / cutoff) | output spikes / "
            "sample (T) | dynamic energy / sample (T / cutoff) |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['test_accuracy']:.4f} | {r['target_accuracy_at_T']:.4f} / "
            f"{r['accuracy_at_cutoff']:.4f} | {r['topk_mean_steps']:.2f} of {r['T']} "
            f"({r['fraction_forced']:.1%}) | {r['mean_oct']:.2f} | "
            f"{r['spikes_per_sample_T']:.1f} / {r['spikes_per_sample_cutoff']:.1f} | "
            f"{r['output_spikes_per_sample_T']:.1f} | "
            f"{r['dynamic_energy_J_T'] * 1e6:.2f} / {r['dynamic_energy_J_cutoff'] * 1e6:.2f} µJ |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("losses", "rcs"))
    p.add_argument("--recipe", default="digits")
    p.add_argument("--out", required=True, help="folder for the runs (one per variant)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", default="loihi-emu")
    p.add_argument("--profile", default="loihi")
    p.add_argument("--losses", nargs="+", default=list(LOSSES))
    p.add_argument("--alpha", nargs="+", type=float, default=[0.0, 0.002])
    p.add_argument("--beta", type=float, default=0.3)
    p.add_argument("--layers", choices=("hidden", "all"), default="hidden")
    p.add_argument("--set", nargs="*", default=[], help="further --set overrides (rcs mode)")
    p.add_argument("--retrain", action="store_true", help="train even where a run exists")
    a = p.parse_args()
    rows = [measure(name, sets, a) for name, sets in variants(a)]
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / f"{a.mode}.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
