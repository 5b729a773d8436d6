"""One training loop for every task: ``train_and_evaluate(config, workdir)``.

Many steps per compiled call (:func:`tasks.training_step.train_steps`:
batches generated and metrics summed inside the call, the host touched only
between calls); between calls, progress lines, periodic evaluation on a
held-out stream, metrics (``tasks/metric_writer.py``), checkpoints
(``tasks/checkpoints.py``: a rerun of the same command resumes) and stop
requests (``tasks/stopping.py``); ``results.json`` at the end
(``tasks/results.py``). The config is checked first (``tasks/config_checks.py``).

Ensembles: ``config.num_networks = K`` networks train side by side in one
jit-compiled step; data parallel: the batch axis is sharded over all devices,
parameters and optimizer states replicated. ``tasks/networks.py`` builds and
places the stacked networks and their batches; ``tasks/evaluation.py`` scores
them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from tasks import config_checks, evaluation, networks, results, solved
from tasks.checkpoints import TrainingCheckpoints
from tasks.config_checks import ConfigError
from tasks.metric_writer import MetricWriter, metric_row
from tasks.stopping import TIME_BUDGET, StopRequests
from tasks.training_step import train_steps


def _initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """``jax.distributed.initialize()`` for ``config.distributed``, before any other JAX call.

  With several processes (a multi-host GPU cluster or TPU pod, its environment
  read by ``jax.distributed.initialize``) the mesh spans every process's
  devices; every step's batch is generated inside the compiled call, each process
  computing its own devices' shards, and only process 0
  writes metrics, ``config.json`` and ``results.json`` (orbax coordinates the
  checkpoints). A stop request (a signal, the time budget) reaching any
  process stops them all at the same step (``tasks/stopping.py``). Tested with
  two processes on one machine (``tests/test_multiprocess.py``). Several
  processes on CPUs compile rather than read JAX's persistent compilation cache.
  """
  if not isinstance(config.distributed, bool):
    raise ConfigError(f"config.distributed must be True or False, got {config.distributed!r}")
  if config.distributed and not jax.distributed.is_initialized():
    jax.distributed.initialize()
  if jax.process_count() > 1 and jax.default_backend() == "cpu":
    # On the newest JAX (0.12) a CPU program that several processes load from the
    # persistent compilation cache never finishes its first collective; compile instead.
    jax.config.update("jax_enable_compilation_cache", False)
    logging.info("several CPU processes: JAX's persistent compilation cache is off")


def _log_devices() -> None:
  """The start-up line naming the platform and the devices in use (check it on a GPU or
  TPU: a JAX without their support runs on the CPU)."""
  devices = jax.devices()
  logging.info("training on %d %s device(s) (%s), %d per process, %d process(es)",
               len(devices), jax.default_backend(), devices[0].device_kind,
               jax.local_device_count(), jax.process_count())


def _format_seconds(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


# A compiled call runs at most about this long, so that Ctrl-C and the time budget
# are answered within about a second.
_SECONDS_PER_CALL = 0.5


def _next_stop(step: int, config: ml_collections.ConfigDict) -> int:
  """The next step after ``step`` at which the host logs, evaluates, saves or finishes."""
  intervals = (config.log_every, config.eval_every, config.checkpoint_every)
  return min(config.num_steps, *(step // n * n + n for n in intervals))


class _Window:
  """The training metrics and time of the steps since the last progress line."""

  def __init__(self):
    self.sums: dict[str, np.ndarray] = {}
    self.steps = 0
    self.seconds = 0.0  # in the training calls only (not compiling, evaluating or saving)

  def add(self, sums: Mapping[str, np.ndarray], steps: int, seconds: float) -> None:
    """Adds a call's metric sums over its ``steps`` steps, and its wall time."""
    self.sums = {k: self.sums.get(k, 0.0) + v for k, v in sums.items()}
    self.steps += steps
    self.seconds += seconds

  def means(self) -> dict[str, np.ndarray]:
    """Each metric's mean per step, per network ``[K]``."""
    return {k: v / self.steps for k, v in self.sums.items()}

  def steps_per_second(self) -> float:
    return self.steps / max(self.seconds, 1e-9)


def _log_progress(writer: MetricWriter, window: _Window, step: int,
                  config: ml_collections.ConfigDict, metric: str) -> None:
  """Writes the training row of ``step`` (the means over ``window``) and logs its line."""
  per_network, rate = window.means(), window.steps_per_second()
  each = [{k: v[i] for k, v in per_network.items()} for i in range(config.num_networks)]
  averaged = {k: v.mean() for k, v in per_network.items()}
  writer.write(step, "train", {**metric_row(averaged, each), "steps_per_second": rate})
  logging.info(
      "step %d/%d | %.1f steps/s | loss %.4f | %s %.3f | N %.2f | rho %.2f | ETA %s",
      step, config.num_steps, rate, averaged["loss"], results.SHORT_NAMES[metric],
      averaged[metric], averaged["mean_steps"], averaged["mean_ponder"],
      _format_seconds((config.num_steps - step) / rate))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains ``config``'s task networks in ``workdir``, resuming from its checkpoint.

  Args:
    config: a config from ``tasks/configs`` (see ``tasks/configs/common.py``).
    workdir: where checkpoints, ``metrics.jsonl``, TensorBoard events,
      ``config.json`` and ``results.json`` go.

  Returns:
    The final results (also written to ``workdir/results.json``): the task,
    step, ``tau`` (ACT only), mode and metric names, then the evaluation of
    :func:`~tasks.evaluation.evaluate` pooled over the networks (for K > 1 the
    mean over networks; ``tau`` too), and ``networks``: network ``i``'s
    ``seed``, ``tau`` (ACT only) and evaluation.

  Raises:
    ConfigError: for an invalid config, an unwritable workdir, or a workdir
      whose checkpoint is of another config or unreadable.
    KeyboardInterrupt: after SIGINT (Ctrl-C) or SIGTERM (e.g. a cluster's
      preemption notice): training stops after the current compiled call and
      saves a checkpoint first, so the same call resumes from there.
  """
  _initialize_distributed(config)
  task = config_checks.validate(config)
  workdir = os.path.abspath(workdir)
  config_checks.check_workdir(workdir)
  config_checks.check_same_config(config, workdir)

  mesh = networks.data_mesh()
  graphdefs, state = networks.initial_networks(config, task, mesh)
  checkpoints = TrainingCheckpoints(config, workdir, mesh)
  step, state = checkpoints.resume(state)
  tracker = solved.SolvedTracker(
      config.solved_at, config.solved_evals, config.num_networks,
      solved.eval_history(workdir, task.metric, config.num_networks, step)
      if config.solved_at > 0 else ())
  if jax.process_count() > 1:  # every process has read metrics.jsonl before process 0 rewrites it
    multihost_utils.sync_global_devices("read the evaluation history")
  writer = MetricWriter(workdir, step)
  source = networks.network_batches(config, task, mesh)
  taus = networks.network_taus(config)
  on_every_device = NamedSharding(mesh, PartitionSpec())
  tau_per_network = networks.place(np.asarray(taus, np.float32), on_every_device)
  seeds = networks.place(source.seeds, on_every_device)
  scalar = lambda value: networks.place(np.int32(value), on_every_device)
  short = results.SHORT_NAMES[task.metric]

  evaluated: dict[int, evaluation.Evaluation] = {}  # the last evaluation, by its step

  def evaluate_and_write(step: int, state: networks.TrainState) -> evaluation.Evaluation:
    if step not in evaluated:
      result = evaluation.evaluate_networks(graphdefs.model, state.model, config, source)
      writer.write(step, "eval", metric_row(result.pooled, result.networks))
      tracker.add(step, [network[task.metric] for network in result.networks])
      evaluated.clear()
      evaluated[step] = result
    return evaluated[step]

  _log_devices()
  compile_start = time.perf_counter()
  run_steps = train_steps.lower(
      graphdefs, state, source.sampler_data, seeds, tau_per_network, scalar(0), scalar(1),
      sample=source.sampler(), metric=task.metric).compile()
  logging.info("compiled the training loop in %.1f s", time.perf_counter() - compile_start)

  window = _Window()
  steps_per_call = 1  # grows to what runs in _SECONDS_PER_CALL, at most config.steps_per_call
  with StopRequests(config.time_budget_minutes) as stop:
    while step < config.num_steps and not stop.requested and not tracker.all_solved:
      count = min(_next_stop(step, config) - step, steps_per_call)
      call_start = time.perf_counter()
      state, sums = run_steps(state, source.sampler_data, seeds, tau_per_network,
                              scalar(step), scalar(count))
      sums = jax.device_get(sums)
      seconds = time.perf_counter() - call_start
      window.add(sums, count, seconds)
      steps_per_call = min(config.steps_per_call,
                           max(1, int(count * _SECONDS_PER_CALL / max(seconds, 1e-9))))
      step += count
      if step % config.log_every == 0 or step == config.num_steps:
        _log_progress(writer, window, step, config, task.metric)
        window = _Window()
      if step % config.eval_every == 0 and step < config.num_steps:
        result = evaluate_and_write(step, state).pooled
        other_rules = results.pondernet_line(result)
        logging.info("eval at step %d | %s %.4f | N %.2f | rho %.2f%s", step, short,
                     result[task.metric], result["mean_steps"], result["mean_ponder"],
                     f" | {other_rules}" if other_rules else "")
        if tracker.all_solved:
          logging.info("solved at step %d (%s averaged over the last %d evaluations <= %g)",
                       step, short, config.solved_evals, config.solved_at)
      checkpoints.after_step(step, state)
      stop.agree()  # every process, after every call: they stop at the same step
    if stop.requested == TIME_BUDGET and window.steps:  # it ended between progress lines
      _log_progress(writer, window, step, config, task.metric)
    checkpoints.finish(step, state)
  if stop.interrupted:
    writer.close()
    logging.info("%s: stopped with a checkpoint at step %d", stop.requested, step)
    raise KeyboardInterrupt(stop.requested)

  result = evaluate_and_write(step, state)
  writer.close()
  final = results.run_results(config, task, step, taus, result,
                              results.figure_evaluation(config, graphdefs, state, mesh),
                              tracker.solved_steps)
  if networks.is_primary():
    results.write_results(workdir, final)
    if config.plot:
      from tasks import plots  # pylint: disable=g-import-not-at-top
      plots.plot_run(workdir)
  return final
