"""A sweep's results: one row per network, mean +- standard error per tau, CSVs and plots.

Reads every ``SWEEP_DIR/*/results.json`` and the ``config.json`` beside it. A
results.json with a ``networks`` list (runs of ``num_networks`` networks) gives
one row per entry; an older one gives one row from its top level, its seed from
config.json. The CLI is ``launch/summarize.py``.
"""

from __future__ import annotations

import collections
import csv
import glob
import json
import math
import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

NETWORK_COLUMNS = ("trial", "task", "mode", "grad_clip_norm", "tau", "seed", "step",
                   "sequence_error", "mean_steps", "mean_ponder")
DIFFICULTY_COLUMNS = ("trial", "task", "mode", "grad_clip_norm", "tau", "seed", "difficulty",
                      "count", "sequence_error", "mean_steps", "mean_ponder")
METRIC_LABELS = {"sequence_error": "sequence error", "mean_steps": "ponder (mean N)",
                 "mean_ponder": "ponder cost (mean rho = N + R)"}
DEFAULT_DIFFICULTY_CURVES = 4


class Stats(NamedTuple):
  """Mean of ``n`` values and its standard error (nan for n = 1: no error bar)."""
  n: int
  mean: float
  standard_error: float


def mean_and_standard_error(values: Sequence[float]) -> Stats:
  """The mean and ``std(ddof=1) / sqrt(n)`` of ``values``."""
  values = np.asarray(values, dtype=np.float64)
  if values.size == 0:
    raise ValueError("no values to average")
  error = values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else math.nan
  return Stats(int(values.size), float(values.mean()), float(error))


def is_pondernet(results: Mapping[str, Any]) -> bool:
  """Whether a results.json is of PonderNet halting (one before the ``halting`` field is ACT's)."""
  return results.get("halting") == "pondernet"


def mode_of(results: Mapping[str, Any]) -> str:
  """The ``mode`` a network row carries: the config's, except PonderNet's halting (no tau),
  which is a mode of its own per prior (``pondernet lambda_p=0.2``)."""
  if is_pondernet(results):
    return f"pondernet lambda_p={results['lambda_p']:g}"
  return results["mode"]


def network_rows(trial: str, results: Mapping[str, Any], config: Mapping[str, Any]
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
  """One trial's network rows (``NETWORK_COLUMNS``) and difficulty rows (``DIFFICULTY_COLUMNS``).

  Args:
    trial: the trial id (its directory name).
    results: the trial's results.json. With a ``networks`` list, one row per
      network; without (one network), one row from the top level. Difficulty
      rows come from the difficulty figure's examples (``figure``) if the run
      has them, else from the held-out stream.
    config: the trial's config.json (the seed of a results.json without
      ``networks``, and ``grad_clip_norm``: 0 where absent); may be empty.
  """
  networks = results.get("networks") or [
      {"seed": config.get("seed"), **{k: results[k] for k in (
          "tau", "sequence_error", "mean_steps", "mean_ponder", "by_difficulty")},
       **({"figure": results["figure"]} if "figure" in results else {})}]
  rows, difficulty_rows = [], []
  for network in networks:
    key = {"trial": trial, "task": results["task"], "mode": mode_of(results),
           "grad_clip_norm": config.get("grad_clip_norm", 0.0),
           "tau": network.get("tau"), "seed": network["seed"]}  # None: no ACT, no tau
    rows.append({**key, "step": results["step"], "sequence_error": network["sequence_error"],
                 "mean_steps": network["mean_steps"], "mean_ponder": network["mean_ponder"]})
    table = network.get("figure", network)["by_difficulty"]
    for difficulty, row in sorted(table.items(), key=lambda kv: int(kv[0])):
      difficulty_rows.append({**key, "difficulty": int(difficulty), **{
          k: row[k] for k in ("count", "sequence_error", "mean_steps", "mean_ponder")}})
  return rows, difficulty_rows


def read_json(path: str) -> dict[str, Any]:
  with open(path) as f:
    return json.load(f)


def load_sweep_results(sweep_dir: str
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
  """Network rows, difficulty rows and the difficulty's name, from every trial of ``sweep_dir``."""
  rows, difficulty_rows, difficulty_names = [], [], set()
  for path in sorted(glob.glob(os.path.join(sweep_dir, "*", "results.json"))):
    trial_dir = os.path.dirname(path)
    results = read_json(path)
    config_path = os.path.join(trial_dir, "config.json")
    config = read_json(config_path) if os.path.exists(config_path) else {}
    trial_rows, trial_difficulty_rows = network_rows(os.path.basename(trial_dir), results, config)
    rows += trial_rows
    difficulty_rows += trial_difficulty_rows
    difficulty_names.add(results.get("figure", results)["difficulty"])
  if not rows:
    raise ValueError(f"no */results.json under {sweep_dir!r}")
  return rows, difficulty_rows, " / ".join(sorted(difficulty_names))


def group_stats(rows: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], Hashable],
                metric: str) -> dict[Hashable, Stats]:
  """``metric``'s mean and standard error over the rows of each ``key``, keys sorted."""
  groups = collections.defaultdict(list)
  for row in rows:
    groups[key(row)].append(row[metric])
  return {k: mean_and_standard_error(groups[k]) for k in sorted(groups)}


def _is_act(row: Mapping[str, Any]) -> bool:
  return row["mode"] == "act"


def _clip(row: Mapping[str, Any]) -> float:
  return row.get("grad_clip_norm", 0.0)


def clip_suffix(grad_clip_norm: float) -> str:
  """`` clip=1`` where the gradient was clipped to that global norm, else nothing."""
  return f" clip={grad_clip_norm:g}" if grad_clip_norm else ""


def _reference_mode(row: Mapping[str, Any]) -> str:
  return row["mode"] + clip_suffix(_clip(row))


def act_clip_norms(rows: Iterable[Mapping[str, Any]]) -> list[float]:
  """The gradient clipping norms of the ACT networks (0: unclipped), sorted: each is a series
  of its own in the tables and plots, never pooled with another."""
  return sorted({_clip(r) for r in rows if _is_act(r)})


def by_tau(rows: Iterable[Mapping[str, Any]], metric: str, grad_clip_norm: float = 0.0
           ) -> dict[float, Stats]:
  """``metric`` over the ACT networks of each tau trained with ``grad_clip_norm``."""
  return group_stats([r for r in rows if _is_act(r) and _clip(r) == grad_clip_norm],
                     lambda r: r["tau"], metric)


def references(rows: Iterable[Mapping[str, Any]], metric: str) -> dict[str, Stats]:
  """``metric`` over the networks of each mode other than ACT (tau plays no part), clipped
  networks a mode of their own (``none clip=1``)."""
  return group_stats([r for r in rows if not _is_act(r)], _reference_mode, metric)


def spread_taus(taus: Sequence[float], count: int = DEFAULT_DIFFICULTY_CURVES) -> list[float]:
  """Up to ``count`` of the sorted ``taus``, evenly spread, the smallest and largest included."""
  taus = sorted(taus)
  if len(taus) <= count:
    return taus
  return [taus[round(i * (len(taus) - 1) / (count - 1))] for i in range(count)]


def match_taus(requested: Iterable[float], available: Iterable[float]) -> list[float]:
  """The values of ``available`` equal (to 1e-9 relative) to each requested tau."""
  available = sorted(available)
  matched = []
  for tau in requested:
    found = [a for a in available if math.isclose(a, tau, rel_tol=1e-9)]
    if not found:
      raise ValueError(f"no ACT results for tau={tau:g}; the sweep has "
                       f"{', '.join(f'{a:g}' for a in available)}")
    matched.append(found[0])
  return matched


def _with_error(stats: Stats, digits: int) -> str:
  if math.isnan(stats.standard_error):
    return f"{stats.mean:.{digits}f}"
  return f"{stats.mean:.{digits}f} +- {stats.standard_error:.{digits}f}"


def summary_table(rows: Sequence[Mapping[str, Any]]) -> str:
  """Per tau (unclipped, then per clipping norm), then per mode without ACT: n, error, N and
  rho as mean +- standard error."""
  metrics = ("sequence_error", "mean_steps", "mean_ponder")
  groups = []  # (label, {metric: Stats})
  for clip in act_clip_norms(rows):
    per_tau = {metric: by_tau(rows, metric, clip) for metric in metrics}
    groups += [(f"{tau:g}{clip_suffix(clip)}", {m: per_tau[m][tau] for m in metrics})
               for tau in per_tau["sequence_error"]]
  per_mode = {metric: references(rows, metric) for metric in metrics}
  groups += [(f"mode={mode}", {m: per_mode[m][mode] for m in metrics})
             for mode in per_mode["sequence_error"]]
  width = max([10, *(len(label) for label, _ in groups)])
  lines = [f"{'tau':>{width}s} {'n':>4s} {'sequence error':>18s} {'N':>14s} {'rho':>14s}"]
  for label, stats in groups:
    lines.append(f"{label:>{width}s} {stats['sequence_error'].n:>4d} "
                 f"{_with_error(stats['sequence_error'], 4):>18s} "
                 f"{_with_error(stats['mean_steps'], 2):>14s} "
                 f"{_with_error(stats['mean_ponder'], 2):>14s}")
  return "\n".join(lines)


def write_csv(path: str, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)


def _title(rows: Sequence[Mapping[str, Any]]) -> str:
  return ", ".join(sorted({r["task"] for r in rows}))


def plot_against_tau(rows: Sequence[Mapping[str, Any]], metric: str, path: str) -> None:
  """``metric`` against tau (log axis), mean +- standard error, a curve per ACT clipping norm;
  other modes as lines."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6, 4))
  for clip, style in zip(act_clip_norms(rows), ("o-", "s-", "^-", "v-")):
    points = by_tau(rows, metric, clip)
    fewest, most = min(s.n for s in points.values()), max(s.n for s in points.values())
    clipped = f", clipped to {clip:g}" if clip else ""
    ax.errorbar(list(points), [s.mean for s in points.values()],
                yerr=[s.standard_error for s in points.values()], fmt=style, capsize=3,
                label=f"ACT{clipped} (n = {fewest if fewest == most else f'{fewest}-{most}'} "
                      "per tau)")
  for (mode, stats), style in zip(references(rows, metric).items(), ("--", ":", "-.")):
    ax.axhline(stats.mean, linestyle=style, color="gray", label=f"mode={mode} (n = {stats.n})")
  ax.set(xscale="log", xlabel="time penalty tau", ylabel=METRIC_LABELS[metric],
         title=f"{_title(rows)}: mean +- s.e. over networks")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_by_difficulty(difficulty_rows: Sequence[Mapping[str, Any]], taus: Sequence[float],
                       difficulty_name: str, ponder_metric: str, path: str) -> None:
  """Error and ponder against difficulty, one curve per tau (and clipping norm) and per mode
  without ACT."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  curves = []
  for clip in act_clip_norms(difficulty_rows):
    for tau in taus:
      rows = [r for r in difficulty_rows if _is_act(r) and _clip(r) == clip and r["tau"] == tau]
      if rows:
        curves.append((f"tau = {tau:g}{clip_suffix(clip)}", "o-", rows))
  references = [r for r in difficulty_rows if not _is_act(r)]
  for mode in sorted({_reference_mode(r) for r in references}):
    curves.append((f"mode={mode}", "s--", [r for r in references if _reference_mode(r) == mode]))
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, metric in zip(axes, ("sequence_error", ponder_metric)):
    for label, style, rows in curves:
      stats = group_stats(rows, lambda r: r["difficulty"], metric)
      ax.errorbar(list(stats), [s.mean for s in stats.values()],
                  yerr=[s.standard_error for s in stats.values()], fmt=style, capsize=2,
                  markersize=3, label=label)
    ax.set(xlabel=difficulty_name, ylabel=METRIC_LABELS[metric])
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.legend()
  fig.suptitle(f"{_title(difficulty_rows)}: by difficulty (mean +- s.e. over networks)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def summarize(sweep_dir: str, out_dir: str, difficulty_taus: Sequence[float],
              ponder_metric: str) -> str:
  """Writes the CSVs and plots of ``sweep_dir`` to ``out_dir``; returns the table."""
  rows, difficulty_rows, difficulty_name = load_sweep_results(sweep_dir)
  taus = sorted({r["tau"] for r in rows if _is_act(r)})
  chosen = match_taus(difficulty_taus, taus) if difficulty_taus else spread_taus(taus)
  os.makedirs(out_dir, exist_ok=True)
  write_csv(os.path.join(out_dir, "networks.csv"), rows, NETWORK_COLUMNS)
  write_csv(os.path.join(out_dir, "by_difficulty.csv"), difficulty_rows, DIFFICULTY_COLUMNS)
  plot_against_tau(rows, "sequence_error", os.path.join(out_dir, "error_vs_tau.png"))
  plot_against_tau(rows, ponder_metric, os.path.join(out_dir, "ponder_vs_tau.png"))
  plot_by_difficulty(difficulty_rows, chosen, difficulty_name, ponder_metric,
                     os.path.join(out_dir, "by_difficulty.png"))
  return summary_table(rows)
