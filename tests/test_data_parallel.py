"""Data parallel training: the batch sharded over 4 CPU devices gives the 1-device run."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from tasks import config_checks, train
from tasks.checkpoints import load_trained_model
from tasks.configs import parity

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# In a process of 4 CPU devices: trains the config of test_sharded_run_... in argv[1],
# recording the sharding of a batch of the loop's sampler and of the trained state that the
# final evaluation gets, then checks that a batch size must divide among the devices.
_SHARDED_RUN = r"""
import json, sys
import jax
from tasks import config_checks, evaluation, networks, train
from tasks.registry import get_task
from tests import test_data_parallel

seen = {}
evaluate = evaluation.evaluate_networks

def recording_evaluate(graphdef, model_state, config, source):
  batch = source.train(0)
  sharding, leaf = batch.inputs.sharding, jax.tree.leaves(model_state)[0]
  seen.setdefault("batch", {"spec": list(sharding.spec), "devices": len(sharding.device_set),
                            "shard_shape": list(sharding.shard_shape(batch.inputs.shape))})
  seen.setdefault("state", {"devices": len(leaf.sharding.device_set),
                            "replicated": leaf.sharding.is_fully_replicated})
  return evaluate(graphdef, model_state, config, source)

evaluation.evaluate_networks = recording_evaluate
train.train_and_evaluate(test_data_parallel.config(), sys.argv[1])
try:
  config_checks.validate(test_data_parallel.config(batch_size=6))
except config_checks.ConfigError as e:
  seen["error"] = str(e)
print(json.dumps({"device_count": jax.device_count(), **seen}))
"""


def config(**overrides):
  """A tiny K = 2 parity ensemble (batch 8) whose every step is logged."""
  config = parity.get_config("tiny")
  config.update({"num_networks": 2, "taus": (0.01, 0.001), "log_every": 1, **overrides})
  return config


def _run_files(workdir):
  """The train rows of ``metrics.jsonl``, and each network's final parameters (restored
  on this process's one device, whatever the devices of the run)."""
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  params = [nnx.to_pure_dict(nnx.state(load_trained_model(str(workdir), i)[0]))
            for i in range(2)]
  return [r for r in rows if r["split"] == "train"], params


def test_sharded_run_over_4_devices_matches_the_1_device_run(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": (
      os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4")}
  sharded = subprocess.run([sys.executable, "-c", _SHARDED_RUN, str(tmp_path / "sharded")],
                           cwd=REPO, env=env, capture_output=True, text=True)
  assert sharded.returncode == 0, sharded.stderr[-3000:]
  seen = json.loads(sharded.stdout.splitlines()[-1])
  assert seen["device_count"] == 4
  # [K, B, T, D] batches, B = 8 split into 4 shards of 2; the state whole on every device.
  assert seen["batch"] == {"spec": [None, "data"], "devices": 4,
                           "shard_shape": [2, 2, 1, 8]}
  assert seen["state"] == {"devices": 4, "replicated": True}
  assert "batch_size (6) must be divisible by the number of devices (4)" in seen["error"]

  assert jax.device_count() == 1
  train.train_and_evaluate(config(), str(tmp_path / "single"))
  rows_4, params_4 = _run_files(tmp_path / "sharded")
  rows_1, params_1 = _run_files(tmp_path / "single")
  assert [r["step"] for r in rows_4] == [r["step"] for r in rows_1] == list(range(1, 21))
  for key in ("loss/0", "loss/1", "mean_ponder/0", "mean_ponder/1"):
    np.testing.assert_allclose([r[key] for r in rows_4], [r[key] for r in rows_1], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               params_4, params_1)


def test_distributed_initializes_jax_distributed_before_anything_else(monkeypatch, tmp_path):
  calls = []

  class Initialized(Exception):
    pass

  def initialize():
    calls.append("initialize")
    raise Initialized  # a real call needs a cluster: stop here

  monkeypatch.setattr(jax.distributed, "initialize", initialize)
  with pytest.raises(Initialized):  # before the config is even validated
    train.train_and_evaluate(config(distributed=True, num_networks=0), str(tmp_path))
  assert calls == ["initialize"]
  with pytest.raises(config_checks.ConfigError, match="num_networks"):
    train.train_and_evaluate(config(num_networks=0), str(tmp_path))
  assert calls == ["initialize"] and not os.listdir(tmp_path)
