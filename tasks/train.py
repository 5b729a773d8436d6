"""One training loop for every task: ``train_and_evaluate(config, workdir)``.

Adam on the task loss plus ``tau * P`` (spec section 9 item 4: the task loss
summed over a sequence's target steps and slots, the ponder cost summed over
its input steps, both averaged over the batch), a jit-compiled step, periodic
evaluation on a held-out stream, progress lines, metrics as JSONL and
TensorBoard events, orbax checkpoints that a rerun of the same command resumes
from, and ``results.json`` at the end.

Ensembles: ``config.num_networks = K`` networks train side by side in one
jit-compiled step, ``jax.vmap`` over their parameters, optimizer states,
batches and taus (traced values: one compilation serves every tau). Network
``i`` is the single-network run of seed ``config.seed + i`` and tau
``config.taus[i]`` (or ``config.tau``): see :func:`network_config`.

Data parallel: every step shards the batch axis over all devices (a 1-D
:class:`~jax.sharding.Mesh` with the axis ``"data"``); parameters and
optimizer states are replicated, and XLA sums the gradients across devices.
On one device this is the plain single-device step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import act_jax
from tasks import models
from tasks.configs import common
from tasks.data import Batch, batch_stream_key, text
from tasks.registry import BITS_PER_CHARACTER, BatchSource, GeneratedBatches, Task, get_task

# Fields a resumed run may change; every other field must match the checkpoint's.
RESUMABLE_CHANGES = frozenset(
    {"num_steps", "time_budget_minutes", "log_every", "eval_every", "eval_batches",
     "checkpoint_every", "plot", "distributed"})
# Fields added to the configs after runs were saved: a saved config.json without
# them holds their default values (common.base_config).
_ADDED_FIELDS = ("num_networks", "taus", "distributed")
DATA_AXIS = "data"  # the mesh axis that the batch is sharded over


_SHORT_NAMES = {"sequence_error": "error", BITS_PER_CHARACTER: "bpc"}


class ConfigError(ValueError):
  """The config, or its match with a workdir's checkpoint, is invalid."""


def _positive_int(config: ml_collections.ConfigDict, name: str) -> None:
  value = config[name]
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"config.{name} must be a positive integer, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> Task:
  """Checks ``config`` before anything is compiled; returns its task."""
  try:
    task = get_task(config.task)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  for name in ("num_steps", "batch_size", "eval_batch_size", "eval_batches", "log_every",
               "eval_every", "checkpoint_every", "hidden_size"):
    _positive_int(config, name)
  budget = config.time_budget_minutes
  if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
    raise ConfigError(f"config.time_budget_minutes must be >= 0 (0: none), got {budget!r}")
  if not isinstance(config.learning_rate, (int, float)) or not config.learning_rate > 0:
    raise ConfigError(f"config.learning_rate must be > 0, got {config.learning_rate!r}")
  try:
    act_jax.check_time_penalty(config.tau)
    act_jax.check_ponder_config(config.max_steps, config.epsilon, config.backend)
  except ValueError as e:
    raise ConfigError(f"config: {e}") from e
  if config.mode not in models.MODES:
    raise ConfigError(f"config.mode must be one of {models.MODES}, got {config.mode!r}")
  if config.cell not in models.CELLS:
    raise ConfigError(f"config.cell must be one of {sorted(models.CELLS)}, got {config.cell!r}")
  if config.mode == "repeat":
    _positive_int(config, "repeats")
  _check_networks(config)
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
  devices; each process computes the whole batch of a step (a pure function of
  seed and step) and places only its own devices' shards, and only process 0
  writes metrics, ``config.json`` and ``results.json`` (orbax coordinates the
  checkpoints). Tested: the plumbing of this flag, and sharding over several
  devices of one process. Not tested: several processes. ``time_budget_minutes``
  is measured per process, so give several processes ``num_steps`` instead.
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
    probe = os.path.join(workdir, ".write_test")
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
  return {**{name: defaults[name] for name in _ADDED_FIELDS}, **saved}


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
  if _is_primary():
    with open(path, "w") as f:
      json.dump(current, f, indent=2, sort_keys=True)


def network_config(config: ml_collections.ConfigDict, index: int) -> ml_collections.ConfigDict:
  """Network ``index`` of ``config``'s ensemble as the single-network run it equals.

  Returns:
    A copy of ``config`` with seed ``config.seed + index``, tau
    ``config.taus[index]`` (or ``config.tau`` if ``taus`` is empty) and one
    network.
  """
  single = ml_collections.ConfigDict(config.to_dict())
  single.seed = config.seed + index
  single.tau = float(config.taus[index]) if config.taus else float(config.tau)
  single.num_networks = 1
  single.taus = ()
  return single


def build_model(config: ml_collections.ConfigDict, task: Task) -> models.TaskModel:
  num_classes = task.num_classes(config.task_options)
  per_slot = 1 if num_classes == 2 else num_classes  # binary: one sigmoid unit
  return models.TaskModel(
      input_size=task.input_size(config.task_options), hidden_size=config.hidden_size,
      output_size=task.target_slots * per_slot, cell=config.cell, mode=config.mode,
      repeats=config.repeats, max_steps=config.max_steps, epsilon=config.epsilon,
      halting_bias=config.halting_bias, backend=config.backend,
      rngs=nnx.Rngs(config.seed))


def _target_terms(logits: jax.Array, batch: Batch):
  """Per-target losses (nats) and mistakes ``[B, T, slots]``, zero off target."""
  b, t, slots = batch.targets.shape
  logits = logits.reshape(b, t, slots, -1)
  if logits.shape[-1] == 1:  # binary: sigmoid unit, binary cross-entropy
    logit = logits[..., 0]
    losses = optax.sigmoid_binary_cross_entropy(logit, batch.targets.astype(jnp.float32))
    predictions = (logit > 0).astype(jnp.int32)
  else:
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch.targets)
    predictions = jnp.argmax(logits, axis=-1)
  on_target = batch.target_mask[..., None]
  return jnp.where(on_target, losses, 0.0), on_target & (predictions != batch.targets)


def _per_step_ponder(stats: act_jax.PonderStats):
  return stats.steps.astype(jnp.float32), stats.ponder_cost


def _ponder_terms(stats: act_jax.PonderStats, batch: Batch):
  """Per-example mean N and mean rho over the valid input steps."""
  length = jnp.maximum(jnp.sum(batch.input_mask, axis=1), 1)
  mean = lambda x: jnp.sum(jnp.where(batch.input_mask, x, 0.0), axis=1) / length
  return tuple(mean(x) for x in _per_step_ponder(stats))


def _loss_fn(model: models.TaskModel, batch: Batch, tau: jax.Array, metric: str):
  out = model(batch.inputs, batch.input_mask)
  losses, wrong = _target_terms(out.logits, batch)
  task_loss = jnp.sum(losses, axis=(1, 2))
  loss = jnp.mean(task_loss)
  if model.mode == "act":
    loss = loss + act_jax.ponder_penalty(out.stats.ponder_cost, tau, batch.input_mask)
  steps, ponder = _ponder_terms(out.stats, batch)
  metrics = {"task_loss": jnp.mean(task_loss), "mean_steps": jnp.mean(steps),
             "mean_ponder": jnp.mean(ponder)}
  if metric == BITS_PER_CHARACTER:
    metrics[metric] = jnp.sum(losses) / jnp.sum(batch.target_mask) / jnp.log(2.0)
  else:
    metrics[metric] = jnp.mean(jnp.any(wrong, axis=(1, 2)))
  return loss, metrics


class TrainState(NamedTuple):
  """The networks' variables, every leaf stacked on a leading network axis ``[K, ...]``.

  Attributes:
    model: the :class:`~tasks.models.TaskModel` parameters (``nnx.split``).
    optimizer: the ``nnx.Optimizer`` (Adam) states.
  """

  model: nnx.State
  optimizer: nnx.State


class GraphDefs(NamedTuple):
  """The static structure of a network and of its optimizer, shared by all networks."""

  model: nnx.GraphDef
  optimizer: nnx.GraphDef


def data_mesh() -> Mesh:
  """The 1-D mesh of all devices (of all processes) that batches are sharded over."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def _put(tree: Any, sharding: NamedSharding) -> Any:
  """Places every leaf of ``tree`` (host or device arrays) as a global array of ``sharding``.

  Every process holds the whole value (the replicated state, or a batch that is
  a pure function of seed and step) and places the shards of its own devices.
  """
  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(put, tree)


def _replicated(tree: Any, mesh: Mesh) -> Any:
  """``tree`` constrained to be whole on every device (readable by every process)."""
  return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec()))


@dataclasses.dataclass(frozen=True)
class NetworkBatches:
  """The networks' batches, stacked ``[K, B, ...]`` and sharded over the batch axis.

  Attributes:
    sources: network ``i``'s :class:`~tasks.registry.BatchSource`.
    mesh: the devices, from :func:`data_mesh`.
  """

  sources: tuple[BatchSource, ...]
  mesh: Mesh

  def _stacked(self, batches: Sequence[Batch]) -> Batch:
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *jax.device_get(list(batches)))
    return _put(stacked, NamedSharding(self.mesh, PartitionSpec(None, DATA_AXIS)))

  def _generated(self, step: int, split: str) -> Batch | None:
    """Generated sources: all networks' batches in one jitted call, on the devices."""
    first = self.sources[0]
    if not isinstance(first, GeneratedBatches):
      return None
    batch_size = first.batch_size if split == "train" else first.eval_batch_size
    generate = _stacked_generator(first.generate, batch_size, first.options, split,
                                  NamedSharding(self.mesh, PartitionSpec(None, DATA_AXIS)))
    return generate(np.asarray([source.seed for source in self.sources], np.int32),
                    np.int32(step))

  def train(self, step: int) -> Batch:
    """Every network's training batch of ``step``."""
    generated = self._generated(step, "train")
    if generated is not None:
      return generated
    return self._stacked([source.train(step) for source in self.sources])

  def held_out(self, max_batches: int, **options) -> Iterator[Batch]:
    """Every network's evaluation batches (``options``: the sources' ``held_out``'s)."""
    if isinstance(self.sources[0], GeneratedBatches):
      for i in range(max_batches):
        yield self._generated(i, "eval")
      return
    streams = [source.held_out(max_batches, **options) for source in self.sources]
    for batches in zip(*streams):
      yield self._stacked(batches)


@functools.lru_cache(maxsize=None)
def _stacked_generator(generate: Callable[..., Batch], batch_size: int,
                       options: tuple[tuple[str, Any], ...], split: str,
                       sharding: NamedSharding) -> Callable[[np.ndarray, np.ndarray], Batch]:
  """``(seeds [K], step) -> Batch [K, B, ...]`` as one jitted call, placed with ``sharding``.

  Network ``i``'s batch is its own source's: the generator at
  ``batch_stream_key(seeds[i], step, split)``.
  """
  def stacked(seeds: jax.Array, step: jax.Array) -> Batch:
    keys = jax.vmap(lambda seed: batch_stream_key(seed, step, split))(seeds)
    return jax.vmap(lambda key: generate(key, batch_size, **dict(options)))(keys)

  return jax.jit(stacked, out_shardings=sharding)


@functools.lru_cache(maxsize=None)
def _adam(learning_rate: float) -> optax.GradientTransformation:
  """One Adam per learning rate: equal optimizer graphdefs share compiled steps."""
  return optax.adam(learning_rate)


def _network(config: ml_collections.ConfigDict,
             task: Task) -> tuple[models.TaskModel, nnx.Optimizer]:
  """A freshly initialised model of ``config`` and its Adam optimizer."""
  model = build_model(config, task)
  return model, nnx.Optimizer(model, _adam(config.learning_rate), wrt=nnx.Param)


def initial_networks(config: ml_collections.ConfigDict, task: Task,
                     mesh: Mesh) -> tuple[GraphDefs, TrainState]:
  """``config``'s K freshly initialised networks (seed ``config.seed + i``) and optimizers.

  Returns:
    Their shared graphdefs, and their state stacked and replicated on ``mesh``.
  """
  networks = [_network(network_config(config, i), task) for i in range(config.num_networks)]
  graphdefs = GraphDefs(*(nnx.graphdef(x) for x in networks[0]))
  states = [TrainState(*(nnx.state(x) for x in network)) for network in networks]
  stacked = jax.tree.map(lambda *xs: np.stack(xs), *states)
  return graphdefs, _put(stacked, NamedSharding(mesh, PartitionSpec()))


def _taus(config: ml_collections.ConfigDict) -> list[float]:
  """Network ``i``'s tau: ``config.taus[i]``, or ``config.tau`` if ``taus`` is empty."""
  return [network_config(config, i).tau for i in range(config.num_networks)]


def network_batches(config: ml_collections.ConfigDict, task: Task, mesh: Mesh) -> NetworkBatches:
  """The batches of ``config``'s networks: network ``i`` draws those of seed ``seed + i``."""
  return NetworkBatches(
      tuple(task.source(network_config(config, i)) for i in range(config.num_networks)), mesh)


def _network_step(graphdefs: GraphDefs, metric: str, state: TrainState, batch: Batch,
                  tau: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step of one network (unstacked state, batch and tau)."""
  model = nnx.merge(graphdefs.model, state.model)
  optimizer = nnx.merge(graphdefs.optimizer, state.optimizer)
  grad_fn = nnx.value_and_grad(_loss_fn, has_aux=True)
  (loss, metrics), grads = grad_fn(model, batch, tau, metric)
  optimizer.update(model, grads)
  return TrainState(nnx.state(model), nnx.state(optimizer)), {"loss": loss, **metrics}


@functools.partial(jax.jit, static_argnames=("graphdefs", "metric", "mesh"))
def train_step(graphdefs: GraphDefs, state: TrainState, batch: Batch, taus: jax.Array, *,
               metric: str, mesh: Mesh) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step of every network, vmapped over the leading network axis.

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
  step = functools.partial(_network_step, graphdefs, metric)
  return _replicated(jax.vmap(step)(state, batch, taus), mesh)


def _sequence_outputs(model: models.TaskModel, batch: Batch) -> dict[str, jax.Array]:
  """Per example: any mistake, mean N and rho, difficulty."""
  out = model(batch.inputs, batch.input_mask)
  _, wrong = _target_terms(out.logits, batch)
  steps, ponder = _ponder_terms(out.stats, batch)
  return {"wrong": jnp.any(wrong, axis=(1, 2)), "steps": steps, "ponder": ponder,
          "difficulty": batch.difficulty}


def _character_outputs(model: models.TaskModel, batch: Batch) -> dict[str, jax.Array]:
  """Per input step: loss, mistake, N and rho, and the input byte and target mask."""
  out = model(batch.inputs, batch.input_mask)
  losses, wrong = _target_terms(out.logits, batch)
  steps, ponder = _per_step_ponder(out.stats)
  return {"loss": losses[..., 0], "wrong": wrong[..., 0], "steps": steps, "ponder": ponder,
          "inputs": batch.inputs, "mask": batch.target_mask}


@functools.partial(jax.jit, static_argnames=("graphdef", "metric", "mesh"))
def _eval_step(graphdef: nnx.GraphDef, model_state: nnx.State, batch: Batch, *, metric: str,
               mesh: Mesh) -> dict[str, jax.Array]:
  """Every network's outputs ``[K, B, ...]`` on its batch, replicated."""
  outputs = _character_outputs if metric == BITS_PER_CHARACTER else _sequence_outputs
  per_network = lambda state, batch: outputs(nnx.merge(graphdef, state), batch)
  return _replicated(jax.vmap(per_network)(model_state, batch), mesh)


def _sequence_summary(per_example: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """Sequence error, mean N and mean rho per example, and by difficulty."""
  by_difficulty = {}
  for d in np.unique(per_example["difficulty"]):
    sel = per_example["difficulty"] == d
    by_difficulty[int(d)] = {
        "count": int(sel.sum()),
        "sequence_error": float(per_example["wrong"][sel].mean()),
        "mean_steps": float(per_example["steps"][sel].mean()),
        "mean_ponder": float(per_example["ponder"][sel].mean()),
    }
  return {"sequence_error": float(per_example["wrong"].mean()),
          "mean_steps": float(per_example["steps"].mean()),
          "mean_ponder": float(per_example["ponder"].mean()),
          "by_difficulty": by_difficulty}


def _predicted_characters(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The predicted bytes of :func:`_character_outputs`, with their input's class."""
  mask = outputs["mask"]
  return {"loss": outputs["loss"][mask], "wrong": outputs["wrong"][mask],
          "steps": outputs["steps"][mask], "ponder": outputs["ponder"][mask],
          "class": text.character_class(outputs["inputs"][mask])}


def _character_summary(per_char: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """Bits per character, error rate, N and rho per predicted byte, and by class.

  Each row of ``by_difficulty`` holds the bytes whose *input* character is of
  that class (the step that reads a space, say, predicts the byte after it).
  """
  summary = lambda sel: {
      "count": int(sel.sum()),
      "bits_per_character": float(per_char["loss"][sel].mean() / np.log(2)),
      "error_rate": float(per_char["wrong"][sel].mean()),
      "mean_steps": float(per_char["steps"][sel].mean()),
      "mean_ponder": float(per_char["ponder"][sel].mean())}
  by_class = {name: summary(per_char["class"] == i)
              for i, name in enumerate(text.CHARACTER_CLASSES) if np.any(per_char["class"] == i)}
  return {**summary(np.ones(per_char["loss"].shape, bool)), "by_difficulty": by_class}


class Evaluation(NamedTuple):
  """Results of the networks of a run.

  Attributes:
    pooled: over the examples of all networks together (each network scores
      as many, so its averages are the means over networks; counts add up).
    networks: network ``i``'s own.
  """

  pooled: dict[str, Any]
  networks: list[dict[str, Any]]


def _evaluate_batches(graphdef: nnx.GraphDef, model_state: nnx.State, batches: Iterable[Batch],
                      metric: str, mesh: Mesh) -> Evaluation:
  """Evaluates stacked networks on their stacked ``batches``."""
  parts = [jax.device_get(_eval_step(graphdef, model_state, batch, metric=metric, mesh=mesh))
           for batch in batches]
  outputs = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
  if metric == BITS_PER_CHARACTER:
    examples, summarize = _predicted_characters, _character_summary
  else:
    examples, summarize = dict, _sequence_summary
  num_networks = len(next(iter(outputs.values())))
  networks = [examples({k: v[i] for k, v in outputs.items()}) for i in range(num_networks)]
  pooled = {k: np.concatenate([n[k] for n in networks]) for k in networks[0]}
  return Evaluation(summarize(pooled), [summarize(n) for n in networks])


def _evaluate_networks(graphdef: nnx.GraphDef, model_state: nnx.State,
                       config: ml_collections.ConfigDict, source: NetworkBatches) -> Evaluation:
  """Evaluates stacked networks on up to ``config.eval_batches`` held-out batches each."""
  metric = get_task(config.task).metric
  run = lambda **options: _evaluate_batches(
      graphdef, model_state, source.held_out(config.eval_batches, **options), metric,
      source.mesh)
  held_out = run()
  if metric != BITS_PER_CHARACTER:
    return held_out
  seen = run(split="train")
  train_bpc = lambda held, seen: {**held, "train_bits_per_character": seen[metric]}
  return Evaluation(train_bpc(held_out.pooled, seen.pooled),
                    [train_bpc(*pair) for pair in zip(held_out.networks, seen.networks)])


def evaluate(model: models.TaskModel, config: ml_collections.ConfigDict,
             source: BatchSource | None = None) -> dict[str, Any]:
  """Evaluates one network on up to ``config.eval_batches`` held-out batches.

  Synthetic tasks: sequence error, mean N and mean rho, and by difficulty.
  Text: bits per character, error rate, mean N and rho per byte, by input
  character class, and ``train_bits_per_character`` on as many bytes from the
  start of the train split. ``count`` (text) is the number of bytes scored.

  Args:
    model: the network.
    config: its run's config (of one network: see :func:`network_config`).
    source: where its batches come from (default: ``config``'s task's).
  """
  mesh = data_mesh()
  graphdef, model_state = nnx.split(model)
  stacked = _put(jax.tree.map(lambda x: np.asarray(x)[None], model_state),
                 NamedSharding(mesh, PartitionSpec()))
  sources = NetworkBatches((source or get_task(config.task).source(config),), mesh)
  return _evaluate_networks(graphdef, stacked, config, sources).pooled


class _MetricWriter:
  """Appends metrics to ``metrics.jsonl`` and TensorBoard event files (process 0 only)."""

  def __init__(self, workdir: str):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._primary = _is_primary()
    if self._primary:
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
    if not self._primary:
      return
    self._jsonl.write(json.dumps({"step": step, "split": split, **metrics}) + "\n")
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


def _checkpoint_layout(state: TrainState, num_networks: int) -> dict[str, Any]:
  """What a checkpoint holds: the model and optimizer states as pure dicts.

  With one network, without the network axis: the layout of every
  single-network run, before ensembles too.
  """
  layout = {"model": nnx.to_pure_dict(state.model),
            "optimizer": nnx.to_pure_dict(state.optimizer)}
  return layout if num_networks > 1 else jax.tree.map(lambda x: x[0], layout)


def _restore(manager: ocp.CheckpointManager, state: TrainState, num_networks: int,
             workdir: str, mesh: Mesh) -> tuple[int, TrainState]:
  """The latest checkpoint's step and state (step 0 and ``state`` if there is none)."""
  step = manager.latest_step()
  if step is None:
    return 0, state
  replicated = NamedSharding(mesh, PartitionSpec())
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                        _checkpoint_layout(state, num_networks))
  try:
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as e:  # orbax raises many types for unreadable or mismatched files
    raise ConfigError(
        f"the checkpoint at step {step} in {workdir!r} is corrupt or does not match the "
        f"config: {type(e).__name__}: {e}") from e
  if num_networks == 1:
    restored = jax.tree.map(lambda x: np.asarray(x)[None], restored)
  nnx.replace_by_pure_dict(state.model, restored["model"])
  nnx.replace_by_pure_dict(state.optimizer, restored["optimizer"])
  return step, _put(state, replicated)


def load_trained_model(workdir: str, network: int = 0
                       ) -> tuple[models.TaskModel, ml_collections.ConfigDict, int]:
  """A network of a training run's latest checkpoint, with its config and step.

  Args:
    workdir: the run's workdir.
    network: which network of an ensemble (0 for a single-network run).

  Returns:
    The model, the config of the single-network run it equals
    (:func:`network_config`: ``evaluate(model, config)`` evaluates it), and
    the checkpoint's step.

  Raises:
    ConfigError: if ``workdir`` holds no run or no checkpoint, the checkpoint
      is unreadable, or there is no such network.
  """
  workdir = os.path.abspath(workdir)  # orbax needs absolute paths
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ConfigError(f"{workdir!r} holds no training run (no config.json)")
  config = ml_collections.ConfigDict(_saved_config(path))
  task = validate(config)
  if not 0 <= network < config.num_networks:
    raise ConfigError(f"{workdir!r} holds networks 0..{config.num_networks - 1}, not {network}")
  mesh = data_mesh()
  graphdefs, state = initial_networks(config, task, mesh)
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  step, state = _restore(manager, state, config.num_networks, workdir, mesh)
  manager.close()
  if not step:
    raise ConfigError(f"{workdir!r} holds no checkpoint yet")
  model = nnx.merge(graphdefs.model, jax.tree.map(lambda x: np.asarray(x)[network], state.model))
  return model, network_config(config, network), step


class _StopRequests:
  """SIGINT and SIGTERM as a request that the training loop reads between steps.

  The loop then stops after the current step, saves a checkpoint and raises
  KeyboardInterrupt, so that no signal lands inside a checkpoint save. A
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
      preemption notice): training stops after the current step and saves a
      checkpoint first, so the same call resumes from there.
  """
  _initialize_distributed(config)
  task = validate(config)
  workdir = os.path.abspath(workdir)
  _check_workdir(workdir)
  _check_same_config(config, workdir)

  mesh = data_mesh()
  graphdefs, state = initial_networks(config, task, mesh)
  manager = ocp.CheckpointManager(
      os.path.join(workdir, "checkpoints"),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
  step, state = _restore(manager, state, config.num_networks, workdir, mesh)
  if step:
    logging.info("resumed from the checkpoint at step %d", step)
  writer = _MetricWriter(workdir)
  source = network_batches(config, task, mesh)
  taus = _taus(config)
  tau_per_network = _put(np.asarray(taus, np.float32), NamedSharding(mesh, PartitionSpec()))
  short = _SHORT_NAMES[task.metric]

  def save(step: int, state: TrainState) -> None:
    manager.save(step, args=ocp.args.StandardSave(
        _checkpoint_layout(state, config.num_networks)))

  def evaluate_and_write(step: int, state: TrainState) -> Evaluation:
    result = _evaluate_networks(graphdefs.model, state.model, config, source)
    writer.write(step, "eval", _metric_row(result.pooled, result.networks))
    return result

  start_step, start_time, window = step, time.time(), []
  out_of_time = lambda: (config.time_budget_minutes > 0
                         and time.time() - start_time > 60 * config.time_budget_minutes)
  with _StopRequests() as stop:
    while step < config.num_steps and not out_of_time() and not stop.requested:
      state, metrics = train_step(graphdefs, state, source.train(step), tau_per_network,
                                  metric=task.metric, mesh=mesh)
      step += 1
      window.append(metrics)
      if step % config.log_every == 0 or step == config.num_steps or out_of_time():
        per_network = {k: np.mean(jax.device_get([m[k] for m in window]), axis=0)
                       for k in window[0]}
        window = []
        rate = (step - start_step) / max(time.time() - start_time, 1e-9)
        networks = [{k: v[i] for k, v in per_network.items()}
                    for i in range(config.num_networks)]
        averaged = {k: v.mean() for k, v in per_network.items()}
        writer.write(step, "train",
                     {**_metric_row(averaged, networks), "steps_per_second": rate})
        logging.info(
            "step %d/%d | %.1f steps/s | loss %.4f | %s %.3f | N %.2f | rho %.2f | ETA %s",
            step, config.num_steps, rate, averaged["loss"], short, averaged[task.metric],
            averaged["mean_steps"], averaged["mean_ponder"],
            _format_seconds((config.num_steps - step) / rate))
      if step % config.eval_every == 0 and step < config.num_steps:
        result = evaluate_and_write(step, state).pooled
        logging.info("eval at step %d | %s %.4f | N %.2f | rho %.2f", step, short,
                     result[task.metric], result["mean_steps"], result["mean_ponder"])
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
  results = {"task": config.task, "step": step, "tau": float(np.mean(taus)),
             "act": config.mode == "act", "mode": config.mode, "metric": task.metric,
             "difficulty": task.difficulty, **result.pooled,
             "networks": [{"seed": config.seed + i, "tau": tau, **network}
                          for i, (tau, network) in enumerate(zip(taus, result.networks))]}
  if _is_primary():
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
    if config.plot:
      from tasks import plots  # pylint: disable=g-import-not-at-top
      plots.plot_run(workdir)
  return results


def _metric_line(metrics: Mapping[str, Any], metric: str) -> str:
  """The headline metric, mean N and mean rho of one result."""
  if metric == BITS_PER_CHARACTER:
    head = (f"held-out {metrics['bits_per_character']:.3f} bpc (train "
            f"{metrics['train_bits_per_character']:.3f}), ")
  else:
    head = f"sequence error {metrics['sequence_error']:.4f}, "
  return head + f"mean N {metrics['mean_steps']:.2f}, mean rho {metrics['mean_ponder']:.2f}"


def summary_table(results: Mapping[str, Any]) -> str:
  """A readable multi-line summary of ``results.json``; one line per network of an ensemble."""
  metric = results.get("metric", "sequence_error")
  networks = results.get("networks", [])
  ensemble = len(networks) > 1
  setting = f"{len(networks)} networks, mean" if ensemble else f"tau={results['tau']:g}"
  lines = [f"{results['task']} ({results['mode']}, {setting}) after {results['step']} steps: "
           + _metric_line(results, metric)]
  if ensemble:
    lines += [f"  network {i} (seed {n['seed']}, tau={n['tau']:g}): {_metric_line(n, metric)}"
              for i, n in enumerate(networks)]
  lines.append(f"  {results['difficulty']:>24s} {'count':>8s} {_SHORT_NAMES[metric]:>7s} "
               f"{'N':>6s} {'rho':>6s}")
  rows = results["by_difficulty"].items()
  if metric != BITS_PER_CHARACTER:
    rows = sorted(rows, key=lambda kv: int(kv[0]))
  for d, row in rows:
    lines.append(f"  {d!s:>24s} {row['count']:>8d} {row[metric]:>7.3f} "
                 f"{row['mean_steps']:>6.2f} {row['mean_ponder']:>6.2f}")
  return "\n".join(lines)
