"""The training recipe's spread: train a model once per seed with the real command line
(train_mnist.py, the default recipe), each into a folder of its own, and print each run's accuracy
(as served, and the Keras model's) and time, then the mean, minimum and maximum; with
``--repeat``, the first seed is trained a second time and the two models' accuracies and served
flatbuffers are compared (reproducibility). With ``--holdout N`` each run keeps the last N
training images out of training and its accuracy on them is printed too: the figure to compare
recipes by, since nothing may be chosen on the test split.

    python -m tools.training_runs [--model cnn|dense] [--seeds 1 2 3 4 5] [--holdout N] [--repeat] [--keep DIR]

``make training-runs`` runs it with ``--repeat`` (MODEL, SEEDS, HOLDOUT). Nothing is chosen by these figures: they
are the spread the build's accuracy gate (docs/training.md) is set from.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train(model: str, seed: int, folder: Path, holdout: int = 0) -> dict:
    """One run of train_mnist.py; its metadata, with the wall time of the whole command."""
    out = folder / f"seed-{seed}" / f"mnist-{model}.keras"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "train_mnist.py", "--model", model, "--seed", str(seed), "--out", str(out),
                    "--holdout", str(holdout)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    metadata = json.loads(out.with_suffix(".json").read_text())
    return {**metadata, "command_seconds": round(time.monotonic() - started, 1)}


def line(run: dict) -> str:
    held_out = (f"{100 * run['holdout_accuracy']:.2f}% on the {run['holdout_examples']} held out, "
                if "holdout_accuracy" in run else "")
    return (f"seed {run['seed']:>5}: {held_out}{100 * run['test_accuracy']:.2f}% as served, Keras "
            f"{100 * run['keras_test_accuracy']:.2f}%, {run['training_seconds']:.0f} s training "
            f"({run['seconds_per_epoch']} s an epoch), {run['command_seconds']:.0f} s the whole command")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("cnn", "dense"), default="cnn")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--holdout", type=int, default=0, metavar="N",
                        help="keep the last N training images out of training and print the accuracy on them")
    parser.add_argument("--repeat", action="store_true", help="train the first seed twice and compare")
    parser.add_argument("--keep", type=Path, help="keep the models in this folder (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="training-runs-") as scratch:
        folder = args.keep or Path(scratch)
        runs = []
        for seed in args.seeds:
            runs.append(train(args.model, seed, folder, args.holdout))
            print(line(runs[-1]), flush=True)
        served = [run["test_accuracy"] for run in runs]
        minutes = [run["command_seconds"] / 60 for run in runs]
        print(f"mnist-{args.model} over {len(runs)} seeds, as served: mean {100 * statistics.mean(served):.3f}%, "
              f"min {100 * min(served):.2f}%, max {100 * max(served):.2f}%; the whole command "
              f"{min(minutes):.1f}-{max(minutes):.1f} min")
        if args.holdout:
            held_out = [run["holdout_accuracy"] for run in runs]
            print(f"on the {args.holdout} training images held out: mean {100 * statistics.mean(held_out):.3f}%, "
                  f"min {100 * min(held_out):.2f}%, max {100 * max(held_out):.2f}%")
        if args.repeat:
            again = train(args.model, args.seeds[0], folder / "repeat", args.holdout)
            print("repeat " + line(again))
            same = (again["test_accuracy"] == runs[0]["test_accuracy"]
                    and again["litert"]["int8"]["sha256"] == runs[0]["litert"]["int8"]["sha256"])
            print(f"seed {args.seeds[0]} twice: {'the same model' if same else 'DIFFERENT models'} "
                  f"(served flatbuffer sha256 {runs[0]['litert']['int8']['sha256'][:16]}... and "
                  f"{again['litert']['int8']['sha256'][:16]}...)")
            if not same:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
