"""Config checks and the training CLI's handling of bad input."""

import json
import os
import subprocess
import sys

import pytest

from tasks import config_checks, evaluation, train
from tasks.configs import parity, text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "launch.train", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_jax_flags_are_accepted_on_the_command_line(tmp_path):
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
  result = subprocess.run(
      [sys.executable, "-m", "launch.train", "--config=tasks/configs/parity.py:tiny",
       f"--workdir={tmp_path}", "--jax_platforms=cpu", "--jax_num_cpu_devices=2",
       "--config.batch_size=7"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  # Two CPU devices: a batch of 7 cannot be sharded over them (one device would train it).
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      "error: config.batch_size (7) must be divisible by the number of devices (2): every "
      "step shards the batch over all of them")


def _tiny(**overrides):
  config = parity.get_config("tiny")
  config.update(overrides)
  return config


@pytest.mark.quick
@pytest.mark.parametrize("field,value,message", [
    ("tau", float("inf"), r"config.tau must be a finite number, got inf"),
    ("learning_rate", float("inf"), r"config.learning_rate must be a finite number"),
    ("halting_bias", float("nan"), r"config.halting_bias must be a finite number, got nan"),
    ("taus", (0.01, float("inf")), r"config.taus\[1\] must be a finite number"),
])
def test_non_finite_floats_are_rejected_before_anything_runs(field, value, message, tmp_path):
  config = _tiny(num_networks=2 if field == "taus" else 1)
  config[field] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()


def test_results_and_metrics_are_strict_json_when_a_metric_is_nan(tmp_path, monkeypatch):
  real = evaluation.evaluate_networks

  def nan_error(*args, **kwargs):
    result = real(*args, **kwargs)
    result.pooled["sequence_error"] = float("nan")
    return result

  monkeypatch.setattr(evaluation, "evaluate_networks", nan_error)
  train.train_and_evaluate(_tiny(num_steps=10), str(tmp_path))

  def reject(constant):
    raise ValueError(f"not strict JSON: {constant}")

  results = json.loads((tmp_path / "results.json").read_text(), parse_constant=reject)
  assert results["sequence_error"] is None
  for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
    json.loads(line, parse_constant=reject)


def test_show_config_lists_fields_and_values_with_overrides():
  result = _cli("--config=tasks/configs/parity.py:quick", "--config.tau=0.05", "--show_config")
  assert result.returncode == 0, result.stderr[-2000:]
  fields = {name.strip(): value for name, value in
            (line.split(" = ", 1) for line in result.stdout.splitlines())}
  assert fields["tau"] == "0.05  (float)"
  assert fields["task_options.num_bits"] == "8  (int)"
  assert {"task_options.layout", "restore_step", "seed", "learning_rate"} <= set(fields)


@pytest.mark.parametrize("override,line", [
    ("--config.taau=1", "error: unknown config field 'taau' (did you mean 'tau'?)"),
    ("--config.task_options.num_bitz=3",
     "error: unknown config field 'task_options.num_bitz' (did you mean "
     "'task_options.num_bits'?)"),
])
def test_misspelt_field_is_one_line_with_the_suggestion(override, line):
  result = _cli("--config=tasks/configs/parity.py:tiny", "--workdir=/nonexistent/never", override)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(line), result.stderr[-2000:]


def test_text_check_sha1_is_a_task_option_settable_from_the_cli():
  assert text.get_config("default").task_options.check_sha1 is True
  result = _cli("--config=tasks/configs/text.py:tiny", "--config.task_options.check_sha1=False",
                "--show_config")
  assert result.returncode == 0, result.stderr[-2000:]
  assert any(line.split("=")[0].strip() == "task_options.check_sha1"
             and "False" in line for line in result.stdout.splitlines())


@pytest.mark.quick
def test_text_data_path_that_is_a_directory_says_so(tmp_path):
  config = text.get_config("tiny")
  config.task_options.path = str(tmp_path)
  with pytest.raises(config_checks.ConfigError, match="is a directory"):
    config_checks.validate(config)


def _corrupt(step_dir):
  for root, _, files in os.walk(step_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")


def test_corrupt_latest_checkpoint_names_it_and_resumes_from_restore_step(tmp_path):
  workdir = tmp_path / "run"
  train.train_and_evaluate(_tiny(), str(workdir))  # checkpoints at steps 10 and 20
  _corrupt(workdir / "checkpoints" / "20")
  result = _cli("--config=tasks/configs/parity.py:tiny", f"--workdir={workdir}",
                "--config.num_steps=30")
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines() if "xla_bridge" not in line]
  assert len(errors) == 1, result.stderr[-3000:]
  assert errors[0].startswith(f"error: cannot read the checkpoint {workdir}/checkpoints/20 ")
  assert "--config.restore_step=10" in errors[0]
  assert "Traceback" not in result.stderr + result.stdout

  resumed = train.train_and_evaluate(_tiny(num_steps=30, restore_step=10), str(workdir))
  assert resumed["step"] == 30
  extended = train.train_and_evaluate(_tiny(num_steps=40), str(workdir))  # restore_step back to 0
  assert extended["step"] == 40


def test_restore_step_that_was_not_saved_is_a_clear_error(tmp_path):
  train.train_and_evaluate(_tiny(), str(tmp_path))
  with pytest.raises(config_checks.ConfigError, match=r"restore_step=15 .* steps \[10, 20\]"):
    train.train_and_evaluate(_tiny(num_steps=30, restore_step=15), str(tmp_path))


_INTERRUPTED_AT_START = r"""
import sys
from absl import app
from launch import train as cli

def interrupted(config, workdir):
  raise KeyboardInterrupt  # Ctrl-C before the training loop, e.g. while compiling

cli.train.train_and_evaluate = interrupted
sys.argv = ["train", "--config=tasks/configs/parity.py:tiny", "--workdir=" + sys.argv[1]]
app.run(cli.main, flags_parser=cli._parse_flags)
"""


def test_ctrl_c_during_start_up_does_not_claim_a_checkpoint(tmp_path):
  result = subprocess.run([sys.executable, "-c", _INTERRUPTED_AT_START, str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 130, result.stderr[-2000:]
  assert "interrupted before the run could save a checkpoint" in result.stdout
  assert "checkpointed" not in result.stdout
