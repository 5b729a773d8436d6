"""Plots of a training run: learning curves and error / ponder by difficulty."""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position


def plot_run(workdir: str) -> str:
  """Writes ``workdir/plots.png`` from ``metrics.jsonl`` and ``results.json``."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for split, style in (("train", "-"), ("eval", "o-")):
    points = [r for r in rows if r["split"] == split]
    steps = [r["step"] for r in points]
    axes[0].plot(steps, [r["sequence_error"] for r in points], style, label=f"{split} error")
    axes[1].plot(steps, [r["mean_steps"] for r in points], style, label=f"{split} N")
    axes[1].plot(steps, [r["mean_ponder"] for r in points], style, label=f"{split} rho")
  axes[0].set(xlabel="step", ylabel="sequence error", ylim=(0, None))
  axes[1].set(xlabel="step", ylabel="per input step")
  table = sorted((int(d), row) for d, row in results["by_difficulty"].items())
  difficulty = [d for d, _ in table]
  axes[2].plot(difficulty, [row["sequence_error"] for _, row in table], "o-", color="C3",
               label="sequence error")
  twin = axes[2].twinx()
  twin.plot(difficulty, [row["mean_steps"] for _, row in table], "s-", color="C0",
            label="mean N")
  axes[2].set(xlabel=results["difficulty"], ylabel="sequence error", ylim=(0, None))
  twin.set_ylabel("mean N (updates per input)")
  axes[2].legend(loc="upper left")
  twin.legend(loc="upper right")
  for ax in axes[:2]:
    ax.legend()
  fig.suptitle(f"{results['task']} ({results['mode']}, tau={results['tau']:g}): "
               f"eval sequence error {results['sequence_error']:.3f} at step {results['step']}")
  fig.tight_layout()
  path = os.path.join(workdir, "plots.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
