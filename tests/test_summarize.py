"""The sweep summary: aggregation on hand-made numbers, both results formats, CSVs and plots."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from launch import published, steps_to_solve, sweep_results
from sweep_runs import REPO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("error_vs_tau.png", "ponder_vs_tau.png", "by_difficulty.png")


def _row(tau, error, mode="act", steps=2.0, ponder=2.5, clip=0.0):
  return {"trial": f"t{tau}", "task": "parity", "mode": mode, "grad_clip_norm": clip, "tau": tau,
          "seed": 0, "step": 10, "sequence_error": error, "mean_steps": steps,
          "mean_ponder": ponder}


def _network(seed, tau, error, steps, by_difficulty):
  return {"seed": seed, "tau": tau, "sequence_error": error, "mean_steps": steps,
          "mean_ponder": steps + 0.5, "by_difficulty": by_difficulty}


def _difficulty(count, error, steps):
  return {"count": count, "sequence_error": error, "mean_steps": steps, "mean_ponder": steps + 0.5}


def _results(tau, mode="act", networks=None, error=0.5, steps=1.0):
  """A results.json; with ``networks`` in the format of runs with num_networks."""
  results = {"task": "parity", "step": 100, "tau": tau, "act": mode == "act", "mode": mode,
             "difficulty": "non-zero bits", "sequence_error": error, "mean_steps": steps,
             "mean_ponder": steps, "by_difficulty": {"1": _difficulty(5, error, steps),
                                                     "2": _difficulty(5, error, steps)}}
  if networks is not None:
    results["networks"] = networks
  return results


def test_mean_and_standard_error_on_hand_made_numbers():
  stats = sweep_results.mean_and_standard_error([1.0, 2.0, 3.0, 4.0])
  assert stats.n == 4 and stats.mean == 2.5
  assert stats.standard_error == pytest.approx(math.sqrt(5 / 3) / 2)  # std(ddof=1) / sqrt(n)
  single = sweep_results.mean_and_standard_error([0.25])
  assert single.n == 1 and single.mean == 0.25 and math.isnan(single.standard_error)
  with pytest.raises(ValueError, match="no values"):
    sweep_results.mean_and_standard_error([])


def test_network_rows_read_both_results_formats():
  rows, difficulty_rows = sweep_results.network_rows("tau=0.01", _results(0.01, error=0.25),
                                                 {"seed": 7})
  assert rows == [{"trial": "tau=0.01", "task": "parity", "mode": "act", "grad_clip_norm": 0.0,
                   "tau": 0.01, "seed": 7, "step": 100, "sequence_error": 0.25, "mean_steps": 1.0,
                   "mean_ponder": 1.0}]
  assert [(r["difficulty"], r["count"], r["seed"]) for r in difficulty_rows] == [
      (1, 5, 7), (2, 5, 7)]
  networks = [_network(3, 0.001, 0.1, 4.0, {"10": _difficulty(2, 0.5, 6.0),
                                            "9": _difficulty(3, 0.0, 5.0)}),
              _network(4, 0.002, 0.3, 3.0, {"9": _difficulty(4, 1.0, 2.0)})]
  rows, difficulty_rows = sweep_results.network_rows("grouped", _results(0.001, networks=networks),
                                                 {"seed": 3})
  assert [(r["seed"], r["tau"], r["sequence_error"], r["mean_steps"], r["mean_ponder"])
          for r in rows] == [(3, 0.001, 0.1, 4.0, 4.5), (4, 0.002, 0.3, 3.0, 3.5)]
  assert [(r["seed"], r["difficulty"], r["sequence_error"]) for r in difficulty_rows] == [
      (3, 9, 0.0), (3, 10, 0.5), (4, 9, 1.0)]
  # PonderNet has no tau: each prior is a mode of its own, kept out of the per-tau statistics.
  network = {k: v for k, v in _network(0, None, 0.1, 5.0, {}).items() if k != "tau"}
  pondernet = {**{k: v for k, v in _results(None, networks=[network]).items() if k != "tau"},
               "halting": "pondernet", "lambda_p": 0.2}
  rows, _ = sweep_results.network_rows("pondernet", pondernet, {"seed": 0})
  assert [(r["mode"], r["tau"]) for r in rows] == [("pondernet lambda_p=0.2", None)]
  assert sweep_results.by_tau(rows, "sequence_error") == {}
  assert list(sweep_results.references(rows, "sequence_error")) == ["pondernet lambda_p=0.2"]


def test_grouping_by_tau_and_mode_on_hand_made_rows():
  rows = [_row(0.001, 0.1), _row(0.001, 0.3), _row(0.01, 0.5),
          _row(0.001, 0.4, mode="none"), _row(0.001, 0.6, mode="none")]
  points = sweep_results.by_tau(rows, "sequence_error")
  assert list(points) == [0.001, 0.01]
  assert points[0.001].n == 2 and points[0.001].mean == pytest.approx(0.2)
  assert points[0.001].standard_error == pytest.approx(0.1)
  assert points[0.01].n == 1 and math.isnan(points[0.01].standard_error)
  reference = sweep_results.references(rows, "sequence_error")
  assert list(reference) == ["none"] and reference["none"].mean == pytest.approx(0.5)
  table = sweep_results.summary_table(rows).splitlines()
  assert table[1].split() == ["0.001", "2", "0.2000", "+-", "0.1000", "2.00", "+-", "0.00",
                              "2.50", "+-", "0.00"]
  assert table[2].split() == ["0.01", "1", "0.5000", "2.00", "2.50"]
  assert table[3].split()[:5] == ["mode=none", "2", "0.5000", "+-", "0.1000"]


def test_clipped_networks_are_never_pooled_with_unclipped_ones():
  rows, _ = sweep_results.network_rows("clipped", _results(0.002, error=0.0),
                                       {"seed": 0, "grad_clip_norm": 1.0})
  assert rows[0]["grad_clip_norm"] == 1.0
  rows += [_row(0.002, 0.4), _row(0.002, 0.2), _row(None, 0.5, mode="none"),
           _row(None, 0.3, mode="none", clip=1.0)]
  assert sweep_results.act_clip_norms(rows) == [0.0, 1.0]
  assert sweep_results.by_tau(rows, "sequence_error")[0.002].mean == pytest.approx(0.3)
  clipped = sweep_results.by_tau(rows, "sequence_error", 1.0)[0.002]
  assert (clipped.n, clipped.mean) == (1, 0.0)
  assert {mode: stats.mean for mode, stats in sweep_results.references(
      rows, "sequence_error").items()} == {"none": 0.5, "none clip=1": 0.3}
  table = sweep_results.summary_table(rows).splitlines()
  assert [line.split()[:3] for line in table[1:]] == [
      ["0.002", "2", "0.3000"], ["0.002", "clip=1", "1"], ["mode=none", "1", "0.5000"],
      ["mode=none", "clip=1", "1"]]


def test_choosing_the_taus_of_the_difficulty_plot():
  taus = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2]
  assert sweep_results.spread_taus(taus, 4) == [1e-4, 5e-4, 2e-3, 1e-2]
  assert sweep_results.spread_taus([1e-2, 1e-3], 4) == [1e-3, 1e-2]
  assert sweep_results.match_taus([1e-3, 0.01], taus) == [1e-3, 1e-2]
  assert sweep_results.match_taus([0.1 * 0.01], [0.001]) == [0.001]  # 0.0010000000000000002
  with pytest.raises(ValueError, match="no ACT results for tau=0.3; the sweep has 0.001, 0.01"):
    sweep_results.match_taus([0.3], [0.01, 0.001])


def _write_trial(sweep_dir, trial, results, seed):
  os.makedirs(sweep_dir / trial)
  (sweep_dir / trial / "results.json").write_text(json.dumps(results))
  (sweep_dir / trial / "config.json").write_text(json.dumps({"seed": seed}))


def _read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == PNG_SIGNATURE and os.path.getsize(path) > 5000


def test_cli_on_results_with_networks_lists_and_a_baseline(tmp_path):
  sweep_dir, out_dir = tmp_path / "sweep", tmp_path / "out"
  for tau, errors in ((0.001, (0.0, 0.1, 0.2, 0.3)), (0.01, (0.4, 0.4, 0.5, 0.5))):
    networks = [_network(seed, tau, error, 3.0 + seed, {"1": _difficulty(4, error, 2.0),
                                                        "2": _difficulty(4, error, 4.0)})
                for seed, error in enumerate(errors)]
    _write_trial(sweep_dir, f"tau={tau}", _results(tau, networks=networks), seed=0)
  _write_trial(sweep_dir, "mode=none", _results(0.001, mode="none", error=0.45), seed=0)
  result = subprocess.run(
      [sys.executable, "-m", "launch.summarize", f"--sweep_dir={sweep_dir}",
       f"--out_dir={out_dir}", "--difficulty_taus=1e-2"], cwd=REPO, capture_output=True,
      text=True)
  assert result.returncode == 0, result.stderr
  table = result.stdout.splitlines()
  # errors 0, .1, .2, .3: mean .15, s.e. std(ddof=1)/2 = .0645; N = 3, 4, 5, 6: 4.5 +- .65
  assert table[1].split() == ["0.001", "4", "0.1500", "+-", "0.0645", "4.50", "+-", "0.65",
                              "5.00", "+-", "0.65"]
  assert table[2].split()[:5] == ["0.01", "4", "0.4500", "+-", "0.0289"]
  assert table[3].split() == ["mode=none", "1", "0.4500", "1.00", "1.00"]
  networks = _read_csv(out_dir / "networks.csv")
  assert list(networks[0]) == list(sweep_results.NETWORK_COLUMNS)
  assert len(networks) == 9
  assert [(r["trial"], r["seed"], r["sequence_error"]) for r in networks[:2]] == [
      ("mode=none", "0", "0.45"), ("tau=0.001", "0", "0.0")]
  difficulty = _read_csv(out_dir / "by_difficulty.csv")
  assert len(difficulty) == 18 and list(difficulty[0]) == list(sweep_results.DIFFICULTY_COLUMNS)
  assert all(_is_png(out_dir / name) for name in PLOTS)
  assert not (sweep_dir / "networks.csv").exists()


def test_an_unknown_difficulty_tau_or_an_empty_dir_is_an_error(tmp_path):
  _write_trial(tmp_path / "sweep", "tau=0.01", _results(0.01), seed=0)
  with pytest.raises(ValueError, match="no ACT results for tau=0.5"):
    sweep_results.summarize(str(tmp_path / "sweep"), str(tmp_path / "out"), [0.5], "mean_steps")
  with pytest.raises(ValueError, match="no \\*/results.json under"):
    sweep_results.summarize(str(tmp_path / "out"), str(tmp_path / "out"), [], "mean_steps")


def test_summarize_the_real_tiny_sweep(tiny_sweep, tmp_path):
  table = sweep_results.summarize(tiny_sweep.sweep_dir, str(tmp_path), [], "mean_ponder")
  networks = _read_csv(tmp_path / "networks.csv")
  assert sorted((r["trial"], r["tau"], r["seed"], r["step"]) for r in networks) == [
      ("seed=0-tau=0.001", "0.001", "0", "20"), ("seed=0-tau=0.01", "0.01", "0", "20"),
      ("seed=1-tau=0.01", "0.01", "1", "20")]
  for row in networks:
    results = json.load(open(os.path.join(tiny_sweep.sweep_dir, row["trial"], "results.json")))
    assert float(row["sequence_error"]) == results["sequence_error"]
  assert [line.split()[:2] for line in table.splitlines()[1:]] == [["0.001", "1"], ["0.01", "2"]]
  difficulty = _read_csv(tmp_path / "by_difficulty.csv")
  assert sum(int(r["count"]) for r in difficulty) == 3 * 64  # 2 eval batches of 32 per run
  assert all(_is_png(tmp_path / name) for name in PLOTS)


def _solved_trial(sweep_dir, trial, mode, tau, seed, solved_step, repeats=1, ponder=2.0):
  # Without ACT the loop reports rho = N = the updates per input (no remainder).
  steps = 1.0 if mode == "act" else float(repeats)
  network = {**_network(seed, tau, 0.01 if solved_step else 0.4, steps, {}),
             "mean_ponder": ponder if mode == "act" else steps, "solved_step": solved_step}
  results = {**_results(tau, mode=mode, networks=[network]), "solved_step": solved_step,
             "step": solved_step or 400_000}
  os.makedirs(sweep_dir / trial)
  (sweep_dir / trial / "results.json").write_text(json.dumps(results))
  (sweep_dir / trial / "config.json").write_text(json.dumps({"seed": seed, "repeats": repeats}))
  evals = [{"step": s, "split": "eval", "sequence_error": 0.5 / s} for s in (1000, 2000, 3000)]
  (sweep_dir / trial / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))


def _pondernet_solved_trial(sweep_dir, lambda_p, seed, solved_step, expected, sampled):
  """A PonderNet trial: no tau, its prior, and the steps of its sampled-step evaluation."""
  _solved_trial(sweep_dir, f"halting=pondernet-lambda_p={lambda_p}-seed={seed}", "act", None,
                seed, solved_step)
  results = json.loads((sweep_dir / f"halting=pondernet-lambda_p={lambda_p}-seed={seed}" /
                        "results.json").read_text())
  results.pop("tau")
  results.update(halting="pondernet", lambda_p=lambda_p)
  results["networks"] = [{**{k: v for k, v in network.items() if k != "tau"},
                          "mean_steps": 20.0, "expected_steps": expected,
                          "mean_sampled_steps": sampled} for network in results["networks"]]
  (sweep_dir / f"halting=pondernet-lambda_p={lambda_p}-seed={seed}" / "results.json").write_text(
      json.dumps(results))


def test_steps_to_solve_per_model_over_seeds(tmp_path):
  sweep = tmp_path / "sweep"
  for seed, step in enumerate((30_000, 10_000, None)):
    _solved_trial(sweep, f"seed={seed}-tau=0.01", "act", 0.01, seed, step, ponder=2.8 + seed / 10)
  _solved_trial(sweep, "seed=0-tau=0.1", "act", 0.1, 0, None)
  for repeats, step in ((3, 20_000), (8, 40_000)):
    _solved_trial(sweep, f"mode=repeat-repeats={repeats}-seed=0", "repeat", 0.001, 0, step,
                  repeats=repeats)
  _solved_trial(sweep, "mode=none-seed=0", "none", 0.001, 0, None)
  # PonderNet: repetitions from its expected steps, steps per input from its sampled steps.
  _pondernet_solved_trial(sweep, 0.5, 0, 50_000, expected=3.5, sampled=3.25)
  _pondernet_solved_trial(sweep, 0.5, 1, 70_000, expected=4.5, sampled=4.75)
  _pondernet_solved_trial(sweep, 0.2, 0, None, expected=7.0, sampled=7.5)
  _write_trial(sweep, "no_solved_at", _results(0.01), seed=0)  # a run without solved_at: left out
  rows = steps_to_solve.table(steps_to_solve.trial_rows(str(sweep)))
  assert [(r["model"], r["n"], r["solved"], r["median"], r["low"], r["high"]) for r in rows] == [
      ("no ACT", 1, 0, None, None, None), ("ACT tau=0.1", 1, 0, None, None, None),
      ("ACT tau=0.01", 3, 2, 20_000.0, 10_000, 30_000),
      ("Repeat-RNN x3", 1, 1, 20_000.0, 20_000, 20_000),
      ("Repeat-RNN x8", 1, 1, 40_000.0, 40_000, 40_000),
      ("PonderNet lambda_p=0.2", 1, 0, None, None, None),
      ("PonderNet lambda_p=0.5", 2, 2, 60_000.0, 50_000, 70_000)]
  assert [r["repetitions"] for r in rows] == pytest.approx([1.0, 1.0, 1.9, 3.0, 8.0, 6.0, 3.0])
  assert [r["steps_per_input"] for r in rows] == pytest.approx([1.0, 1.0, 1.0, 3.0, 8.0, 7.5, 4.0])
  text = steps_to_solve.summarize(str(sweep), str(tmp_path / "out")).splitlines()
  assert text[3].split() == ["ACT", "tau=0.01", "2/3", "20k", "(10k-30k)", "1.90", "1.00"]
  assert text[1].split() == ["no", "ACT", "0/1", "-", "(none", "in", "400k)", "1.00", "1.00"]
  assert text[7].split() == ["PonderNet", "lambda_p=0.5", "2/2", "60k", "(50k-70k)", "3.00", "4.00"]
  # The same model with its gradient clipped is a model of its own, after the unclipped one.
  assert steps_to_solve.model_of(_results(0.01), {"grad_clip_norm": 1.0}) == (
      "ACT tau=0.01 clip=1", (1, -0.01, 1.0))
  assert steps_to_solve.model_of(_results(0.01), {})[1] < (1, -0.01, 1.0)
  csv_rows = _read_csv(tmp_path / "out" / "steps_to_solve.csv")
  assert list(csv_rows[0]) == list(steps_to_solve.COLUMNS) and len(csv_rows) == 10
  assert _is_png(tmp_path / "out" / "learning_curves.png")
  assert steps_to_solve.summarize(str(tmp_path / "out"), str(tmp_path / "out")) is None


def _training_trial(sweep_dir, trial, config, errors_by_step, finished):
  """A trial's config.json and eval rows; ``errors_by_step`` values are lists for K networks."""
  os.makedirs(sweep_dir / trial)
  (sweep_dir / trial / "config.json").write_text(json.dumps(config))
  rows = [{"step": 500, "split": "train", "sequence_error": 0.99}]
  for step, errors in errors_by_step.items():
    row = {"step": step, "split": "eval", "sequence_error": sum(errors) / len(errors)}
    if len(errors) > 1:
      row.update({f"sequence_error/{i}": e for i, e in enumerate(errors)})
    rows.append(row)
  (sweep_dir / trial / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  if finished:
    (sweep_dir / trial / "results.json").write_text(json.dumps(
        _results(config["tau"], mode=config["mode"], error=errors[0])))


def test_published_log_side_by_side_with_finished_and_training_trials(tmp_path):
  sweep, out = tmp_path / "sweep", tmp_path / "out"
  act = {"mode": "act", "tau": 0.001}
  _training_trial(sweep, "mode=act-seed=0", act, {1000: [0.5], 2000: [0.25]}, finished=True)
  _training_trial(sweep, "mode=act-seed=1", act, {1000: [0.7]}, finished=False)  # still training
  _training_trial(sweep, "mode=none", {"mode": "none", "tau": 0.001, "num_networks": 2},
                  {1000: [0.8, 0.9], 2000: [0.6, 0.7]}, finished=True)
  reference = tmp_path / "theirs.csv"
  reference.write_text("model,step,sequence_error\nACT tau=0.001,1000,0.4\nACT tau=0.001,2000,0.2\n"
                       "no ACT,2000,0.65\nACT tau=0.01,1000,0.3\n")
  result = subprocess.run(
      [sys.executable, "-m", "launch.summarize", f"--sweep_dir={sweep}", f"--out_dir={out}",
       f"--published={reference}"], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["model", "step", "published"])
  assert [line.split() for line in lines[start + 1:start + 5]] == [
      ["ACT", "tau=0.001", "1k", "40.0%", "60.0", "(50.0-70.0),", "2"],  # both seeds reached 1k
      ["ACT", "tau=0.001", "2k", "20.0%", "25.0", "(25.0-25.0),", "1"],
      ["no", "ACT", "2k", "65.0%", "65.0", "(60.0-70.0),", "2"],  # two networks of one trial
      ["ACT", "tau=0.01", "1k", "30.0%", "-"]]  # a model the sweep does not have
  rows = _read_csv(out / "published_comparison.csv")
  assert [(r["model"], r["step"], r["n"], r["median"]) for r in rows][:2] == [
      ("ACT tau=0.001", "1000", "2", "0.6"), ("ACT tau=0.001", "2000", "1", "0.25")]
  assert _is_png(out / "published_curves.png")


def test_a_bad_published_log_is_named(tmp_path):
  bad = tmp_path / "bad.csv"
  bad.write_text("model,step\nno ACT,1000\n")
  with pytest.raises(ValueError, match=r"bad.csv: missing columns \['sequence_error'\]"):
    published.read_reference(str(bad))
  bad.write_text("model,step,sequence_error\nno ACT,1k,0.5\n")
  with pytest.raises(ValueError, match="bad.csv line 2: invalid literal for int"):
    published.read_reference(str(bad))
