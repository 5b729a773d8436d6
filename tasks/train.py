"""One training loop for every task: ``train_and_evaluate(config, workdir)``.

Adam on the task loss plus ``tau * P`` (spec section 9 item 4: the task loss
summed over a sequence's target steps and slots, the ponder cost summed over
its input steps, both averaged over the batch), many steps per compiled call
(:func:`train_steps`: batches generated and metrics summed inside the call, the
host touched only between calls), periodic evaluation on a held-out stream, progress lines, metrics as JSONL and
TensorBoard events, orbax checkpoints that a rerun of the same command resumes
from, and ``results.json`` at the end.

Ensembles: ``config.num_networks = K`` networks train side by side in one
jit-compiled step, ``jax.vmap`` over their parameters, optimizer states,
batches and taus (traced values: one compilation serves every tau); data
parallel: the batch axis is sharded over all devices, parameters and optimizer
states replicated. ``tasks/networks.py`` builds and places the stacked
networks and their batches; ``tasks/evaluation.py`` scores them.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import act_jax
from act_jax import pondernet
from tasks import checkpoints, evaluation, models, networks, solved
from tasks.config_checks import ConfigError, check_finite
from tasks.configs import common
from tasks.data import Batch
from tasks.registry import BITS_PER_CHARACTER, Task, get_task

# Fields a resumed run may change; every other field must match the checkpoint's.
RESUMABLE_CHANGES = frozenset(
    {"num_steps", "time_budget_minutes", "log_every", "eval_every", "eval_batches",
     "checkpoint_every", "plot", "distributed", "steps_per_call", "restore_step",
     "figure_examples", "independent_examples", "remat", "chunk_steps", "solved_at",
     "solved_evals"})
# Fields added to the configs after runs were saved: a saved config.json without
# them holds their default values (common.base_config).
_ADDED_FIELDS = ("num_networks", "taus", "distributed", "steps_per_call", "restore_step",
                 "independent_examples", "solved_at", "solved_evals", "weight_init", "remat",
                 "chunk_steps", "halting", "beta", "lambda_p")
# Task options added after runs were saved, with the value those runs had.
_ADDED_TASK_OPTIONS = {"text": {"check_sha1": True}}


_SHORT_NAMES = {"sequence_error": "error", BITS_PER_CHARACTER: "bpc"}


def _positive_int(config: ml_collections.ConfigDict, name: str) -> None:
  value = config[name]
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"config.{name} must be a positive integer, got {value!r}")


def _non_negative_int(config: ml_collections.ConfigDict, name: str, zero_means: str) -> None:
  value = config[name]
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ConfigError(f"config.{name} must be an integer >= 0 ({zero_means}), got {value!r}")


def validate(config: ml_collections.ConfigDict) -> Task:
  """Checks ``config`` before anything is compiled; returns its task."""
  check_finite(config)
  try:
    task = get_task(config.task)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  for name in ("num_steps", "batch_size", "eval_batch_size", "eval_batches", "log_every",
               "eval_every", "checkpoint_every", "hidden_size", "steps_per_call", "solved_evals",
               "chunk_steps"):
    _positive_int(config, name)
  for name, default in common.base_config().items():  # on/off fields: True or False only
    if isinstance(default, bool) and not isinstance(config.get(name), bool):
      raise ConfigError(f"config.{name} must be True or False, got {config.get(name)!r}")
  solved_at = config.solved_at
  if isinstance(solved_at, bool) or not isinstance(solved_at, (int, float)) or not solved_at >= 0:
    raise ConfigError(f"config.solved_at must be >= 0 (0: train to num_steps), got {solved_at!r}")
  budget = config.time_budget_minutes
  if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
    raise ConfigError(f"config.time_budget_minutes must be >= 0 (0: none), got {budget!r}")
  if not isinstance(config.learning_rate, (int, float)) or not config.learning_rate > 0:
    raise ConfigError(f"config.learning_rate must be > 0, got {config.learning_rate!r}")
  try:
    act_jax.check_time_penalty(config.tau)
    act_jax.check_ponder_config(config.max_steps, config.epsilon, config.backend)
    pondernet.check_halting_rule(config.halting)
    pondernet.check_beta(config.beta)
    pondernet.check_prior(config.lambda_p)
  except ValueError as e:
    raise ConfigError(f"config: {e}") from e
  if config.halting == "pondernet" and config.mode != "act":
    raise ConfigError(f"config.halting='pondernet' needs config.mode='act', got {config.mode!r}")
  if config.mode not in models.MODES:
    raise ConfigError(f"config.mode must be one of {models.MODES}, got {config.mode!r}")
  if config.cell not in models.CELLS:
    raise ConfigError(f"config.cell must be one of {sorted(models.CELLS)}, got {config.cell!r}")
  if config.weight_init not in models.WEIGHT_INITS:
    raise ConfigError(f"config.weight_init must be one of {models.WEIGHT_INITS}, "
                      f"got {config.weight_init!r}")
  if config.weight_init == "tf_glorot" and config.cell != "tanh":
    raise ConfigError(f"config.weight_init='tf_glorot' needs config.cell='tanh', "
                      f"got {config.cell!r}")
  if config.mode == "repeat":
    _positive_int(config, "repeats")
  _check_networks(config)
  _non_negative_int(config, "restore_step", "0: the latest checkpoint")
  _non_negative_int(config, "figure_examples", "0: no figure set")
  if config.figure_examples and task.figure is None:
    raise ConfigError(f"config.figure_examples must be 0 for task {task.name!r} (it has no "
                      f"difficulty figure), got {config.figure_examples!r}")
  devices = jax.device_count()
  for name in ("batch_size", "eval_batch_size"):
    if config[name] % devices:
      raise ConfigError(
          f"config.{name} ({config[name]}) must be divisible by the number of devices "
          f"({devices}): every step shards the batch over all of them")
  try:
    task.check_options(config.task_options.to_dict())
  except (ValueError, OSError) as e:  # OSError: a missing or unreadable data file
    raise ConfigError(f"config.task_options: {e}") from e
  return task


def _check_networks(config: ml_collections.ConfigDict) -> None:
  """Checks ``num_networks`` and ``taus``: one non-negative tau per network, or none."""
  _positive_int(config, "num_networks")
  taus = config.taus
  if not isinstance(taus, (tuple, list)):
    raise ConfigError(f"config.taus must be a tuple of floats (or () for config.tau), "
                      f"got {taus!r}")
  if taus and len(taus) != config.num_networks:
    raise ConfigError(
        f"config.taus has {len(taus)} values {tuple(taus)!r} but config.num_networks is "
        f"{config.num_networks}: give one tau per network, or () for config.tau")
  for i, tau in enumerate(taus):
    try:
      act_jax.check_time_penalty(tau)
    except ValueError as e:
      raise ConfigError(f"config.taus[{i}]: {e}") from e


def _initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """``jax.distributed.initialize()`` for ``config.distributed``, before any other JAX call.

  With several processes (a multi-host GPU cluster or TPU pod, its environment
  read by ``jax.distributed.initialize``) the mesh spans every process's
  devices; every step's batch is generated inside the compiled call, each process
  computing its own devices' shards, and only process 0
  writes metrics, ``config.json`` and ``results.json`` (orbax coordinates the
  checkpoints). Tested with two processes on one machine
  (``tests/test_multiprocess.py``). ``time_budget_minutes`` is measured per
  process, so give several processes ``num_steps`` instead.
  """
  if not isinstance(config.distributed, bool):
    raise ConfigError(f"config.distributed must be True or False, got {config.distributed!r}")
  if config.distributed and not jax.distributed.is_initialized():
    jax.distributed.initialize()


def _is_primary() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return jax.process_index() == 0


def _check_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test.{os.getpid()}")  # one per process
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"workdir {workdir!r} is not writable: {e}") from e


def _saved_config(path: str) -> dict[str, Any]:
  """A run's ``config.json``, with the defaults of fields added since it was written."""
  with open(path) as f:
    saved = json.load(f)
  defaults = json.loads(common.base_config().to_json())
  options = {**_ADDED_TASK_OPTIONS.get(saved.get("task"), {}), **saved.get("task_options", {})}
  return {**{name: defaults[name] for name in _ADDED_FIELDS}, "figure_examples": 0, **saved,
          "task_options": options}


def _check_same_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Raises ConfigError if ``workdir`` holds a run of a different config."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json())
  if os.path.exists(path):
    saved = _saved_config(path)
    changed = sorted(k for k in set(saved) | set(current)
                     if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k))
    if changed:
      detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
      raise ConfigError(
          f"workdir {workdir!r} holds a run with another config ({detail}); "
          "use a new workdir or the same config")
  if _is_primary():  # atomically: the other processes of a multi-host run read it too
    with open(f"{path}.tmp", "w") as f:
      json.dump(current, f, indent=2, sort_keys=True)
    os.replace(f"{path}.tmp", path)


def _metric_names(metric: str) -> tuple[str, ...]:
  """The names of a training step's metrics (float32 scalars per network)."""
  return ("loss", "task_loss", "mean_steps", "mean_ponder", metric)


def _loss_fn(model: models.TaskModel, batch: Batch, tau: jax.Array, metric: str):
  """ACT: task loss + tau * ponder cost. PonderNet: the expected task loss
  ``sum_n p_n L(y_n)`` + beta * KL (``tau`` unused); mistakes, bits per
  character and the metrics' ``task_loss`` of the p-weighted mean logits."""
  if model.halting == "pondernet":
    out = model(batch.inputs, batch.input_mask, targets=(batch.targets, batch.target_mask),
                step_loss=evaluation.step_target_loss)
  else:
    out = model(batch.inputs, batch.input_mask)
  losses, wrong = evaluation.target_terms(out.logits, batch)
  task_loss = jnp.sum(losses, axis=(1, 2))
  if model.halting == "pondernet":
    loss = jnp.mean(jnp.sum(out.expected_loss, axis=1)) + pondernet.kl_penalty(
        out.stats, model.beta, model.lambda_p, batch.input_mask)
  elif model.mode == "act":
    loss = jnp.mean(task_loss) + act_jax.ponder_penalty(out.stats.ponder_cost, tau,
                                                        batch.input_mask)
  else:
    loss = jnp.mean(task_loss)
  steps, ponder = evaluation.ponder_terms(out.stats, batch)
  metrics = {"task_loss": jnp.mean(task_loss), "mean_steps": jnp.mean(steps),
             "mean_ponder": jnp.mean(ponder)}
  if metric == BITS_PER_CHARACTER:
    metrics[metric] = jnp.sum(losses) / jnp.sum(batch.target_mask) / jnp.log(2.0)
  else:
    metrics[metric] = evaluation.sequence_error(wrong, batch)
  return loss, metrics


def _network_step(graphdefs: networks.GraphDefs, metric: str, state: networks.TrainState, batch: Batch,
                  tau: jax.Array) -> tuple[networks.TrainState, dict[str, jax.Array]]:
  """One Adam step of one network (unstacked state, batch and tau)."""
  model = nnx.merge(graphdefs.model, state.model)
  optimizer = nnx.merge(graphdefs.optimizer, state.optimizer)
  grad_fn = nnx.value_and_grad(_loss_fn, has_aux=True)
  (loss, metrics), grads = grad_fn(model, batch, tau, metric)
  optimizer.update(model, grads)
  return networks.TrainState(nnx.state(model), nnx.state(optimizer)), {"loss": loss, **metrics}


def _networks_step(graphdefs: networks.GraphDefs, metric: str, state: networks.TrainState,
                   batch: Batch, taus: jax.Array
                   ) -> tuple[networks.TrainState, dict[str, jax.Array]]:
  """One Adam step of every network, vmapped over the leading network axis.

  One network is not vmapped: a vmapped ponder loop runs until the slowest network's
  batch halts and selects every carried value at every step, which costs even for one.
  """
  step = functools.partial(_network_step, graphdefs, metric)
  if taus.shape[0] > 1:
    return jax.vmap(step)(state, batch, taus)
  only = lambda tree: jax.tree.map(lambda x: x[0], tree)
  return jax.tree.map(lambda x: x[None], step(only(state), only(batch), taus[0]))


@functools.partial(jax.jit, static_argnames=("graphdefs", "metric", "mesh"))
def train_step(graphdefs: networks.GraphDefs, state: networks.TrainState, batch: Batch, taus: jax.Array, *,
               metric: str, mesh: Mesh) -> tuple[networks.TrainState, dict[str, jax.Array]]:
  """One Adam step of every network on a given batch (the loop runs :func:`train_steps`).

  Args:
    graphdefs: the networks' shared structure.
    state: their stacked state ``[K, ...]``, replicated on ``mesh``.
    batch: their batches ``[K, B, ...]``, sharded over ``B``.
    taus: their time penalties ``[K]``, traced: one compilation serves every tau.
    metric: the task's headline metric (also returned per step).
    mesh: the devices.

  Returns:
    The new state and each network's loss and metrics ``[K]``, replicated.
  """
  return networks.replicated(_networks_step(graphdefs, metric, state, batch, taus), mesh)


@functools.partial(jax.jit, static_argnames=("graphdefs", "sample", "metric"),
                   donate_argnames=("state",))
def train_steps(graphdefs: networks.GraphDefs, state: networks.TrainState, data: Any,
                seeds: jax.Array, taus: jax.Array, first_step: jax.Array, num_steps: jax.Array,
                *, sample: networks.StackedSampler, metric: str
                ) -> tuple[networks.TrainState, dict[str, jax.Array]]:
  """Steps ``first_step .. first_step + num_steps - 1`` of every network in one call.

  Each step's batches are generated inside the call (``sample``), and the
  metrics are summed there: the host is touched only between calls. The state
  is donated (updated in place).

  Args:
    graphdefs: the networks' shared structure.
    state: their stacked state ``[K, ...]``, replicated.
    data: what ``sample`` reads (``()``, or the text's train split), replicated.
    seeds: the networks' seeds ``[K]``.
    taus: their time penalties ``[K]``.
    first_step: int32 scalar, the step of the first batch.
    num_steps: int32 scalar >= 1, traced: one compilation serves every count.
    sample: the networks' batches of a step, see
      :meth:`~tasks.networks.NetworkBatches.sampler`.
    metric: the task's headline metric.

  Returns:
    The new state and each network's loss and metrics summed over the steps
    ``[K]``, replicated.
  """
  def one_step(state, step):
    return _networks_step(graphdefs, metric, state, sample(data, seeds, step), taus)

  def body(i, carry):
    state, sums = carry
    state, metrics = one_step(state, first_step + i)
    return state, jax.tree.map(jnp.add, sums, metrics)

  zeros = {name: jnp.zeros(seeds.shape, jnp.float32) for name in _metric_names(metric)}
  return networks.replicated(jax.lax.fori_loop(0, num_steps, body, (state, zeros)), sample.mesh)


def _rows_up_to(path: str, step: int) -> dict[tuple[int, str], str]:
  """The lines of ``metrics.jsonl`` (if any) of steps up to ``step``, the resumed checkpoint's
  (the later ones are trained again), by step and split."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    rows = [(json.loads(line), line) for line in f if line.strip()]
  return {(row["step"], row["split"]): line for row, line in rows if row["step"] <= step}


def strict_json(value: Any) -> Any:
  """``value`` with every NaN or infinite float replaced by None (JSON ``null``).

  ``results.json`` and ``metrics.jsonl`` are strict JSON (``json.dump`` would
  otherwise write ``NaN`` and ``Infinity``, which JSON parsers reject): a
  diverged run's loss shows as ``null``.
  """
  if isinstance(value, Mapping):
    return {k: strict_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [strict_json(v) for v in value]
  if isinstance(value, (float, np.floating)):
    return float(value) if np.isfinite(value) else None
  return value


class _MetricWriter:
  """Appends metrics to ``metrics.jsonl`` and TensorBoard event files (process 0 only).

  Args:
    workdir: the run's workdir.
    step: the step the run starts (or resumes) from: rows of later steps, written
      after the last checkpoint by an interrupted run, are dropped, and a row
      written again for a step and split (the final evaluation of a finished run
      that is resumed) replaces the old one, so that every row appears once.
  """

  def __init__(self, workdir: str, step: int):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._primary = _is_primary()
    if self._primary:
      self._path = os.path.join(workdir, "metrics.jsonl")
      self._earlier = _rows_up_to(self._path, step)
      self._rewrite()
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def _rewrite(self) -> None:
    """``metrics.jsonl`` holding the earlier rows only, open for appending."""
    with open(self._path, "w") as f:
      f.writelines(self._earlier.values())
    self._jsonl = open(self._path, "a")

  def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
    if not self._primary:
      return
    if self._earlier.pop((step, split), None) is not None:
      self._jsonl.close()
      self._rewrite()
    row = strict_json({"step": step, "split": split, **metrics})
    self._jsonl.write(json.dumps(row, allow_nan=False) + "\n")
    self._jsonl.flush()
    for k, v in metrics.items():
      self._tb.add_scalar(f"{split}/{k}", v, step)
    self._tb.flush()

  def close(self) -> None:
    if self._primary:
      self._jsonl.close()
      self._tb.close()


def _metric_row(pooled: Mapping[str, Any],
                networks: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """The scalar metrics: pooled (the mean over networks), and for K > 1 network i's as
  ``name/i``."""
  scalars = lambda metrics: {k: float(v) for k, v in metrics.items() if not isinstance(v, Mapping)}
  row = scalars(pooled)
  if len(networks) > 1:
    row.update({f"{k}/{i}": v for i, metrics in enumerate(networks)
                for k, v in scalars(metrics).items()})
  return row


def _checkpoint_layout(state: networks.TrainState, num_networks: int) -> dict[str, Any]:
  """What a checkpoint holds: the model and optimizer states as pure dicts.

  With one network, without the network axis: the layout of every
  single-network run, before ensembles too.
  """
  layout = {"model": nnx.to_pure_dict(state.model),
            "optimizer": nnx.to_pure_dict(state.optimizer)}
  return layout if num_networks > 1 else jax.tree.map(lambda x: x[0], layout)


def _restore(manager: ocp.CheckpointManager, state: networks.TrainState, num_networks: int,
             workdir: str, mesh: Mesh, step: int = 0, step_name: str = "config.restore_step"
             ) -> tuple[int, networks.TrainState]:
  """Checkpoint ``step``'s (0: the latest's) step and state; step 0 and ``state`` if
  there is no checkpoint. ConfigError (one line) if it cannot be read."""
  replicated = NamedSharding(mesh, PartitionSpec())
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                        _checkpoint_layout(state, num_networks))
  step, restored = checkpoints.restore(manager, target, workdir, step, step_name)
  if restored is None:
    return 0, state
  if num_networks == 1:
    restored = jax.tree.map(lambda x: np.asarray(x)[None], restored)
  nnx.replace_by_pure_dict(state.model, restored["model"])
  nnx.replace_by_pure_dict(state.optimizer, restored["optimizer"])
  return step, networks.place(state, replicated)


def load_trained_model(workdir: str, network: int = 0, step: int = 0
                       ) -> tuple[models.TaskModel, ml_collections.ConfigDict, int]:
  """A network of a training run's checkpoint, with its config and step.

  Args:
    workdir: the run's workdir.
    network: which network of an ensemble (0 for a single-network run).
    step: the checkpoint's step, one of the saved ones (a training run keeps
      its last two); 0: the latest.

  Returns:
    The model, the config of the single-network run it equals
    (:func:`network_config`: ``evaluate(model, config)`` evaluates it), and
    the checkpoint's step.

  Raises:
    ConfigError: if ``workdir`` holds no run or no checkpoint, ``step`` was
      not saved, the checkpoint is unreadable, or there is no such network.
  """
  workdir = os.path.abspath(workdir)  # orbax needs absolute paths
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ConfigError(f"{workdir!r} holds no training run (no config.json)")
  config = ml_collections.ConfigDict(_saved_config(path))
  task = validate(config)
  if not 0 <= network < config.num_networks:
    raise ConfigError(f"{workdir!r} holds networks 0..{config.num_networks - 1}, not {network}")
  mesh = networks.data_mesh()
  graphdefs, state = networks.initial_networks(config, task, mesh)
  manager = checkpoints.manager(workdir)
  step, state = _restore(manager, state, config.num_networks, workdir, mesh, step, "step")
  with checkpoints.quiet():
    manager.close()
  if not step:
    raise ConfigError(f"{workdir!r} holds no checkpoint yet")
  model = nnx.merge(graphdefs.model, jax.tree.map(lambda x: np.asarray(x)[network], state.model))
  return model, networks.network_config(config, network), step


class _StopRequests:
  """SIGINT and SIGTERM as a request that the training loop reads between calls.

  The loop then stops after the current call (about half a second at most),
  saves a checkpoint and raises KeyboardInterrupt, so that no signal lands
  inside a checkpoint save. A
  second SIGINT interrupts at once. Handlers are installed only in the main
  thread (the only one that receives signals) and restored on exit.
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.requested: str | None = None  # the name of the first signal received
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = signal.Signals(signum).name

  def __enter__(self) -> "_StopRequests":
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc_info) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains ``config``'s task networks in ``workdir``, resuming from its checkpoint.

  Args:
    config: a config from ``tasks/configs`` (see ``tasks/configs/common.py``).
    workdir: where checkpoints, ``metrics.jsonl``, TensorBoard events,
      ``config.json`` and ``results.json`` go.

  Returns:
    The final results (also written to ``workdir/results.json``): the task,
    step, ``tau``, mode and metric names, then the evaluation of
    :func:`evaluate` pooled over the networks (for K > 1 the mean over
    networks; ``tau`` too), and ``networks``: network ``i``'s ``seed``,
    ``tau`` and evaluation.

  Raises:
    ConfigError: for an invalid config, an unwritable workdir, or a workdir
      whose checkpoint is of another config or unreadable.
    KeyboardInterrupt: after SIGINT (Ctrl-C) or SIGTERM (e.g. a cluster's
      preemption notice): training stops after the current compiled call and
      saves a checkpoint first, so the same call resumes from there.
  """
  _initialize_distributed(config)
  task = validate(config)
  workdir = os.path.abspath(workdir)
  _check_workdir(workdir)
  _check_same_config(config, workdir)

  mesh = networks.data_mesh()
  graphdefs, state = networks.initial_networks(config, task, mesh)
  manager = checkpoints.manager(workdir, max_to_keep=2, create=True)
  step, state = _restore(manager, state, config.num_networks, workdir, mesh,
                         config.restore_step)
  if step:
    logging.info("resumed from the checkpoint at step %d", step)
  if config.restore_step:
    deleted = checkpoints.delete_after(manager, step)
    if deleted:
      logging.info("deleted the checkpoints after step %d: steps %s", step, deleted)
  tracker = solved.SolvedTracker(
      config.solved_at, config.solved_evals, config.num_networks,
      solved.eval_history(workdir, task.metric, config.num_networks, step)
      if config.solved_at > 0 else ())
  if jax.process_count() > 1:  # every process has read metrics.jsonl before process 0 rewrites it
    multihost_utils.sync_global_devices("read the evaluation history")
  writer = _MetricWriter(workdir, step)
  source = networks.network_batches(config, task, mesh)
  taus = networks.network_taus(config)
  on_every_device = NamedSharding(mesh, PartitionSpec())
  tau_per_network = networks.place(np.asarray(taus, np.float32), on_every_device)
  seeds = networks.place(source.seeds, on_every_device)
  scalar = lambda value: networks.place(np.int32(value), on_every_device)
  short = _SHORT_NAMES[task.metric]

  def save(step: int, state: networks.TrainState) -> None:
    manager.save(step, args=ocp.args.StandardSave(
        _checkpoint_layout(state, config.num_networks)))

  evaluated: dict[int, evaluation.Evaluation] = {}  # the last evaluation, by its step

  def evaluate_and_write(step: int, state: networks.TrainState) -> evaluation.Evaluation:
    if step not in evaluated:
      result = evaluation.evaluate_networks(graphdefs.model, state.model, config, source)
      writer.write(step, "eval", _metric_row(result.pooled, result.networks))
      tracker.add(step, [network[task.metric] for network in result.networks])
      evaluated.clear()
      evaluated[step] = result
    return evaluated[step]

  compile_start = time.perf_counter()
  run_steps = train_steps.lower(
      graphdefs, state, source.sampler_data, seeds, tau_per_network, scalar(0), scalar(1),
      sample=source.sampler(), metric=task.metric).compile()
  logging.info("compiled the training loop in %.1f s", time.perf_counter() - compile_start)

  start_time, window = time.time(), _Window()
  steps_per_call = 1  # grows to what runs in _SECONDS_PER_CALL, at most config.steps_per_call
  out_of_time = lambda: (config.time_budget_minutes > 0
                         and time.time() - start_time > 60 * config.time_budget_minutes)
  with _StopRequests() as stop:
    while (step < config.num_steps and not out_of_time() and not stop.requested
           and not tracker.all_solved):
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
      if step % config.log_every == 0 or step == config.num_steps or out_of_time():
        per_network, rate = window.means(), window.steps_per_second()
        window = _Window()
        each = [{k: v[i] for k, v in per_network.items()} for i in range(config.num_networks)]
        averaged = {k: v.mean() for k, v in per_network.items()}
        writer.write(step, "train", {**_metric_row(averaged, each), "steps_per_second": rate})
        logging.info(
            "step %d/%d | %.1f steps/s | loss %.4f | %s %.3f | N %.2f | rho %.2f | ETA %s",
            step, config.num_steps, rate, averaged["loss"], short, averaged[task.metric],
            averaged["mean_steps"], averaged["mean_ponder"],
            _format_seconds((config.num_steps - step) / rate))
      if step % config.eval_every == 0 and step < config.num_steps:
        result = evaluate_and_write(step, state).pooled
        logging.info("eval at step %d | %s %.4f | N %.2f | rho %.2f", step, short,
                     result[task.metric], result["mean_steps"], result["mean_ponder"])
        if tracker.all_solved:
          logging.info("solved at step %d (%s averaged over the last %d evaluations <= %g)",
                       step, short, config.solved_evals, config.solved_at)
      if step % config.checkpoint_every == 0:
        save(step, state)
    save(step, state)
    manager.wait_until_finished()
    manager.close()
  if stop.requested:
    writer.close()
    logging.info("%s: stopped with a checkpoint at step %d", stop.requested, step)
    raise KeyboardInterrupt(stop.requested)

  result = evaluate_and_write(step, state)
  writer.close()
  results = _results(config, task, step, taus, result, _figure(config, graphdefs, state, mesh),
                     tracker.solved_steps)
  if _is_primary():
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(strict_json(results), f, indent=2, allow_nan=False)
    if config.plot:
      from tasks import plots  # pylint: disable=g-import-not-at-top
      plots.plot_run(workdir)
  return results


def _figure(config: ml_collections.ConfigDict, graphdefs: networks.GraphDefs,
            state: networks.TrainState, mesh: Mesh) -> evaluation.Evaluation | None:
  """The networks' evaluation on the paper's difficulty-figure examples, if configured."""
  if not config.figure_examples:
    return None
  return evaluation.evaluate_figure(graphdefs.model, state.model, config, mesh)


def _results(config: ml_collections.ConfigDict, task: Task, step: int, taus: Sequence[float],
             result: evaluation.Evaluation,
             figure: evaluation.Evaluation | None,
             solved_steps: Sequence[int | None]) -> dict[str, Any]:
  """``results.json``: the held-out stream's evaluation, pooled and per network, and
  under ``figure`` that of the difficulty figure's examples. With ``config.solved_at``
  set, ``solved_step`` is each network's (``tasks/solved.py``; None: not solved), the
  last of them at the top level (None unless every network was solved)."""
  with_figure = lambda summary, i: (
      {**summary, "figure": (figure.pooled if i is None else figure.networks[i])}
      if figure else summary)
  solved = lambda step: {"solved_step": step} if config.solved_at > 0 else {}
  pondernet_prior = ({"beta": config.beta, "lambda_p": config.lambda_p}
                     if config.halting == "pondernet" else {})
  return {"task": config.task, "step": step, "tau": float(np.mean(taus)),
          "act": config.mode == "act", "mode": config.mode, "halting": config.halting,
          **pondernet_prior, "metric": task.metric,
          "difficulty": task.difficulty,
          **solved(None if None in solved_steps else max(solved_steps)),
          **with_figure(result.pooled, None),
          "networks": [with_figure({"seed": config.seed + i, "tau": tau, **solved(solved_steps[i]),
                                    **network}, i)
                       for i, (tau, network) in enumerate(zip(taus, result.networks))]}


def _metric_line(metrics: Mapping[str, Any], metric: str) -> str:
  """The headline metric, mean N and mean rho of one result."""
  if metric == BITS_PER_CHARACTER:
    head = (f"held-out {metrics['bits_per_character']:.3f} bpc (train "
            f"{metrics['train_bits_per_character']:.3f}), ")
  else:
    head = f"sequence error {metrics['sequence_error']:.4f}, "
  return head + f"mean N {metrics['mean_steps']:.2f}, mean rho {metrics['mean_ponder']:.2f}"


def summary_table(results: Mapping[str, Any]) -> str:
  """A readable multi-line summary of ``results.json``; one line per network of an ensemble.

  The table by difficulty is that of the difficulty figure's examples if the
  run has them (``figure``), else that of the held-out stream.
  """
  metric = results.get("metric", "sequence_error")
  members = results.get("networks", [])
  ensemble = len(members) > 1
  if results.get("halting") == "pondernet":
    setting = f"PonderNet, beta={results['beta']:g}, lambda_p={results['lambda_p']:g}"
  else:
    setting = f"tau={results['tau']:g}"
  if ensemble:
    setting = f"{len(members)} networks, mean" + (
        f", {setting}" if results.get("halting") == "pondernet" else "")
  lines = [f"{results['task']} ({results['mode']}, {setting}) after {results['step']} steps, "
           "held-out stream: " + _metric_line(results, metric)]
  if "solved_step" in results:
    solved_step = results["solved_step"]
    lines.append(f"  solved at step {solved_step}" if solved_step is not None else
                 f"  not solved in {results['step']} steps")
  if results.get("unscored_sequences"):
    lines.append(f"  ({results['unscored_sequences']} sequences without a target are not "
                 "counted)")
  if ensemble:
    lines += [f"  network {i} (seed {n['seed']}, tau={n['tau']:g}): {_metric_line(n, metric)}"
              for i, n in enumerate(members)]
  table, difficulty = results, results["difficulty"]
  if "figure" in results:
    table, difficulty = results["figure"], results["figure"]["difficulty"]
    lines.append(f"the paper's difficulty figure, {table['examples_per_level']} examples per "
                 f"level: {_metric_line(table, metric)}")
  width = max(24, len(difficulty))
  lines.append(f"  {difficulty:>{width}s} {'count':>8s} {_SHORT_NAMES[metric]:>7s} "
               f"{'N':>6s} {'rho':>6s}")
  rows = table["by_difficulty"].items()
  if metric != BITS_PER_CHARACTER:
    rows = sorted(rows, key=lambda kv: int(kv[0]))
  for d, row in rows:
    lines.append(f"  {d!s:>{width}s} {row['count']:>8d} {row[metric]:>7.3f} "
                 f"{row['mean_steps']:>6.2f} {row['mean_ponder']:>6.2f}")
  return "\n".join(lines)
