"""Training with the compacting ponder loop (the task models' default) matches the
plain while loop to float tolerance."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp

from tasks import train
from tasks.configs import parity


def _run(tmp_path, name, independent_examples):
  config = parity.get_config("tiny")
  config.update(num_steps=30, log_every=10, checkpoint_every=30,
                independent_examples=independent_examples, plot=False)
  workdir = tmp_path / name
  train.train_and_evaluate(config, str(workdir))
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  manager = ocp.CheckpointManager(workdir / "checkpoints")
  params = manager.restore(manager.latest_step())["model"]
  manager.close()
  return [r["loss"] for r in rows if r["split"] == "train"], params


def test_compaction_does_not_change_a_short_run(tmp_path):
  assert parity.get_config("tiny").independent_examples is True  # on by default
  losses, params = _run(tmp_path, "compact", True)
  plain_losses, plain_params = _run(tmp_path, "plain", False)
  assert len(losses) == 3
  np.testing.assert_allclose(losses, plain_losses, rtol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               params, plain_params)
