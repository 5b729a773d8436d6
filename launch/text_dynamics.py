r"""A Wikipedia-LM sweep by its halting dynamics: a table, a CSV and N over training.

  python -m launch.text_dynamics --sweep_dir=runs/text_halting
  python -m launch.text_dynamics --sweep_dir=runs/text_halting_cpu --out_dir=/tmp/text_halting

For the text sweeps (``launch/sweeps/text_halting.py``, ``text_halting_cpu.py``),
whose trials may still be training or stopped by their time budget. Reads every
``SWEEP_DIR/<trial id>/`` that has a ``metrics.jsonl`` (others are skipped), with
its ``config.json``, ``results.json`` if the run finished and
``analysis/analysis.json`` if ``launch.analyze_ponder`` ran on it (or
``analysis.json`` beside the others, as in ``docs/runs/``); prints a
markdown table of one row per trial (``COLUMNS``: no ACT first, then by learning
rate, halting bias, tau, then the deviations from the paper: gradient clipping,
smaller caps M) and writes to ``--out_dir`` (default: the sweep dir):

* ``dynamics.csv``: the same rows, unformatted;
* ``ponder_over_training.png``: mean N of the training rows against updates for
  every ACT trial, log N axis.

Per trial: the updates reached (last training row), the held-out bits per
character of its last evaluation and, beside it, the no-ACT trial's of the same
learning rate at that evaluation's step or the nearest earlier one (the first
such trial by id; blank without one) and the difference in % of the no-ACT
value; N at the first training row, its largest value and step, its final value;
the dynamics (:func:`dynamics`); and the F1 of the peaks of ponder, loss and
entropy against word boundaries (``launch/analyze_ponder.py``).
"""

from __future__ import annotations

import glob
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from absl import app, flags

from launch import sweep_results

RUNAWAY_FRACTION = 0.5  # N >= M * this in a training row: ran away to the cap
COLLAPSE_N = 1.02  # N at most this: one step for (almost) every character
RISING_FACTOR = 1.5  # final N this many times the lowest before it, and the largest since: rising
BOUNDARY_TABLE = "word boundaries (spaces) found by peaks"  # analysis.json's F1 table
PEAK_SIGNALS = ("ponder", "loss", "entropy")
COLUMNS = ("trial", "mode", "learning_rate", "halting_bias", "tau", "grad_clip_norm",
           "max_steps", "updates", "finished", "bpc", "eval_step", "no_act_bpc",
           "no_act_eval_step", "vs_no_act_pct", "first_n", "max_n", "max_n_step", "final_n",
           "dynamics") + tuple(f"f1_{s}" for s in PEAK_SIGNALS)
_FORMATS = {"vs_no_act_pct": "+.1f"}  # other floats: 4 significant digits

_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "A text sweep's directory (launch.sweep).")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where the CSV and PNG go (default: sweep_dir).")
flags.mark_flag_as_required("sweep_dir")


class Trial(NamedTuple):
  """One trial directory's records: training and evaluation rows of metrics.jsonl in order."""
  name: str
  config: Mapping[str, Any]
  train: list[dict[str, Any]]
  evals: list[dict[str, Any]]
  finished: bool
  analysis: Mapping[str, Any]


def load_trial(trial_dir: str) -> Trial:
  """The records of ``trial_dir`` (which has a ``metrics.jsonl``)."""
  with open(os.path.join(trial_dir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  analysis_paths = [os.path.join(trial_dir, *parts)
                    for parts in (("analysis", "analysis.json"), ("analysis.json",))]
  analysis_path = next((path for path in analysis_paths if os.path.exists(path)), None)
  return Trial(os.path.basename(trial_dir), sweep_results.read_json(
      os.path.join(trial_dir, "config.json")), [r for r in rows if r["split"] == "train"],
               [r for r in rows if r["split"] == "eval"],
               os.path.exists(os.path.join(trial_dir, "results.json")),
               sweep_results.read_json(analysis_path) if analysis_path else {})


def load_sweep(sweep_dir: str) -> list[Trial]:
  """Every trial of ``sweep_dir`` with a ``metrics.jsonl``, by trial id."""
  paths = sorted(glob.glob(os.path.join(sweep_dir, "*", "metrics.jsonl")))
  if not paths:
    raise ValueError(f"no */metrics.jsonl under {sweep_dir!r}")
  return [load_trial(os.path.dirname(path)) for path in paths]


def dynamics(steps: Sequence[int], ns: Sequence[float], max_steps: int) -> str:
  """Where an ACT run's mean N went, from its training rows (steps and N, in order).

  * ``ran away at S``: some row has N >= ``RUNAWAY_FRACTION`` * M (the cap
    ``max_steps``); S is the first such row's step;
  * else ``collapsed at S``: the final N is at most ``COLLAPSE_N``; S is the
    first step from which every later row's N is too;
  * else ``rising: N X at S, from Y at S0``: the final N is the largest since
    the lowest, Y at S0, and at least ``RISING_FACTOR`` times it (the run
    ended while ponder grew: a runaway in the making, or not);
  * else ``settled at N X``: X is the final N (2 decimals).
  """
  runaway = [s for s, n in zip(steps, ns) if n >= RUNAWAY_FRACTION * max_steps]
  if runaway:
    return f"ran away at {runaway[0]}"
  if ns[-1] <= COLLAPSE_N:
    first = len(ns) - 1
    while first > 0 and ns[first - 1] <= COLLAPSE_N:
      first -= 1
    return f"collapsed at {steps[first]}"
  low = min(range(len(ns)), key=ns.__getitem__)
  if ns[-1] >= RISING_FACTOR * ns[low] and ns[-1] >= max(ns[low:]):
    return f"rising: N {ns[-1]:.2f} at {steps[-1]}, from {ns[low]:.2f} at {steps[low]}"
  return f"settled at N {ns[-1]:.2f}"


def no_act_reference(trials: Sequence[Trial], learning_rate: float,
                     step: int) -> tuple[int, float] | None:
  """The step and bpc of the first no-ACT trial at ``learning_rate`` at ``step`` or before."""
  for trial in sorted(trials, key=lambda t: t.name):
    if (trial.config["mode"] == "none"
        and math.isclose(trial.config["learning_rate"], learning_rate, rel_tol=1e-9)):
      earlier = [r for r in trial.evals if r["step"] <= step]
      return (earlier[-1]["step"], earlier[-1]["bits_per_character"]) if earlier else None
  return None


def trial_row(trial: Trial, trials: Sequence[Trial]) -> dict[str, Any]:
  """``trial``'s row (``COLUMNS``); ``trials``: the sweep's, for the no-ACT reference."""
  config, act = trial.config, trial.config["mode"] != "none"
  steps = [r["step"] for r in trial.train]
  ns = [r["mean_steps"] for r in trial.train]
  last_eval = trial.evals[-1] if trial.evals else {}
  reference = None
  if act and last_eval:
    reference = no_act_reference(trials, config["learning_rate"], last_eval["step"])
  bpc = last_eval.get("bits_per_character")
  peaks = trial.analysis.get(BOUNDARY_TABLE, {})
  return {
      "trial": trial.name, "mode": config["mode"], "learning_rate": config["learning_rate"],
      "halting_bias": config["halting_bias"] if act else None,
      "tau": config["tau"] if act else None, "grad_clip_norm": config["grad_clip_norm"],
      "max_steps": config["max_steps"] if act else None, "updates": steps[-1] if steps else None,
      "finished": trial.finished, "bpc": bpc, "eval_step": last_eval.get("step"),
      "no_act_bpc": reference and reference[1], "no_act_eval_step": reference and reference[0],
      "vs_no_act_pct": (100 * (bpc - reference[1]) / reference[1]
                        if reference and bpc is not None else None),
      "first_n": ns[0] if ns else None, "max_n": max(ns) if ns else None,
      "max_n_step": steps[ns.index(max(ns))] if ns else None, "final_n": ns[-1] if ns else None,
      "dynamics": dynamics(steps, ns, config["max_steps"]) if act and ns else None,
      **{f"f1_{s}": peaks.get(s, {}).get("f1") for s in PEAK_SIGNALS}}


def _order(row: Mapping[str, Any]) -> tuple:
  if row["mode"] == "none":
    return (0, row["learning_rate"], 0.0, 0.0, 0, row["grad_clip_norm"], row["trial"])
  return (1, row["learning_rate"], row["halting_bias"], row["tau"], -row["max_steps"],
          row["grad_clip_norm"], row["trial"])


def sweep_rows(trials: Sequence[Trial]) -> list[dict[str, Any]]:
  """The rows of ``trials``: no ACT first, then by learning rate, halting bias, tau, deviations."""
  return sorted((trial_row(t, trials) for t in trials), key=_order)


def _cell(column: str, value: Any) -> str:
  if value is None:
    return ""
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, float):
    return f"{value:{_FORMATS.get(column, '.4g')}}"
  return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
  """``rows`` as a markdown table of ``COLUMNS``, blank where a value is missing."""
  lines = ["| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
  lines += ["| " + " | ".join(_cell(c, row[c]) for c in COLUMNS) + " |" for row in rows]
  return "\n".join(lines)


def plot_ponder(trials: Sequence[Trial], path: str) -> None:
  """Mean N of the training rows against updates, one line per ACT trial, log N axis."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(10, 5))
  act = [t for t in trials if t.config["mode"] != "none" and t.train]
  for i, trial in enumerate(act):  # 10 colours, then the next line style
    ax.plot([r["step"] for r in trial.train], [r["mean_steps"] for r in trial.train],
            linestyle=("-", "--", ":", "-.")[i // 10 % 4], label=trial.name)
  windows = sorted({t.config["task_options"]["window"] for t in trials})
  ax.set(yscale="log", xlabel="updates", ylabel="ponder (mean N of the training batches)",
         title=f"mean N over training ({', '.join(map(str, windows))}-byte windows)")
  if ax.get_lines():
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)


def summarize(sweep_dir: str, out_dir: str) -> str:
  """Writes ``dynamics.csv`` and ``ponder_over_training.png`` to ``out_dir``; returns the table."""
  trials = load_sweep(sweep_dir)
  rows = sweep_rows(trials)
  os.makedirs(out_dir, exist_ok=True)
  sweep_results.write_csv(os.path.join(out_dir, "dynamics.csv"), rows, COLUMNS)
  plot_ponder(trials, os.path.join(out_dir, "ponder_over_training.png"))
  return markdown_table(rows)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  out_dir = _OUT_DIR.value or _SWEEP_DIR.value
  try:
    print(summarize(_SWEEP_DIR.value, out_dir))
  except (ValueError, OSError) as e:
    raise app.UsageError(str(e)) from e
  print(f"written to {out_dir}: dynamics.csv, ponder_over_training.png")


if __name__ == "__main__":
  app.run(main)
