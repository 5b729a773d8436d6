"""Two processes, data parallel over both (jax.distributed on a localhost coordinator).

The multi-host path of ``--config.distributed=True`` (GPU clusters, TPU pods) run
for real on CPUs: a SIGTERM to one process stops both at the same step with one
checkpoint, both resume from it, and the run ends with the same losses and
parameters as one process; metrics are written by process 0 only.
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
# argv[3], on its one CPU device, with the compilation cache argv[5]; process 1 alone sends
# itself SIGTERM once it has evaluated step argv[6] (0: never).
_WORKER = r"""
import os
import signal
import sys
import jax
from absl import logging
port, process_id, workdir, num_steps, cache, sigterm_after = sys.argv[1:]
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=int(process_id))
logging.set_verbosity(logging.INFO)
from launch.train import use_compilation_cache
from tasks import metric_writer, train
use_compilation_cache(cache)
from tests import test_multiprocess
write = metric_writer.MetricWriter.write
def write_then_sigterm(self, step, split, metrics):
  write(self, step, split, metrics)
  if process_id == "1" and (step, split) == (int(sigterm_after), "eval"):
    os.kill(os.getpid(), signal.SIGTERM)
metric_writer.MetricWriter.write = write_then_sigterm
try:
  results = train.train_and_evaluate(test_multiprocess.config(num_steps=int(num_steps)), workdir)
except KeyboardInterrupt as stop:
  print("stopped:", stop.args[0])
else:
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


def _run_two_processes(workdir, num_steps: int, sigterm_after: int = 0) -> list[str]:
  """Both processes' stdout and stderr, after they end (asserting they succeed)."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
  env["XLA_FLAGS"] = " ".join(flag for flag in os.environ.get("XLA_FLAGS", "").split()
                              if "device_count" not in flag)  # one device per process
  port = _free_port()
  cache = workdir.parent / "cache"
  procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(port), str(i), str(workdir),
                             str(num_steps), str(cache), str(sigterm_after)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outputs = [proc.communicate(timeout=300) for proc in procs]
  for proc, (_, stderr) in zip(procs, outputs):
    assert proc.returncode == 0, stderr[-3000:]
  return [stdout + stderr for stdout, stderr in outputs]


def _rows_and_params(workdir):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  params = nnx.to_pure_dict(nnx.state(load_trained_model(str(workdir))[0]))
  return rows, params


def test_two_processes_stop_together_and_resume_like_one(tmp_path):
  two = tmp_path / "two"
  # Process 1 alone gets SIGTERM while it evaluates step 10: both stop there, with one
  # checkpoint (without the agreement, process 0 would go on and wait for process 1).
  outputs = _run_two_processes(two, 20, sigterm_after=10)
  assert all("stopped: SIGTERM" in output for output in outputs)
  assert all("SIGTERM: stopped with a checkpoint at step 10" in output for output in outputs)
  assert all("training on 2 cpu device(s) (cpu), 1 per process, 2 process(es)" in output
             for output in outputs)
  assert sorted(os.listdir(two / "checkpoints")) == ["10"]
  outputs = _run_two_processes(two, 20)  # both resume from the shared checkpoint
  assert all("resumed from the checkpoint at step 10" in output
             and "devices 2 processes 2 step 20" in output for output in outputs)
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
