"""Two processes, data parallel over both (jax.distributed on a localhost coordinator).

The multi-host path of ``--config.distributed=True`` (GPU clusters, TPU pods) run
for real on CPUs: the same losses and parameters as one process, checkpoints
written once and resumed by both processes, metrics written by process 0 only.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
from flax import nnx

from tasks import train
from tasks.checkpoints import load_trained_model
from tasks.configs import parity

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Process argv[2] of 2 (coordinator at localhost:argv[1]) trains config(num_steps=argv[4]) in
# argv[3], on its one CPU device, with the compilation cache argv[5].
_WORKER = r"""
import sys
import jax
from absl import logging
port, process_id, workdir, num_steps, cache = sys.argv[1:]
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=int(process_id))
logging.set_verbosity(logging.INFO)
from launch.train import use_compilation_cache
from tasks import train
use_compilation_cache(cache)
from tests import test_multiprocess
results = train.train_and_evaluate(test_multiprocess.config(num_steps=int(num_steps)), workdir)
print("devices", jax.device_count(), "processes", jax.process_count(), "step", results["step"])
"""


def config(**overrides):
  """A tiny parity run (batch 8: 4 examples per process) whose every step is logged."""
  config = parity.get_config("tiny")
  config.update({"log_every": 1, "distributed": True, **overrides})
  return config


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run_two_processes(workdir, num_steps: int) -> list[str]:
  """Both processes' stderr, after they end (asserting they succeed)."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
  env.pop("XLA_FLAGS", None)  # one device per process
  port = _free_port()
  cache = workdir.parent / "cache"
  procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(port), str(i), str(workdir),
                             str(num_steps), str(cache)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  outputs = [proc.communicate(timeout=300) for proc in procs]
  for proc, (stdout, stderr) in zip(procs, outputs):
    assert proc.returncode == 0, stderr[-3000:]
    assert f"devices 2 processes 2 step {num_steps}" in stdout
  return [stderr for _, stderr in outputs]


def _rows_and_params(workdir):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  params = nnx.to_pure_dict(nnx.state(load_trained_model(str(workdir))[0]))
  return rows, params


def test_two_processes_train_and_resume_like_one(tmp_path):
  two = tmp_path / "two"
  _run_two_processes(two, 10)
  assert sorted(os.listdir(two / "checkpoints")) == ["10"]
  stderrs = _run_two_processes(two, 20)  # both resume from the shared checkpoint
  assert all("resumed from the checkpoint at step 10" in stderr for stderr in stderrs)
  assert sorted(os.listdir(two / "checkpoints")) == ["10", "20"]

  assert jax.process_count() == 1
  train.train_and_evaluate(config(distributed=False), str(tmp_path / "one"))
  rows_2, params_2 = _rows_and_params(two)
  rows_1, params_1 = _rows_and_params(tmp_path / "one")
  # Process 0 alone wrote metrics: each row once.
  keys = lambda rows: [(r["step"], r["split"]) for r in rows]
  assert keys(rows_2) == keys(rows_1) and len(rows_1) == 20 + 2
  by_key = {(r["step"], r["split"]): r for r in rows_2}
  for row in rows_1:
    for name in ("loss", "mean_ponder"):
      if name in row:
        np.testing.assert_allclose(by_key[row["step"], row["split"]][name], row[name], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               params_2, params_1)
