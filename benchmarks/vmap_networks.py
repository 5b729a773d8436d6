r"""Benchmark: K parity networks in one vmapped training step vs one network at a time.

The training step of ``tasks/training_step.py`` (``train_step``: loss, gradients
and the Adam update) at the paper's parity size: tanh RNN 128, batch 128, 64
bits, M = 100, the first-k layout, taus spread log-uniformly over 1e-4..1e-1
(networks freshly initialised: N is about 2). Side by side in one process
(interleaved rounds, median per variant):

  (a) ``vmapped``: one step of all K networks, stacked (``num_networks = K``);
  (b) ``sequential``: the same jitted single-network step (``num_networks = 1``)
      called K times, once per network, on the same parameters and batches.

Throughput is networks x steps per second; the ratio is (a) over (b). The load
average is printed too: on a shared machine, compare ratios, not times.
``--mode=none`` measures the same networks without ACT (no ponder loop).

Usage::

  python benchmarks/vmap_networks.py                    # K = 4, 8, 16
  python benchmarks/vmap_networks.py --networks=16 --json
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
from absl import app, flags

import timing  # benchmarks/timing.py, beside this script
from tasks import networks, training_step
from tasks.configs import parity
from tasks.registry import get_task

_JSON = flags.DEFINE_bool("json", False, "Print one JSON object on the last line.")
_ROUNDS = flags.DEFINE_integer("rounds", 10, "Timed rounds per variant (interleaved).")
_NETWORKS = flags.DEFINE_list("networks", ["4", "8", "16"], "Values of K to measure.")
_MODE = flags.DEFINE_enum("mode", "act", ["act", "none"],
                          "The networks: with ACT, or the baseline without (no ponder loop).")


def _config(num_networks: int):
  config = parity.get_config("first_k")  # tanh 128, batch 128, 64 bits, M = 100
  config.num_networks = num_networks
  config.mode = _MODE.value
  config.taus = tuple(float(t) for t in np.geomspace(1e-4, 1e-1, num_networks))
  return config


def _train_inputs(config, task, mesh) -> tuple:
  """(graphdefs, state, batch of step 0, taus) of ``config``'s networks."""
  graphdefs, state = networks.initial_networks(config, task, mesh)
  batch = networks.network_batches(config, task, mesh).train(0)
  return graphdefs, state, batch, np.asarray(config.taus or [config.tau], np.float32)


def _setting(num_networks: int, rounds: int) -> dict:
  config, task, mesh = _config(num_networks), get_task("parity"), networks.data_mesh()
  step = functools.partial(training_step.train_step, metric=task.metric, mesh=mesh)
  stacked = _train_inputs(config, task, mesh)
  singles = [_train_inputs(networks.network_config(config, i), task, mesh)
             for i in range(num_networks)]
  seconds = timing.median_seconds(
      {"vmapped": lambda: step(*stacked),
       "sequential": lambda: [step(*single) for single in singles]}, (), rounds)
  _, metrics = step(*stacked)
  throughput = {name: num_networks / s for name, s in seconds.items()}
  return {"networks": num_networks, "mean_steps": float(np.mean(metrics["mean_steps"])),
          "ms": {name: 1e3 * s for name, s in seconds.items()},
          "network_steps_per_second": throughput,
          "vmapped_over_sequential": throughput["vmapped"] / throughput["sequential"]}


def main(argv):
  del argv
  load_before = os.getloadavg()
  results = [_setting(int(k), _ROUNDS.value) for k in _NETWORKS.value]
  load_after = os.getloadavg()
  print(f"parity (tanh 128, batch 128, 64 bits, M=100, first_k, mode {_MODE.value}), "
        f"{os.cpu_count()} CPUs, "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
  print(f"{'K':>3s} {'mean N':>6s} {'vmapped ms':>10s} {'K x single ms':>13s} "
        f"{'vmapped net-steps/s':>19s} {'sequential net-steps/s':>22s} {'ratio':>6s}")
  for r in results:
    print(f"{r['networks']:3d} {r['mean_steps']:6.2f} {r['ms']['vmapped']:10.1f} "
          f"{r['ms']['sequential']:13.1f} {r['network_steps_per_second']['vmapped']:19.1f} "
          f"{r['network_steps_per_second']['sequential']:22.1f} "
          f"{r['vmapped_over_sequential']:6.2f}")
  if _JSON.value:
    print(json.dumps({"mode": _MODE.value, "load_average": [load_before[0], load_after[0]],
                      "settings": results}))


if __name__ == "__main__":
  app.run(main)
