"""The training loop, CLI and checkpoints, on the ``tiny`` configs."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tasks import config_checks, networks, plots, stopping, train
from tasks.results import summary_table
from tasks.configs import addition, logic, parity, sort
from tasks.registry import get_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"parity": parity, "logic": logic, "addition": addition, "sort": sort}


def _tiny(task="parity", **overrides):
  config = CONFIGS[task].get_config("tiny")
  config.update(overrides)
  return config


@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_each_task_trains_and_writes_results(task, tmp_path):
  results = train.train_and_evaluate(_tiny(task, plot=task == "parity"), str(tmp_path))
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["task"] == task and saved["step"] == 20 and saved["act"] is True
  for key in ("tau", "sequence_error", "mean_steps", "mean_ponder", "by_difficulty"):
    assert key in saved
  assert 0.0 <= saved["sequence_error"] <= 1.0
  assert saved["mean_ponder"] > saved["mean_steps"] >= 1.0  # rho = N + R, R > 0
  counted = sum(row["count"] for row in saved["by_difficulty"].values())
  assert counted + saved["unscored_sequences"] == 64  # addition: length-1 sequences unscored
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train_rows = [r for r in rows if r["split"] == "train"]
  assert [r["step"] for r in train_rows] == [10, 20]
  assert all(np.isfinite(r["loss"]) and r["steps_per_second"] > 0 for r in train_rows)
  assert any(f.startswith("events") for f in os.listdir(tmp_path / "tensorboard"))
  assert results["sequence_error"] == saved["sequence_error"]
  assert (tmp_path / "plots.png").exists() == (task == "parity")


@pytest.mark.parametrize("mode,steps", [("none", 1.0), ("repeat", 3.0)])
def test_baselines_take_fixed_steps_and_have_no_tau(mode, steps, tmp_path, monkeypatch):
  titles = []
  close = plots.plt.close
  monkeypatch.setattr(plots.plt, "close",
                      lambda figure: (titles.append(figure.get_suptitle()), close(figure)))
  results = train.train_and_evaluate(_tiny(mode=mode, repeats=3, plot=True), str(tmp_path))
  assert results["act"] is False
  assert results["mean_steps"] == steps and results["mean_ponder"] == steps
  # No time penalty without ACT: results.json, the summary table and plots.png name none.
  saved = json.loads((tmp_path / "results.json").read_text())
  assert "tau" not in saved and all("tau" not in network for network in saved["networks"])
  assert "tau" not in summary_table(saved)
  assert titles[0].startswith(f"parity ({mode}): eval sequence error")


def test_pondernet_trains_on_its_expected_loss(tmp_path):
  results = train.train_and_evaluate(_tiny(halting="pondernet", beta=0.05, lambda_p=0.3),
                                     str(tmp_path))
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert all(np.isfinite(r["loss"]) for r in rows if r["split"] == "train")
  assert results["act"] is True and 1.0 <= results["mean_steps"] <= 5
  assert (results["halting"], results["beta"], results["lambda_p"]) == ("pondernet", 0.05, 0.3)
  assert "(act, PonderNet, beta=0.05, lambda_p=0.3)" in summary_table(results)
  # rho = N + R with R the halting mass left out, at most epsilon.
  assert results["mean_steps"] <= results["mean_ponder"] <= results["mean_steps"] + 0.01


def test_parity_extrapolation_split_with_pondernet_writes_every_rule(tmp_path, monkeypatch):
  config = _tiny(halting="pondernet", figure_examples=3)
  config.task_options.train_nonzero, config.task_options.eval_nonzero = (1, 4), (5, 8)
  task = get_task("parity")
  source = task.source(config)
  assert set(np.asarray(source.train(0).difficulty)) <= {1, 2, 3, 4}
  lines = []
  monkeypatch.setattr(train.logging, "info", lambda message, *args: lines.append((message, args)))
  results = train.train_and_evaluate(config, str(tmp_path))
  saved = json.loads((tmp_path / "results.json").read_text())
  rules = ("sequence_error", "task_loss", "sequence_error_most_likely", "task_loss_most_likely",
           "sequence_error_mean_field", "expected_steps", "mean_sampled_steps",
           "mean_most_likely_steps")
  for summary in (saved, saved["figure"], saved["networks"][0]):
    assert set(rules) <= set(summary)
    assert 1.0 <= summary["mean_sampled_steps"] <= summary["mean_steps"]
  assert sorted(saved["by_difficulty"], key=int) == ["5", "6", "7", "8"]
  assert {k: row["count"] for k, row in saved["figure"]["by_difficulty"].items()} == {
      "5": 3, "6": 3, "7": 3, "8": 3}
  evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
           if '"eval"' in line]
  assert [row["step"] for row in evals] == [10, 20] and all(set(rules) <= set(r) for r in evals)
  progress = [message % args for message, args in lines if str(message).startswith("eval at")]
  assert len(progress) == 1 and "most likely step" in progress[0], progress
  assert "expected steps" in progress[0] and progress[0].startswith("eval at step 10 |")
  assert "sequence error at a sampled step" in summary_table(results)


def _latest_params(workdir):
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  restored = manager.restore(manager.latest_step())
  manager.close()
  return manager.latest_step(), restored["model"]


def _cli(workdir, *overrides, cache=""):
  return [sys.executable, "-m", "launch.train", "--config=tasks/configs/parity.py:tiny",
          f"--workdir={workdir}", f"--compilation_cache={cache}", *overrides]


def test_sigkill_then_rerun_ends_with_the_uninterrupted_parameters(tmp_path):
  overrides = ["--config.num_steps=600", "--config.checkpoint_every=50",
               "--config.log_every=100", "--config.eval_every=1000"]
  killed, cache = tmp_path / "killed", tmp_path / "cache"
  proc = subprocess.Popen(_cli(killed, *overrides, cache=cache), cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  checkpoints = killed / "checkpoints"
  deadline = time.time() + 120
  while time.time() < deadline and proc.poll() is None:
    if checkpoints.is_dir() and any(d.isdigit() for d in os.listdir(checkpoints)):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  manager = ocp.CheckpointManager(checkpoints)
  killed_at = manager.latest_step()
  manager.close()
  assert killed_at is not None and killed_at < 600

  cached = set(os.listdir(cache))
  assert cached  # the first run's compiled programs
  rerun = subprocess.run(_cli(killed, *overrides, cache=cache), cwd=REPO, capture_output=True,
                         text=True)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert f"resumed from the checkpoint at step {killed_at}" in rerun.stderr
  assert len(re.findall("compiled the training loop in", rerun.stderr)) == 1
  assert set(os.listdir(cache)) >= cached

  config = _tiny(num_steps=600, checkpoint_every=50, log_every=100, eval_every=1000)
  train.train_and_evaluate(config, str(tmp_path / "uninterrupted"))
  step_a, params_a = _latest_params(killed)
  step_b, params_b = _latest_params(tmp_path / "uninterrupted")
  assert step_a == step_b == 600
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               params_a, params_b)


def test_sigint_stops_after_a_checkpoint_that_the_rerun_resumes_from(tmp_path):
  # Saves every 5 steps, so the signal often arrives while an async save is in flight.
  overrides = ["--config.num_steps=100000", "--config.checkpoint_every=5",
               "--config.log_every=1000", "--config.eval_every=100000"]
  proc = subprocess.Popen(_cli(tmp_path, *overrides), cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while time.time() < deadline and not (tmp_path / "checkpoints" / "5").is_dir():
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  stdout, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-2000:]
  assert "run the same command to resume" in stdout
  stopped_at = int(re.search(r"SIGINT: stopped with a checkpoint at step (\d+)", stderr)[1])
  manager = ocp.CheckpointManager(tmp_path / "checkpoints")
  assert manager.latest_step() == stopped_at > 0
  manager.close()
  rerun = subprocess.run(_cli(tmp_path, *overrides[1:], f"--config.num_steps={stopped_at + 5}"),
                         cwd=REPO, capture_output=True, text=True)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert f"resumed from the checkpoint at step {stopped_at}" in rerun.stderr


def test_sigterm_and_the_time_budget_are_stop_requests():
  with stopping.StopRequests() as stop:
    assert stop.agree() is None
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.agree() == stop.requested == "SIGTERM" and stop.interrupted
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
  with stopping.StopRequests(time_budget_minutes=1e-9) as stop:
    time.sleep(1e-3)
    assert stop.agree() == stopping.TIME_BUDGET and not stop.interrupted


@pytest.mark.parametrize("field,value,message", [
    ("task", "chess", "unknown task 'chess'"),
    ("tau", -0.1, "tau.*-0.1"),
    ("num_steps", 0, "num_steps.*got 0"),
    ("batch_size", -4, "batch_size.*got -4"),
    ("epsilon", 1.0, "epsilon.*1.0"),
    ("max_steps", 0, "max_steps.*got 0"),
    ("mode", "sometimes", "mode.*'sometimes'"),
    ("learning_rate", 0.0, "learning_rate.*0.0"),
    ("grad_clip_norm", -1.0, "grad_clip_norm must be >= 0.*-1.0"),
    ("time_budget_minutes", -1.0, "time_budget_minutes.*-1.0"),
    ("solved_at", -0.5, "solved_at.*-0.5"),
    ("solved_evals", 0, "solved_evals.*got 0"),
    ("chunk_steps", 0, "chunk_steps.*got 0"),
    ("keep_checkpoints", -1, "keep_checkpoints must be an integer >= 0 .*got -1"),
    ("remat", None, "remat must be True or False, got None"),
    ("weight_init", "he", "weight_init.*'he'"),
    ("cell", ("lstm", "tf_glorot"), "weight_init='tf_glorot' needs config.cell='tanh'.*'lstm'"),
    ("halting", "geometric", "halting must be one of .*'geometric'"),
    ("beta", -0.01, "beta must be .*-0.01"),
    ("lambda_p", 1.0, "lambda_p must be .*1.0"),
    ("mode", ("none", "pondernet"), "halting='pondernet' needs config.mode='act', got 'none'"),
])
def test_bad_config_is_a_clear_error(field, value, message, tmp_path):
  config = _tiny()
  if field == "mode" and isinstance(value, tuple):  # (mode, halting)
    value, config.halting = value
  elif isinstance(value, tuple):  # (value, weight_init)
    value, config.weight_init = value
  config[field] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()  # nothing ran


@pytest.mark.parametrize("grad_clip_norm", [0.0, 1.0])
def test_grad_clip_norm_scales_the_gradient_down_before_adam(grad_clip_norm):
  # Adam is invariant to one gradient's scale but not to two gradients' ratio: clipped
  # to norm 1, a gradient of norm 100 must act as the same direction at norm 1.
  small = {"w": np.array([0.6, 0.8], np.float32)}  # norm 1
  large = {"w": 100.0 * small["w"]}
  tx = networks.make_optimizer(0.1, grad_clip_norm)

  def second_update(first):
    _, state = tx.update(first, tx.init(small))
    return tx.update(small, state)[0]["w"]

  same = np.allclose(second_update(large), second_update(small), rtol=1e-6)
  assert same == (grad_clip_norm == 1.0)


def test_bad_task_option_and_workdir(tmp_path):
  config = _tiny()
  config.task_options.layout = "diagonal"
  with pytest.raises(config_checks.ConfigError, match="layout.*'diagonal'"):
    train.train_and_evaluate(config, str(tmp_path))
  config = _tiny()
  config.task_options.eval_nonzero = (5, 9)
  with pytest.raises(config_checks.ConfigError, match=(
      r"^config.task_options: eval_nonzero must be .* num_bits = 8, got \(5, 9\)$")):
    train.train_and_evaluate(config, str(tmp_path))
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(config_checks.ConfigError, match="not writable"):
    train.train_and_evaluate(_tiny(), str(blocker / "run"))


def test_other_config_or_corrupt_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
  train.train_and_evaluate(_tiny(), str(tmp_path))
  with pytest.raises(config_checks.ConfigError, match="another config.*hidden_size: 16 -> 32"):
    train.train_and_evaluate(_tiny(hidden_size=32), str(tmp_path))
  longer = _tiny(num_steps=30)  # extending a run is allowed
  assert train.train_and_evaluate(longer, str(tmp_path))["step"] == 30
  for root, _, files in os.walk(tmp_path / "checkpoints" / "30"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  with pytest.raises(config_checks.ConfigError, match="cannot read the checkpoint .*checkpoints/30 "):
    train.train_and_evaluate(_tiny(num_steps=40), str(tmp_path))


def test_a_run_saved_before_the_later_fields_resumes(tmp_path):
  train.train_and_evaluate(_tiny(), str(tmp_path))
  path = tmp_path / "config.json"
  saved = json.loads(path.read_text())
  for name in config_checks.ADDED_FIELDS:
    del saved[name]
  path.write_text(json.dumps(saved))
  assert train.train_and_evaluate(_tiny(num_steps=30), str(tmp_path))["step"] == 30


def test_cli_reports_bad_input_before_compiling(tmp_path):
  result = subprocess.run(_cli(tmp_path, "--config.tau=-1"), cwd=REPO, capture_output=True,
                          text=True)
  assert result.returncode != 0
  assert "tau" in result.stderr and "-1" in result.stderr
  assert "Traceback" not in result.stderr


def test_time_budget_stops_early_and_still_writes_results(tmp_path):
  results = train.train_and_evaluate(_tiny(time_budget_minutes=1e-9, num_steps=10_000),
                                     str(tmp_path))
  assert results["step"] < 10_000
  assert json.loads((tmp_path / "results.json").read_text())["step"] == results["step"]


def test_a_solved_run_stops_and_its_resume_rebuilds_the_evaluation_history(tmp_path):
  # Every error is <= 1, so a run is solved at its solved_evals-th evaluation (every 10 steps).
  results = train.train_and_evaluate(
      _tiny(num_steps=100, solved_at=1.0, solved_evals=2), str(tmp_path))
  assert results["step"] == 20 and results["solved_step"] == 20
  assert results["networks"][0]["solved_step"] == 20
  assert [(r["step"], r["split"]) for r in _train_rows(tmp_path)] == [
      (10, "train"), (10, "eval"), (20, "train"), (20, "eval")]  # step 20 evaluated once
  # Three evaluations now: those at 10 and 20 (from metrics.jsonl) and the one at 30.
  results = train.train_and_evaluate(
      _tiny(num_steps=100, solved_at=1.0, solved_evals=3), str(tmp_path))
  assert results["step"] == 30 and results["solved_step"] == 30
  unsolved = train.train_and_evaluate(_tiny(), str(tmp_path / "plain"))
  assert "solved_step" not in unsolved and unsolved["step"] == 20


def _params(workdir):
  return _latest_params(workdir)[1]


def _train_rows(workdir):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [{k: v for k, v in r.items() if k != "steps_per_second"} for r in rows]


def test_one_step_per_call_and_many_give_the_same_run(tmp_path):
  # steps_per_call=1: a call per step; 7: calls of up to 7 steps ending at every
  # log / eval / checkpoint step (10, 20).
  one, many = tmp_path / "one", tmp_path / "many"
  train.train_and_evaluate(_tiny(steps_per_call=1), str(one))
  train.train_and_evaluate(_tiny(steps_per_call=7), str(many))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               _params(one), _params(many))
  rows_one, rows_many = _train_rows(one), _train_rows(many)
  assert [(r["step"], r["split"]) for r in rows_many] == [
      (10, "train"), (10, "eval"), (20, "train"), (20, "eval")]
  for a, b in zip(rows_one, rows_many):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in a if k != "split"],
                               [b[k] for k in a if k != "split"], rtol=1e-5)


def _tensorboard_scalars(workdir):
  """Every scalar event in the run's TensorBoard files as (tag, step, value), in file order.

  Reads the TFRecord framing directly: a uint64 length, a 4-byte checksum, the
  serialized Event, a 4-byte checksum.
  """
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  scalars = []
  for name in sorted(os.listdir(workdir / "tensorboard")):
    data = (workdir / "tensorboard" / name).read_bytes()
    offset = 0
    while offset < len(data):
      length = int.from_bytes(data[offset:offset + 8], "little")
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      scalars += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
  return scalars


def test_resume_at_a_saved_step_is_exact_and_writes_each_row_once(tmp_path):
  from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  whole, resumed = tmp_path / "whole", tmp_path / "resumed"
  train.train_and_evaluate(_tiny(), str(whole))
  train.train_and_evaluate(_tiny(num_steps=10), str(resumed))  # saved at 10
  # What an interrupted run wrote past the checkpoint: a row and TensorBoard events.
  with open(resumed / "metrics.jsonl", "a") as f:
    f.write(json.dumps({"step": 12, "split": "train", "loss": 9.0}) + "\n")
  with SummaryWriter(str(resumed / "tensorboard")) as interrupted:
    interrupted.add_scalar("train/loss", 9.0, 12)
    interrupted.add_scalar("eval/sequence_error", 0.5, 12)
  train.train_and_evaluate(_tiny(), str(resumed))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               _params(whole), _params(resumed))
  expected = [(10, "train"), (10, "eval"), (20, "train"), (20, "eval")]
  assert [(r["step"], r["split"]) for r in _train_rows(resumed)] == expected
  train.train_and_evaluate(_tiny(), str(resumed))  # finished: evaluates step 20 again
  rows = _train_rows(resumed)
  assert [(r["step"], r["split"]) for r in rows] == expected
  np.testing.assert_allclose(rows[2]["loss"], _train_rows(whole)[2]["loss"], rtol=1e-6)
  # TensorBoard: each metric once per row's step, in order, with the rows' values.
  scalars = _tensorboard_scalars(resumed)
  for tag in ("train/loss", "eval/sequence_error", "eval/mean_steps"):
    split, name = tag.split("/")
    logged = [(step, value) for t, step, value in scalars if t == tag]
    written = [(r["step"], r[name]) for r in rows if r["split"] == split]
    assert [step for step, _ in logged] == [step for step, _ in written]
    np.testing.assert_allclose([v for _, v in logged], [v for _, v in written], rtol=1e-6)
  assert len(scalars) == len({(tag, step) for tag, step, _ in scalars})


def test_steps_per_call_must_be_positive(tmp_path):
  with pytest.raises(config_checks.ConfigError, match="steps_per_call.*got 0"):
    train.train_and_evaluate(_tiny(steps_per_call=0), str(tmp_path))
