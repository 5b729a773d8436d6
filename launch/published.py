"""A sweep's learning curves beside a published log's: ours next to theirs.

A published reference is a CSV (``docs/published/``) with columns ``model``,
``step`` and ``sequence_error`` (a fraction), the model named as
``launch/steps_to_solve.model_of`` names ours (``no ACT``, ``ACT tau=0.001``,
``Repeat-RNN x3``). Our curves are read from every trial of the sweep, finished
or not (``config.json`` and the evaluation rows of ``metrics.jsonl``), so a
sweep still training can be compared at the steps it has reached. At each
published step, ours is the median and range over the trials (seeds) of a model
of the held-out error evaluated at exactly that step. The CLI is
``launch/summarize.py --published``.
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

from launch import steps_to_solve, sweep_results

Curve = dict[int, float]  # step -> held-out sequence error


def read_reference(path: str) -> dict[str, Curve]:
  """The published curves of a reference CSV, by model.

  Raises:
    ValueError: naming the file and what is wrong, if a column is missing or a
      value is not a number.
  """
  curves: dict[str, Curve] = collections.defaultdict(dict)
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    missing = {"model", "step", "sequence_error"} - set(reader.fieldnames or ())
    if missing:
      raise ValueError(f"{path}: missing columns {sorted(missing)}, got {reader.fieldnames}")
    for line, row in enumerate(reader, start=2):
      try:
        curves[row["model"]][int(row["step"])] = float(row["sequence_error"])
      except ValueError as e:
        raise ValueError(f"{path} line {line}: {e}") from None
  return dict(curves)


def sweep_curves(sweep_dir: str) -> dict[str, list[Curve]]:
  """Every trial's held-out error by step (one curve per network), by model."""
  curves: dict[str, list[Curve]] = collections.defaultdict(list)
  for config_path in sorted(glob.glob(os.path.join(sweep_dir, "*", "config.json"))):
    config = sweep_results.read_json(config_path)
    model, _ = steps_to_solve.model_of(config, config)
    metrics_path = os.path.join(os.path.dirname(config_path), "metrics.jsonl")
    if not os.path.exists(metrics_path):
      continue
    with open(metrics_path) as f:
      evals = [row for row in map(json.loads, f) if row["split"] == "eval"]
    num_networks = config.get("num_networks", 1)
    for network in range(num_networks):  # network i's metrics are "name/i" when K > 1
      key = f"sequence_error/{network}" if num_networks > 1 else "sequence_error"
      curves[model].append({row["step"]: row[key] for row in evals})
  return dict(curves)


def table(reference: Mapping[str, Curve], ours: Mapping[str, Sequence[Curve]]
          ) -> list[dict[str, Any]]:
  """One row per published model and step: ``published``, and ``n`` (our curves that reached
  the step), ``median``, ``low``, ``high`` of ours there (None where none did)."""
  rows = []
  for model, published in reference.items():
    for step in sorted(published):
      values = [curve[step] for curve in ours.get(model, ()) if step in curve]
      rows.append({"model": model, "step": step, "published": published[step], "n": len(values),
                   "median": float(np.median(values)) if values else None,
                   "low": min(values) if values else None,
                   "high": max(values) if values else None})
  return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
  """The table as text, errors in percent."""
  lines = [f"{'model':>16s} {'step':>6s} {'published':>9s} {'ours: median (range), n':>26s}"]
  for row in rows:
    ours = (f"{100 * row['median']:.1f} ({100 * row['low']:.1f}-{100 * row['high']:.1f}), "
            f"{row['n']}" if row["n"] else "-")
    lines.append(f"{row['model']:>16s} {row['step'] // 1000:>5d}k {100 * row['published']:>8.1f}% "
                 f"{ours:>26s}")
  return "\n".join(lines)


def plot(reference: Mapping[str, Curve], ours: Mapping[str, Sequence[Curve]], title: str,
         path: str) -> None:
  """Held-out error against step: published curves dashed, ours solid (one line per seed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, model in enumerate(sorted(set(reference) | set(ours))):
    colour = plt.cm.tab10(i % 10)
    if model in reference:
      steps = sorted(reference[model])
      ax.plot(steps, [reference[model][s] for s in steps], "o--", color=colour, lw=1.2, ms=3,
              label=f"{model}, published")
    for j, curve in enumerate(ours.get(model, ())):
      steps = sorted(curve)
      ax.plot(steps, [curve[s] for s in steps], "-", color=colour, lw=1, alpha=0.8,
              label=f"{model}, ours" if j == 0 else None)
  ax.set(title=title, xlabel="training step", ylabel="held-out sequence error", ylim=(0, 1))
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def compare(sweep_dir: str, reference_path: str, out_dir: str) -> str:
  """Writes ``published_comparison.csv`` and ``published_curves.png`` to ``out_dir`` and
  returns the table."""
  reference, ours = read_reference(reference_path), sweep_curves(sweep_dir)
  rows = table(reference, ours)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "published_comparison.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["model"])
    writer.writeheader()
    writer.writerows(rows)
  plot(reference, ours, f"{os.path.basename(os.path.normpath(sweep_dir))} against "
       f"{os.path.basename(reference_path)}", os.path.join(out_dir, "published_curves.png"))
  return format_table(rows)
