"""The halting probe: its gradients against the analytic ponder-cost derivative, their
vanishing once every example halts at its first step, and the CLI over a run's checkpoints."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sweep_runs import REPO
from tasks import config_checks, halting_probe, networks, train
from tasks.configs import parity

TAU = 0.01


def _model_and_batch(halting_bias):
  config = parity.get_config("tiny")
  config.halting_bias = halting_bias
  config.batch_size = 64
  task = config_checks.validate(config)
  return networks.build_model(config, task), task.source(config).train(0)


def test_ponder_gradient_on_the_bias_is_the_analytic_one():
  # rho = N + R with R = 1 - sum_{n<N} h^n and N held constant (Eq. 13): d rho / d b =
  # -sum_{n<N} h^n (1 - h^n), and p^n = h^n for n < N. Bias 0: N from 1 to the cap.
  model, batch = _model_and_batch(halting_bias=0.0)
  graphdef, state = nnx.split(model)
  got = halting_probe.probe_batch(graphdef, state, batch, jnp.float32(TAU))
  stats = model(batch.inputs, batch.input_mask).stats
  p = np.asarray(stats.halting_probs[:, 0], np.float64)  # [B, M], one input step
  steps = np.asarray(stats.steps[:, 0])
  before = np.arange(p.shape[1])[None, :] < (steps[:, None] - 1)
  expected = -TAU * np.mean(np.sum(np.where(before, p * (1 - p), 0.0), axis=1))
  assert len(set(steps.tolist())) > 1  # the batch mixes halting steps
  assert float(got["halting_grad_bias"]) == pytest.approx(expected, rel=1e-4)
  assert float(got["halting_grad_bias"]) < 0  # the ponder cost asks for a larger h
  assert float(got["halting_grad_kernel"]) > 0 and float(got["task_grad_kernel"]) > 0
  assert float(got["mean_steps"]) == pytest.approx(steps.mean())
  assert float(got["halting_bias"]) == 0.0


def test_both_gradients_vanish_once_every_example_halts_at_the_first_step():
  model, batch = _model_and_batch(halting_bias=30.0)  # h^1 = 1: N = 1, R = 1 everywhere
  graphdef, state = nnx.split(model)
  got = jax.device_get(halting_probe.probe_batch(graphdef, state, batch, jnp.float32(TAU)))
  assert got["one_step_share"] == 1.0 and got["first_weight"] == 1.0
  for name in ("task_grad_bias", "halting_grad_bias", "task_grad_kernel",
               "halting_grad_kernel"):
    assert got[name] == 0.0, name
  assert got["halting_loss"] == pytest.approx(2 * TAU)  # rho = N + R = 2


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "launch.halting_probe", *args], cwd=REPO,
                        capture_output=True, text=True, check=False)


def test_cli_probes_every_kept_checkpoint(tmp_path):
  config = parity.get_config("tiny")
  config.update(num_steps=30, checkpoint_every=10, keep_checkpoints=0)
  train.train_and_evaluate(config, str(tmp_path / "run"))
  result = _cli(f"--workdir={tmp_path / 'run'}", "--batches=2",
                f"--out_dir={tmp_path / 'probe'}")
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / "probe" / "halting_probe.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert [row["step"] for row in rows] == [10, 20, 30]  # none dropped
  assert all(set(row) == set(halting_probe.COLUMNS) for row in rows)
  assert all(np.isfinite(row[k]) for row in rows for k in halting_probe.COLUMNS)
  assert all(-1 <= row["bias_step"] <= 1 and row["task_grad_bias_std"] > 0 for row in rows)
  assert "| step | task_loss |" in result.stdout
  with open(tmp_path / "probe" / "halting_probe.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  empty = _cli(f"--workdir={tmp_path / 'nothing'}")
  assert empty.returncode != 0 and "holds no checkpoint" in empty.stderr
  assert not os.path.exists(tmp_path / "nothing")
