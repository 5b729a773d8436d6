"""A text sweep's halting dynamics: labels, rows, table, CSV and the CLI on hand-made trials."""

import csv
import json
import os
import subprocess
import sys

import pytest

from launch import text_dynamics
from sweep_runs import REPO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The trials, in the table's order (no ACT, then learning rate, bias, tau, deviations).
ORDER = ["no_act", "collapse", "runaway", "clip", "settled_m10", "lr3e-4"]


def _write_trial(sweep_dir, name, mode="act", lr=1e-4, bias=1.0, tau=1e-2, cap=100, clip=0.0,
                 train=(), evals=(), finished=True, f1=None, analysis_beside=False):
  """A trial dir; ``train``: (step, N) rows, ``evals``: (step, bpc) rows."""
  trial_dir = sweep_dir / name
  trial_dir.mkdir(parents=True)
  config = {"mode": mode, "tau": tau, "learning_rate": lr, "halting_bias": bias,
            "max_steps": cap, "grad_clip_norm": clip, "task_options": {"window": 100}}
  (trial_dir / "config.json").write_text(json.dumps(config))
  rows = [{"step": s, "split": "train", "mean_steps": n, "mean_ponder": n + 0.5,
           "bits_per_character": 5.0} for s, n in train]
  rows += [{"step": s, "split": "eval", "bits_per_character": bpc, "mean_steps": 1.0}
           for s, bpc in evals]
  if train or evals:
    (trial_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  if finished:
    (trial_dir / "results.json").write_text(json.dumps({"step": train[-1][0]}))
  if f1:  # where analyze_ponder writes it, or beside the other files as in docs/runs/
    analysis_dir = trial_dir if analysis_beside else trial_dir / "analysis"
    analysis_dir.mkdir(exist_ok=True)
    (analysis_dir / "analysis.json").write_text(json.dumps(
        {text_dynamics.BOUNDARY_TABLE: {k: {"f1": v, "precision": 0.0} for k, v in f1.items()}}))


def _write_sweep(sweep_dir):
  _write_trial(sweep_dir, "no_act", mode="none", train=[(50, 1.0), (300, 1.0)],
               evals=[(100, 4.0), (200, 3.5), (300, 3.0)])
  # N reaches M / 2 = 50 at step 150 (49.99 before it), then comes down: still a runaway.
  _write_trial(sweep_dir, "runaway", tau=1e-3, train=[(50, 1.5), (100, 49.99), (150, 50.0),
                                                      (200, 90.0), (250, 1.0)],
               evals=[(200, 3.85)], finished=False)
  # At most 1.02 from step 200 on (1.01 at 100 is followed by 1.5): collapsed at 200.
  _write_trial(sweep_dir, "collapse", bias=-1.0, train=[(50, 3.0), (100, 1.01), (150, 1.5),
                                                        (200, 1.02), (250, 1.0)],
               evals=[(100, 4.4), (250, 3.15)])
  # M = 10: N = 4.9 stays under 5; evaluated before the no-ACT trial's first evaluation.
  _write_trial(sweep_dir, "settled_m10", cap=10, train=[(50, 2.0), (100, 4.9), (150, 2.344)],
               evals=[(50, 4.5)], f1={"ponder": 0.25, "loss": 0.5, "entropy": 0.75})
  _write_trial(sweep_dir, "clip", clip=1.0, train=[(50, 2.0), (100, 1.03)], evals=[(100, 4.2)],
               f1={"ponder": 0.125, "loss": 0.375, "entropy": 0.625}, analysis_beside=True)
  _write_trial(sweep_dir, "lr3e-4", lr=3e-4, train=[(50, 2.0)], evals=[(50, 4.0)])
  _write_trial(sweep_dir, "no_metrics", train=(), finished=False)


def _columns(rows, *names):
  return {r["trial"]: tuple(r[n] for n in names) for r in rows}


def test_dynamics_labels_at_their_thresholds():
  assert text_dynamics.dynamics([10, 20, 30], [2.0, 50.0, 1.0], 100) == "ran away at 20"
  assert text_dynamics.dynamics([10, 20], [4.5, 4.99], 10) == "settled at N 4.99"
  assert text_dynamics.dynamics([10, 20, 30], [3.0, 2.0, 2.99], 100) == "settled at N 2.99"
  assert text_dynamics.dynamics([10, 20, 30], [3.0, 2.0, 3.0], 100) == (
      "rising: N 3.00 at 30, from 2.00 at 20")
  assert text_dynamics.dynamics([10, 20, 30, 40], [3.0, 2.0, 3.5, 3.1], 100) == "settled at N 3.10"
  assert text_dynamics.dynamics([10, 20], [2.0, 4.99], 10) == "rising: N 4.99 at 20, from 2.00 at 10"
  assert text_dynamics.dynamics([10, 20], [2.0, 5.0], 10) == "ran away at 20"
  assert text_dynamics.dynamics([10, 20, 30, 40], [1.0, 1.5, 1.02, 1.0], 100) == "collapsed at 30"
  assert text_dynamics.dynamics([10, 20], [1.0, 1.01], 100) == "collapsed at 10"
  assert text_dynamics.dynamics([10, 20], [1.0, 1.0201], 100) == "settled at N 1.02"


def test_rows_of_a_hand_made_sweep(tmp_path):
  _write_sweep(tmp_path)
  trials = text_dynamics.load_sweep(str(tmp_path))
  assert sorted(t.name for t in trials) == sorted(ORDER)  # no_metrics is skipped
  rows = text_dynamics.sweep_rows(trials)
  assert [r["trial"] for r in rows] == ORDER
  assert _columns(rows, "dynamics", "updates", "finished") == {
      "no_act": (None, 300, True), "runaway": ("ran away at 150", 250, False),
      "collapse": ("collapsed at 200", 250, True), "settled_m10": ("settled at N 2.34", 150, True),
      "clip": ("settled at N 1.03", 100, True), "lr3e-4": ("settled at N 2.00", 50, True)}
  assert _columns(rows, "first_n", "max_n", "max_n_step", "final_n")["runaway"] == (
      1.5, 90.0, 200, 1.0)
  assert _columns(rows, "first_n", "max_n", "max_n_step", "final_n")["settled_m10"] == (
      2.0, 4.9, 100, 2.344)
  # The no-ACT bpc at the trial's last evaluation step, or the nearest earlier one.
  references = _columns(rows, "bpc", "eval_step", "no_act_bpc", "no_act_eval_step")
  assert references == {
      "no_act": (3.0, 300, None, None), "runaway": (3.85, 200, 3.5, 200),
      "collapse": (3.15, 250, 3.5, 200), "settled_m10": (4.5, 50, None, None),
      "clip": (4.2, 100, 4.0, 100), "lr3e-4": (4.0, 50, None, None)}
  percent = _columns(rows, "vs_no_act_pct")
  assert percent["runaway"][0] == pytest.approx(100 * (3.85 - 3.5) / 3.5)
  assert percent["collapse"][0] == pytest.approx(-10.0)
  assert percent["clip"][0] == pytest.approx(5.0)
  assert percent["settled_m10"] == percent["lr3e-4"] == percent["no_act"] == (None,)
  assert _columns(rows, "f1_ponder", "f1_loss", "f1_entropy")["settled_m10"] == (0.25, 0.5, 0.75)
  assert _columns(rows, "f1_ponder")["runaway"] == (None,)
  assert _columns(rows, "f1_ponder", "f1_loss", "f1_entropy")["clip"] == (0.125, 0.375, 0.625)
  assert _columns(rows, "halting_bias", "tau", "max_steps", "grad_clip_norm") == {
      "no_act": (None, None, None, 0.0), "runaway": (1.0, 1e-3, 100, 0.0),
      "collapse": (-1.0, 1e-2, 100, 0.0), "settled_m10": (1.0, 1e-2, 10, 0.0),
      "clip": (1.0, 1e-2, 100, 1.0), "lr3e-4": (1.0, 1e-2, 100, 0.0)}


def test_cli_prints_the_table_and_writes_the_csv_and_plot(tmp_path):
  sweep_dir, out_dir = tmp_path / "sweep", tmp_path / "out"
  _write_sweep(sweep_dir)
  result = subprocess.run([sys.executable, "-m", "launch.text_dynamics",
                           f"--sweep_dir={sweep_dir}", f"--out_dir={out_dir}"], cwd=REPO,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == "| " + " | ".join(text_dynamics.COLUMNS) + " |"
  table = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:2 + len(ORDER)]]
  assert [row[0] for row in table] == ORDER
  assert all(len(row) == len(text_dynamics.COLUMNS) for row in table)
  cells = {row[0]: row for row in table}
  runaway = dict(zip(text_dynamics.COLUMNS, cells["runaway"]))
  assert (runaway["bpc"], runaway["no_act_bpc"], runaway["vs_no_act_pct"], runaway["finished"],
          runaway["dynamics"], runaway["f1_ponder"]) == ("3.85", "3.5", "+10.0", "no",
                                                         "ran away at 150", "")
  assert dict(zip(text_dynamics.COLUMNS, cells["no_act"]))["tau"] == ""
  with open(out_dir / "dynamics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == list(text_dynamics.COLUMNS) and [r["trial"] for r in rows] == ORDER
  assert float(rows[2]["vs_no_act_pct"]) == pytest.approx(10.0)
  assert rows[4]["f1_entropy"] == "0.75" and rows[4]["max_steps"] == "10"
  with open(out_dir / "ponder_over_training.png", "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
  assert os.path.getsize(out_dir / "ponder_over_training.png") > 5000
  assert not (sweep_dir / "dynamics.csv").exists()
  empty = subprocess.run([sys.executable, "-m", "launch.text_dynamics",
                          f"--sweep_dir={tmp_path / 'none'}"], cwd=REPO, capture_output=True,
                         text=True)
  assert empty.returncode != 0 and "no */metrics.jsonl under" in empty.stderr
