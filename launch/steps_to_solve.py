"""Steps to solve per model, over seeds, and learning curves (Fojo et al. 2018, Table 1).

A sweep whose trials set ``config.solved_at`` records each network's
``solved_step`` in ``results.json`` (``tasks/solved.py``). This module groups
the trials by model (ACT at each tau, Repeat-RNN at each repeat count, no ACT,
PonderNet at each prior), and gives per model: how many seeds solved the task,
the median and range of their solved steps, the mean repetitions N - 1 + R (=
rho - 1: 1 without ACT, the repeat count for Repeat-RNN), Fojo et al.'s ponder
metric, and the steps per input at evaluation. The CLI is ``launch/summarize.py``.
"""

from __future__ import annotations

import collections
import csv
import glob
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from launch import sweep_results

COLUMNS = ("trial", "model", "seed", "solved_step", "step", "sequence_error", "repetitions",
           "steps_per_input")


def model_of(results: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[str, tuple]:
  """The model's name (``ACT tau=0.01``, ``Repeat-RNN x3``, ``no ACT``, ``PonderNet
  lambda_p=0.2``; `` clip=1`` added where the gradient was clipped) and its sort key: no
  ACT, then ACT by falling tau, then Repeat-RNN by rising repeats, then PonderNet by rising
  prior; unclipped before clipped."""
  clip = config.get("grad_clip_norm", 0.0)
  if sweep_results.is_pondernet(results):
    name, order = f"PonderNet lambda_p={results['lambda_p']:g}", (3, results["lambda_p"])
  elif results["mode"] == "act":
    name, order = f"ACT tau={results['tau']:g}", (1, -results["tau"])
  elif results["mode"] == "repeat":
    name, order = f"Repeat-RNN x{config['repeats']}", (2, config["repeats"])
  else:
    name, order = "no ACT", (0, 0)
  return name + sweep_results.clip_suffix(clip), (*order, clip)


def repetitions(results: Mapping[str, Any], network: Mapping[str, Any]) -> float:
  """Fojo et al.'s ponder metric: N - 1 + R (= rho - 1) for ACT; for PonderNet its
  expected steps beyond the first (sum_n n p_n - 1, as rho - 1 is ACT's); the updates per
  input (mean N: 1 without ACT, the repeat count for Repeat-RNN) otherwise."""
  if sweep_results.is_pondernet(results):
    return network["expected_steps"] - 1
  return network["mean_ponder"] - 1 if results["mode"] == "act" else network["mean_steps"]


def steps_per_input(results: Mapping[str, Any], network: Mapping[str, Any]) -> float:
  """The steps a network takes per input when evaluated: N, or for PonderNet the mean of the
  halting steps sampled from p (its evaluation, ``tasks/evaluation.py``)."""
  if sweep_results.is_pondernet(results):
    return network["mean_sampled_steps"]
  return network["mean_steps"]


def trial_rows(sweep_dir: str) -> list[dict[str, Any]]:
  """One row per network of each finished trial of ``sweep_dir`` that set ``solved_at``:
  ``COLUMNS``, and the model's sort key ``order``."""
  rows = []
  for path in sorted(glob.glob(os.path.join(sweep_dir, "*", "results.json"))):
    results = sweep_results.read_json(path)
    if "solved_step" not in results:
      continue
    config = sweep_results.read_json(os.path.join(os.path.dirname(path), "config.json"))
    model, order = model_of(results, config)
    for network in results["networks"]:
      rows.append({"trial": os.path.basename(os.path.dirname(path)), "model": model,
                   "order": order, "seed": network["seed"],
                   "solved_step": network["solved_step"], "step": results["step"],
                   "sequence_error": network["sequence_error"],
                   "repetitions": repetitions(results, network),
                   "steps_per_input": steps_per_input(results, network)})
  return rows


def table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """Per model: ``n``, ``solved`` (count), ``median``/``low``/``high`` solved step over the
  seeds that solved it (None if none did), ``steps`` (the largest trained) and mean
  ``repetitions``."""
  groups = collections.defaultdict(list)
  for row in rows:
    groups[row["model"]].append(row)
  out = []
  for model in sorted(groups, key=lambda m: groups[m][0]["order"]):
    group = groups[model]
    solved = [r["solved_step"] for r in group if r["solved_step"] is not None]
    out.append({"model": model, "n": len(group), "solved": len(solved),
                "median": float(np.median(solved)) if solved else None,
                "low": min(solved) if solved else None, "high": max(solved) if solved else None,
                "steps": max(r["step"] for r in group),
                **{column: float(np.mean([r[column] for r in group]))
                   for column in ("repetitions", "steps_per_input")}})
  return out


def format_table(summary: Sequence[Mapping[str, Any]]) -> str:
  """The table as text: model, seeds solved, steps to solve median (range), repetitions and
  steps per input."""
  lines = [f"{'model':>29s} {'solved':>7s} {'steps to solve: median (range)':>32s} "
           f"{'repetitions':>11s} {'steps/input':>11s}"]
  for row in summary:
    steps = (f"{row['median'] / 1000:.0f}k ({row['low'] / 1000:.0f}k-{row['high'] / 1000:.0f}k)"
             if row["solved"] else f"- (none in {row['steps'] / 1000:.0f}k)")
    lines.append(f"{row['model']:>29s} {row['solved']:>3d}/{row['n']:<3d} {steps:>32s} "
                 f"{row['repetitions']:>11.2f} {row['steps_per_input']:>11.2f}")
  return "\n".join(lines)


def plot_learning_curves(sweep_dir: str, rows: Sequence[Mapping[str, Any]], path: str) -> None:
  """Held-out error against step, one panel per kind of model, one line per trial."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  titles = ("no ACT", "ACT", "Repeat-RNN", "PonderNet")  # by the first element of an order
  kinds = sorted({r["order"][0] for r in rows})  # a panel per kind of model in the sweep
  fig, panels = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4), sharey=True,
                             squeeze=False)
  axes = dict(zip(kinds, panels[0]))
  models = sorted({r["model"]: r["order"] for r in rows}.items(), key=lambda kv: kv[1])
  colours = {m: plt.cm.tab10(i % 10) for i, (m, _) in enumerate(models)}
  labelled = set()
  for row in sorted(rows, key=lambda r: (r["order"], r["seed"])):
    with open(os.path.join(sweep_dir, row["trial"], "metrics.jsonl")) as f:
      evals = [r for r in map(json.loads, f) if r["split"] == "eval"]
    axes[row["order"][0]].plot(
        [r["step"] for r in evals], [r["sequence_error"] for r in evals], lw=1,
        color=colours[row["model"]], label=None if row["model"] in labelled else row["model"])
    labelled.add(row["model"])
  for kind, ax in axes.items():
    ax.set(title=titles[kind], xlabel="training step", yscale="log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
    ax.axhline(0.02, color="gray", linestyle=":", lw=1)
    ax.legend(fontsize=8)
  panels[0][0].set_ylabel("held-out sequence error (2% dotted)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def summarize(sweep_dir: str, out_dir: str) -> str | None:
  """Writes ``steps_to_solve.csv`` and ``learning_curves.png`` to ``out_dir`` and returns the
  table, if any finished trial of ``sweep_dir`` set ``solved_at`` (else None)."""
  rows = trial_rows(sweep_dir)
  if not rows:
    return None
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "steps_to_solve.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  plot_learning_curves(sweep_dir, rows, os.path.join(out_dir, "learning_curves.png"))
  return format_table(table(rows))
