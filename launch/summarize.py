r"""Summarizes a sweep: CSVs, a table and plots of error and ponder against tau.

  python -m launch.summarize --sweep_dir=runs/parity
  python -m launch.summarize --sweep_dir=runs/parity --out_dir=docs/figures/parity_sweep \
      --difficulty_taus=1e-3,1e-2

Reads every ``SWEEP_DIR/*/results.json`` (and the ``config.json`` beside it)
and writes to ``--out_dir`` (default: the sweep dir):

* ``networks.csv``: one row per trained network (a results.json with a
  ``networks`` list has one per entry, an older one one row from its top level);
* ``by_difficulty.csv``: one row per network and difficulty;
* ``error_vs_tau.png`` and ``ponder_vs_tau.png`` (paper Figs. 4 and 5): the mean
  over networks with the standard error as error bars, log tau axis, runs
  without ACT as horizontal reference lines;
* ``by_difficulty.png`` (paper Fig. 6): error and ponder against difficulty for
  the chosen taus;

and prints a table of tau, n, error, N and rho (mean +- standard error). If
the trials set ``config.solved_at`` (e.g. ``launch/sweeps/fojo_parity.py``),
also ``steps_to_solve.csv``, ``learning_curves.png`` and a table of steps to
solve per model (``launch/steps_to_solve.py``). With ``--published=CSV`` (a
published log, ``docs/published/``), also ``published_comparison.csv``,
``published_curves.png`` and a table of their error and ours at their steps
(``launch/published.py``; trials still training count with the steps they
reached).

  python -m launch.summarize --sweep_dir=runs/addition_downsized \
      --published=docs/published/aakhundov_addition.csv
"""

import glob
import os
from collections.abc import Sequence

from absl import app, flags

from launch import published, steps_to_solve, sweep_results

_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "A sweep directory (launch.sweep).")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where the CSVs and PNGs go (default: sweep_dir).")
_DIFFICULTY_TAUS = flags.DEFINE_list(
    "difficulty_taus", [], "Taus of the by-difficulty plot, e.g. 1e-3,1e-2 (default: "
    f"up to {sweep_results.DEFAULT_DIFFICULTY_CURVES} spread over the sweep's taus).")
_PONDER_METRIC = flags.DEFINE_enum(
    "ponder_metric", "mean_steps", ["mean_steps", "mean_ponder"],
    "What the ponder plots show: mean_steps (N, the steps taken; the paper's 'ponder', "
    "minimum 1, docs/equations.md section 11) or mean_ponder (rho = N + R, the ponder cost).")
_PUBLISHED = flags.DEFINE_string(
    "published", None, "A published log to compare with (docs/published/*.csv: model, step, "
    "sequence_error).")
flags.mark_flag_as_required("sweep_dir")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  sweep_dir = _SWEEP_DIR.value
  out_dir = _OUT_DIR.value or sweep_dir
  # A sweep still training its first trials has nothing to summarize yet but its curves.
  summarize_results = bool(glob.glob(os.path.join(sweep_dir, "*", "results.json"))
                           or not _PUBLISHED.value)
  try:
    taus = [float(t) for t in _DIFFICULTY_TAUS.value]
    if summarize_results:
      print(sweep_results.summarize(sweep_dir, out_dir, taus, _PONDER_METRIC.value))
      print(f"written to {out_dir}: networks.csv, by_difficulty.csv, error_vs_tau.png, "
            "ponder_vs_tau.png, by_difficulty.png")
    if _PUBLISHED.value:
      print(published.compare(sweep_dir, _PUBLISHED.value, out_dir))
      print(f"written to {out_dir}: published_comparison.csv, published_curves.png")
  except (ValueError, OSError) as e:
    raise app.UsageError(str(e)) from e
  solve_table = steps_to_solve.summarize(sweep_dir, out_dir)
  if solve_table:
    print(solve_table)
    print(f"written to {out_dir}: steps_to_solve.csv, learning_curves.png")


if __name__ == "__main__":
  app.run(main)
