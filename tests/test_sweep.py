"""Sweeps: trial expansion and ids, override flags, dry runs and real runs of tiny sweeps."""

import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
from absl import flags
from ml_collections import config_flags

from launch import trials
from launch.sweeps import grids, pondernet_parity16, pondernet_parity32, pondernet_parity64
from sweep_runs import REPO, read_manifest, run_sweep

TINY_IDS = ["seed=0-tau=0.01", "seed=0-tau=0.001", "seed=1-tau=0.01"]


def test_ids_are_readable_and_do_not_depend_on_order_or_other_trials():
  assert trials.readable_id({"tau": 0.001, "seed": 3}) == "seed=3-tau=0.001"
  assert trials.readable_id({"seed": 3, "tau": 0.001}) == "seed=3-tau=0.001"
  assert trials.readable_id({"task_options.num_bits": 8, "plot": False,
                            "taus": (0.1, 1e-05)}) == (
                                "plot=False-task_options.num_bits=8-taus=0.1_1e-05")
  assert trials.readable_id({}) == "base"
  assert trials.readable_id({"cell": "a b/c"}) == "cell=a_b_c"
  overrides = [{"tau": 0.01}, {"tau": 0.001}]
  assert trials.trial_ids(overrides) == ["tau=0.01", "tau=0.001"]
  assert trials.trial_ids(overrides + [{"tau": 0.1}])[:2] == ["tau=0.01", "tau=0.001"]


def test_ids_get_a_hash_when_shared_or_too_long():
  clashing = [{"cell": "a/b"}, {"cell": "a_b"}, {"tau": 0.5}]
  ids = trials.trial_ids(clashing)
  assert len(set(ids)) == 3 and ids[2] == "tau=0.5"
  assert all(re.fullmatch(r"cell=a_b-[0-9a-f]{8}", i) for i in ids[:2])
  assert trials.trial_ids(clashing) == ids  # the hash is of the overrides: stable
  long = {"taus": tuple(grids.SYNTHETIC_TAUS)}
  (long_id,) = trials.trial_ids([long])
  assert len(long_id) == trials.MAX_ID_LENGTH and long_id.startswith("taus=0.0001_0.0002")
  assert trials.trial_ids([{"taus": tuple(grids.SYNTHETIC_TAUS[1:])}])[0] != long_id


def test_expand_adds_common_overrides_outside_the_ids_and_rejects_bad_sweeps():
  expanded = trials.expand([{"tau": 0.01}, {"mode": "none"}], {"num_networks": 4})
  assert [t.id for t in expanded] == ["tau=0.01", "mode=none"]
  assert [t.index for t in expanded] == [0, 1]
  assert expanded[0].overrides == {"num_networks": 4, "tau": 0.01}
  with pytest.raises(ValueError, match="trials 0 and 2 have the same overrides"):
    trials.expand([{"tau": 0.1, "seed": 1}, {"tau": 0.2}, {"seed": 1, "tau": 0.1}], {})
  with pytest.raises(ValueError, match="overrides \\['tau'\\], which COMMON sets too"):
    trials.expand([{"tau": 0.1}], {"tau": 0.2})
  with pytest.raises(ValueError, match="'task options' is not a config field"):
    trials.expand([{"task options": 1}], {})
  with pytest.raises(ValueError, match="taus=\\[0.1\\]: values must be.*got list"):
    trials.expand([{"taus": [0.1]}], {})


def _parse_config_flags(config_file: str, args: list[str]):
  """The config that ``--config=config_file ARGS`` gives, parsed as launch.train parses it."""
  argv = ["prog", f"--config={config_file}", *args]
  flag_values = flags.FlagValues()
  config = config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
  flag_values(argv)
  return config.value


def test_override_flags_round_trip_through_config_flags(tmp_path):
  config_file = tmp_path / "config.py"
  config_file.write_text(
      "import ml_collections\n\n"
      "def get_config():\n"
      "  return ml_collections.ConfigDict({'tau': 1e-3, 'seed': 0, 'plot': True, 'cell': 'x',\n"
      "      'taus': (), 'task_options': {'num_bits': 64, 'layout': 'random'}})\n")
  overrides = {"tau": 0.1 + 0.2, "seed": 7, "plot": False, "cell": "lstm",
               "taus": (1e-05, 0.0003, 1.0), "task_options.num_bits": 16,
               "task_options.layout": "first_k"}
  config = _parse_config_flags(str(config_file), trials.override_args(overrides))
  assert config.tau == 0.1 + 0.2  # exactly: floats go by repr
  assert config.seed == 7 and config.plot is False and config.cell == "lstm"
  assert config.taus == (1e-05, 0.0003, 1.0)
  assert config.task_options.num_bits == 16 and config.task_options.layout == "first_k"
  single = _parse_config_flags(str(config_file), trials.override_args({"taus": (0.5,)}))
  assert single.taus == (0.5,)


def test_the_paper_grids_have_37_taus_and_20_networks_per_tau():
  assert len(grids.SYNTHETIC_TAUS) == 37 and len(grids.LANGUAGE_MODEL_TAUS) == 28
  assert grids.SYNTHETIC_TAUS[0] == 1e-4 and grids.SYNTHETIC_TAUS[-1] == 1.0
  assert {0.0003, 0.009, 0.006, 0.001} <= set(grids.SYNTHETIC_TAUS)  # values in captions
  for task in ("parity", "logic", "addition", "sort"):
    loaded = trials.load_sweep(f"launch/sweeps/{task}.py")
    assert loaded.config == f"tasks/configs/{task}.py:paper"
    taus = [t.overrides["tau"] for t in loaded.trials if "tau" in t.overrides]
    assert taus == grids.SYNTHETIC_TAUS
    assert all(any(math.isclose(tau, i * 10.0**-j) for i in range(1, 11) for j in range(1, 5))
               for tau in taus)
    assert all(t.overrides["num_networks"] == 20 for t in loaded.trials)
    assert [t.overrides for t in loaded.trials if "tau" not in t.overrides] == [
        {"num_networks": 20, "mode": "none"}]
    assert "tau=0.0003" in [t.id for t in loaded.trials]


def test_fojo_parity_sweep_has_their_table_with_three_seeds():
  loaded = trials.load_sweep("launch/sweeps/fojo_parity.py")
  assert loaded.config == "tasks/configs/parity.py:first_k"
  assert len(loaded.trials) == 27 and len({t.id for t in loaded.trials}) == 27
  models = {(t.overrides.get("mode", "act"), t.overrides.get("tau"), t.overrides.get("repeats"))
            for t in loaded.trials}
  assert models == {("act", 0.1, None), ("act", 0.01, None), ("act", 0.005, None),
                    ("act", 0.001, None), ("repeat", None, 2), ("repeat", None, 3),
                    ("repeat", None, 5), ("repeat", None, 8), ("none", None, None)}
  assert sorted({t.overrides["seed"] for t in loaded.trials}) == [0, 1, 2]
  assert all(t.overrides["num_steps"] == 400_000 and t.overrides["solved_at"] == 0.02
             and t.overrides["solved_evals"] == 3 for t in loaded.trials)
  assert [t.overrides["seed"] for t in loaded.trials[:8]] == [0] * 8  # seed by seed
  assert [t.overrides.get("tau") for t in loaded.trials[-3:]] == [1e-3] * 3  # the slow ones last


def test_parity_random_sweep_is_the_papers_setting_trained_long():
  loaded = trials.load_sweep("launch/sweeps/parity_random.py")
  assert loaded.config == "tasks/configs/parity.py:paper"
  assert [t.overrides["tau"] for t in loaded.trials] == [1e-3, 1e-2]
  assert all(t.overrides["num_steps"] == 2_000_000 for t in loaded.trials)


def test_pondernet_sweep_is_both_rules_in_pondernets_setting_on_one_budget():
  loaded = trials.load_sweep("launch/sweeps/pondernet_parity64.py")
  assert loaded.config == "tasks/configs/parity.py:pondernet"
  rules = [(t.overrides.get("halting", "act"), t.overrides.get("lambda_p"), t.overrides.get("tau"))
           for t in loaded.trials]
  assert rules == [("pondernet", 0.1, None), ("pondernet", 0.2, None), ("pondernet", 0.5, None),
                   ("act", None, 2e-4), ("act", None, 2e-3), ("act", None, 2e-2)]
  assert {(t.overrides["num_steps"], t.overrides["num_networks"]) for t in loaded.trials} == {
      (1_000_000, 3)}
  for trial in loaded.trials:  # every override is a field of the config, parsed as launch.train does
    config = _parse_config_flags(loaded.config, trials.override_args(trial.overrides))
    assert {field: config[field] for field in trial.overrides} == trial.overrides
    assert (config.learning_rate, config.max_steps, config.task_options.num_bits) == (3e-4, 20, 64)


def test_pondernet_16_bit_sweep_is_the_64_bit_grid_over_three_seeds_stopping_when_solved():
  loaded = trials.load_sweep("launch/sweeps/pondernet_parity16.py")
  assert loaded.config == trials.load_sweep("launch/sweeps/pondernet_parity64.py").config
  models = pondernet_parity64.get_sweep()
  assert pondernet_parity16.get_sweep() == [  # seed by seed, the 64-bit grid's models
      {**model, "seed": seed} for seed in (0, 1, 2) for model in models] + [
          {**model, "seed": seed, "grad_clip_norm": 1.0} for seed in (0, 1, 2) for model in models]
  for trial in loaded.trials:
    config = _parse_config_flags(loaded.config, trials.override_args(trial.overrides))
    assert (config.task_options.num_bits, config.learning_rate, config.max_steps,
            config.num_steps, config.solved_at, config.solved_evals) == (
                16, 3e-4, 20, 150_000, 0.02, 3)


def test_pondernet_32_bit_sweep_is_seed_0_of_the_grid_then_one_clipped_model_per_rule():
  loaded = trials.load_sweep("launch/sweeps/pondernet_parity32.py")
  models = [{**model, "seed": 0} for model in pondernet_parity64.get_sweep()]
  assert pondernet_parity32.get_sweep() == models + [
      {**models[1], "grad_clip_norm": 1.0}, {**models[4], "grad_clip_norm": 1.0}]
  assert (models[1]["lambda_p"], models[4]["tau"]) == (0.2, 2e-3)
  for trial in loaded.trials:
    config = _parse_config_flags(loaded.config, trials.override_args(trial.overrides))
    assert (config.task_options.num_bits, config.num_steps, config.solved_at) == (
        32, 300_000, 0.02)


def test_text_sweep_is_the_papers_learning_rate_at_equal_steps():
  loaded = trials.load_sweep("launch/sweeps/text_paper_lr.py")
  assert loaded.config == "tasks/configs/text.py"
  assert [(t.overrides.get("mode", "act"), t.overrides.get("tau")) for t in loaded.trials] == [
      ("act", 1e-3), ("act", 6e-3), ("none", None)]
  assert {(t.overrides["learning_rate"], t.overrides["num_steps"]) for t in loaded.trials} == {
      (1e-4, 10_000)}


def test_text_halting_sweep_crosses_the_papers_knobs_then_the_deviations():
  loaded = trials.load_sweep("launch/sweeps/text_halting.py")
  assert loaded.config == "tasks/configs/text.py"
  act = [t.overrides for t in loaded.trials if t.overrides.get("mode", "act") == "act"]
  assert [(t.overrides["mode"], t.overrides["learning_rate"]) for t in loaded.trials[:2]] == [
      ("none", 1e-4), ("none", 3e-4)]
  taus = {1e-3, 6e-3, 1e-2, 3e-2, 1e-1}
  grid = {(o["learning_rate"], o["halting_bias"], o["tau"]) for o in act if len(o) == 7}
  assert grid == {(lr, bias, tau) for lr in (1e-4, 3e-4) for bias in (1.0, -1.0, -3.0)
                  for tau in taus}
  deviations = [o for o in act if len(o) == 8]  # one deviation each, at the paper's settings
  assert len(act) == 30 + len(deviations) and len(deviations) == 10
  assert {(o["learning_rate"], o["halting_bias"]) for o in deviations} == {(1e-4, 1.0)}
  assert {(o.get("grad_clip_norm"), o.get("max_steps"), o["tau"]) for o in deviations} == (
      {(1.0, None, tau) for tau in taus} | {(None, 10, tau) for tau in taus})
  assert len({t.id for t in loaded.trials}) == len(loaded.trials)
  assert all(t.overrides["num_steps"] == 2_000 for t in loaded.trials)
  for trial in loaded.trials:  # every override is a field of the config, parsed as launch.train does
    config = _parse_config_flags(loaded.config, trials.override_args(trial.overrides))
    assert {field: config[field] for field in trial.overrides} == trial.overrides


def test_text_halting_cpu_sweep_is_the_same_trials_on_100_byte_windows():
  full = trials.load_sweep("launch/sweeps/text_halting.py")
  cpu = trials.load_sweep("launch/sweeps/text_halting_cpu.py")
  assert cpu.config == full.config
  assert [t.id for t in cpu.trials] == [t.id for t in full.trials]
  for small, large in zip(cpu.trials, full.trials):
    assert small.overrides == {**large.overrides, "task_options.window": 100, "num_steps": 1_000,
                               "time_budget_minutes": 6.0, "checkpoint_every": 250}
  config = _parse_config_flags(cpu.config, trials.override_args(cpu.trials[0].overrides))
  assert config.task_options.window == 100 and config.time_budget_minutes == 6.0


@pytest.mark.parametrize("task", ["addition", "sort"])
def test_downsized_sweeps_are_act_and_no_act_with_two_seeds(task):
  loaded = trials.load_sweep(f"launch/sweeps/{task}_downsized.py")
  assert loaded.config == f"tasks/configs/{task}.py:downsized"
  assert [(t.overrides["mode"], t.overrides["seed"]) for t in loaded.trials] == [
      ("none", 0), ("none", 1), ("act", 0), ("act", 1)]
  assert all(t.overrides["hidden_size"] == 128 for t in loaded.trials)


def test_cpu_and_tiny_sweeps():
  cpu = trials.load_sweep("launch/sweeps/parity_cpu.py")
  assert cpu.config == "tasks/configs/parity.py:first_k"
  taus = [t.overrides["tau"] for t in cpu.trials if "tau" in t.overrides]
  assert len(taus) >= 8 and min(taus) == 1e-4 and max(taus) == 0.1
  assert set(taus) <= set(grids.SYNTHETIC_TAUS)
  assert all(t.overrides["num_networks"] == 4 for t in cpu.trials)
  tiny = trials.load_sweep("launch/sweeps/tiny.py", base_config="tasks/configs/logic.py:tiny")
  assert tiny.config == "tasks/configs/logic.py:tiny"
  assert [t.id for t in tiny.trials] == TINY_IDS
  with pytest.raises(ValueError, match="config file 'tasks/configs/chess.py' not found"):
    trials.load_sweep("launch/sweeps/tiny.py", base_config="tasks/configs/chess.py")


def test_dry_run_prints_the_exact_commands_and_runs_nothing(tmp_path):
  sweep_dir = tmp_path / "dry"
  result = run_sweep("--sweep=launch/sweeps/tiny.py", f"--sweep_dir={sweep_dir}", "--dry_run",
                     "--devices=cpu")
  assert result.returncode == 0, result.stderr
  commands = [line for line in result.stdout.splitlines() if not line.startswith("#")]
  loaded = trials.load_sweep("launch/sweeps/tiny.py")
  assert commands == ["JAX_PLATFORMS=cpu " + shlex.join(trials.train_command(loaded, t, sweep_dir))
                      for t in loaded.trials]
  assert shlex.split(commands[1])[1:] == [
      sys.executable, "-m", "launch.train", "--config=tasks/configs/parity.py:tiny",
      f"--workdir={sweep_dir}/seed=0-tau=0.001", "--config.tau=0.001", "--config.seed=0"]
  assert not sweep_dir.exists()
  grid = run_sweep("--sweep=launch/sweeps/parity.py", f"--sweep_dir={sweep_dir}", "--dry_run")
  grid_commands = [line for line in grid.stdout.splitlines() if not line.startswith("#")]
  assert len(grid_commands) == 38
  assert all("--config.num_networks=20" in c for c in grid_commands)
  assert "# [37] mode=none: to run" in grid.stdout


def test_bad_flags_are_usage_errors(tmp_path):
  flags_ = ["--sweep=launch/sweeps/tiny.py", f"--sweep_dir={tmp_path}/s", "--dry_run"]
  for extra, message in (("--trial_index=3", "--trial_index must be in 0..2, got 3"),
                         ("--devices=0,1 --parallel=3", "--parallel must be between 1 and"),
                         ("--devices=cpu,0", "--devices must be cpu or GPU ids")):
    result = run_sweep(*flags_, *extra.split())
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_trial_index_runs_only_that_trial(tiny_sweep):
  assert tiny_sweep.only_last.returncode == 0, tiny_sweep.only_last.stdout
  records = tiny_sweep.only_last_manifest["trials"]
  assert [r["id"] for r in records] == TINY_IDS
  assert [r["status"] for r in records] == ["pending", "pending", "done"]
  assert records[2]["return_code"] == 0 and records[2]["device"] == "cpu"
  assert records[2]["duration_s"] > 0
  assert "1 selected, 0 already finished, 1 to run" in tiny_sweep.only_last.stdout


def test_sweep_runs_two_trials_at_a_time_on_their_own_devices(tiny_sweep):
  assert tiny_sweep.full.returncode == 0, tiny_sweep.full.stdout
  assert "3 selected, 1 already finished, 2 to run, 2 at a time" in tiny_sweep.full.stdout
  assert re.search(r"\] 1/3 done, 0 failed, 2 running \| started", tiny_sweep.full.stdout)
  manifest = read_manifest(tiny_sweep.sweep_dir)
  assert manifest["sweep"] == "launch/sweeps/tiny.py"
  assert manifest["config"] == "tasks/configs/parity.py:tiny"
  assert manifest["status_counts"] == {"done": 3}
  records = manifest["trials"]
  assert {records[0]["device"], records[1]["device"]} == {"0", "1"}
  for trial, seed, tau in zip(records, (0, 0, 1), (0.01, 0.001, 0.01)):
    assert trial["overrides"] == {"tau": tau, "seed": seed}
    assert trial["workdir"] == os.path.join(tiny_sweep.sweep_dir, trial["id"])
    assert trial["command"].endswith(f"--config.tau={tau} --config.seed={seed}")
    results = json.load(open(os.path.join(trial["workdir"], "results.json")))
    assert results["tau"] == tau and results["step"] == 20
    assert json.load(open(os.path.join(trial["workdir"], "config.json")))["seed"] == seed
    log = open(os.path.join(trial["workdir"], "train.log")).read()
    assert log.startswith("# ") and "results: " in log


def test_rerun_skips_finished_trials(tiny_sweep):
  assert tiny_sweep.rerun.returncode == 0
  assert "3 selected, 3 already finished, 0 to run" in tiny_sweep.rerun.stdout
  assert "started" not in tiny_sweep.rerun.stdout
  assert len(tiny_sweep.mtimes_before_rerun) == 3
  assert tiny_sweep.mtimes_after_rerun == tiny_sweep.mtimes_before_rerun


def _write_edge_sweep(path, num_steps):
  """One trial that fails at once, one that logs every 10 steps and saves no periodic
  checkpoint (the only one is saved on SIGINT)."""
  path.write_text(
      'CONFIG = "tasks/configs/parity.py:tiny"\n'
      f"COMMON = {{'num_steps': {num_steps}, 'log_every': 10, 'checkpoint_every': 100_000,\n"
      "          'eval_every': 100_000}\n\n"
      "def get_sweep():\n"
      "  return [{'tau': -1.0}, {'tau': 0.01}]\n")


def _interrupted_edge_sweep(tmp_path, num_steps, signum, **popen):
  """Runs the edge sweep and sends ``signum`` to the runner once the good trial trains;
  returns the runner's exit code, its output and the sweep's file and dir."""
  sweep_file, sweep_dir = tmp_path / "edge.py", tmp_path / "edge"
  _write_edge_sweep(sweep_file, num_steps=num_steps)
  runner = subprocess.Popen(
      [sys.executable, "-m", "launch.sweep", f"--sweep={sweep_file}", f"--sweep_dir={sweep_dir}",
       "--devices=cpu", "--parallel=2"], cwd=REPO, stdout=subprocess.PIPE, text=True, **popen)
  metrics = sweep_dir / "tau=0.01" / "metrics.jsonl"
  try:
    deadline = time.time() + 120
    while time.time() < deadline and runner.poll() is None and not (
        metrics.exists() and metrics.read_text()):
      time.sleep(0.05)
    runner.send_signal(signum)
    output, _ = runner.communicate(timeout=180)
  finally:
    if runner.poll() is None:
      runner.kill()
  return runner.returncode, output, sweep_file, sweep_dir


def test_sigint_stops_a_runner_started_with_sigint_ignored(tmp_path):
  """``nohup python -m launch.sweep ... &`` in a script starts it with SIGINT ignored."""
  code, output, _, sweep_dir = _interrupted_edge_sweep(
      tmp_path, 100_000, signal.SIGINT,
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
  assert code == 130, output
  assert "interrupted: run the same command to resume" in output
  assert read_manifest(sweep_dir)["trials"][1]["status"] == "interrupted"


def test_failed_trial_is_recorded_and_an_interrupted_one_resumes(tmp_path):
  # 2000 steps: bounded, should the signal go astray. SIGTERM: as a scheduler would send;
  # the runner passes it on.
  code, output, sweep_file, sweep_dir = _interrupted_edge_sweep(tmp_path, 2000, signal.SIGTERM)
  assert code == 130, output
  manifest = read_manifest(sweep_dir)
  bad, good = manifest["trials"]
  assert bad["status"] == "failed" and bad["return_code"] not in (0, None)
  assert "tau" in bad["log_tail"] and "-1.0" in bad["log_tail"]
  assert good["status"] == "interrupted" and good["return_code"] == 130, good["log_tail"]
  stopped = re.search(r"SIGINT: stopped with a checkpoint at step (\d+)", good["log_tail"])
  interrupted_at = int(stopped.group(1))
  assert 10 <= interrupted_at < 2000
  assert os.listdir(sweep_dir / "tau=0.01" / "checkpoints") == [str(interrupted_at)]

  _write_edge_sweep(sweep_file, num_steps=10)  # COMMON changed: same ids, resumable
  rerun = run_sweep(f"--sweep={sweep_file}", f"--sweep_dir={sweep_dir}", "--devices=cpu",
                    "--parallel=2")
  assert rerun.returncode == 1
  assert "1 trial(s) failed" in rerun.stdout and "exit 1" in rerun.stdout
  manifest = read_manifest(sweep_dir)
  assert manifest["status_counts"] == {"failed": 1, "done": 1}
  log = (sweep_dir / "tau=0.01" / "train.log").read_text()
  assert f"resumed from the checkpoint at step {interrupted_at}" in log, log[-3000:]
  results = json.loads((sweep_dir / "tau=0.01" / "results.json").read_text())
  assert results["step"] == interrupted_at
