"""The K networks of a run, stacked on a leading axis, and their batches, on a device mesh.

Network ``i`` of a config is the single-network run of seed ``config.seed + i``
and tau ``config.taus[i]`` (or ``config.tau``): :func:`network_config`. Its
parameters and Adam state are stacked with the others' (:class:`TrainState`,
``[K, ...]``) and replicated on every device; its batches come from its own
seed's :class:`~tasks.registry.BatchSource`, stacked ``[K, B, ...]`` and
sharded over the batch axis of a 1-D mesh of all devices (:func:`data_mesh`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tasks import models
from tasks.data import Batch, batch_stream_key
from tasks.registry import BatchSource, GeneratedBatches, Sampler, Task

DATA_AXIS = "data"  # the mesh axis that the batch is sharded over


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
  """The :class:`~tasks.models.TaskModel` of a single-network config, initialised from its seed."""
  num_classes = task.num_classes(config.task_options)
  per_slot = 1 if num_classes == 2 else num_classes  # binary: one sigmoid unit
  return models.TaskModel(
      input_size=task.input_size(config.task_options), hidden_size=config.hidden_size,
      output_size=task.target_slots * per_slot, cell=config.cell, mode=config.mode,
      repeats=config.repeats, max_steps=config.max_steps, epsilon=config.epsilon,
      halting_bias=config.halting_bias, backend=config.backend,
      independent_examples=config.independent_examples, remat=config.remat,
      chunk_steps=config.chunk_steps, weight_init=config.weight_init, halting=config.halting,
      beta=config.beta, lambda_p=config.lambda_p, rngs=nnx.Rngs(config.seed))


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


def is_primary() -> bool:
  """Whether this process writes the run's files (process 0 of a multi-host run)."""
  return jax.process_index() == 0


def place(tree: Any, sharding: NamedSharding) -> Any:
  """Places every leaf of ``tree`` (host or device arrays) as a global array of ``sharding``.

  Every process holds the whole value (the replicated state, or a batch that is
  a pure function of seed and step) and places the shards of its own devices.
  """
  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(put, tree)


def replicated(tree: Any, mesh: Mesh) -> Any:
  """``tree`` constrained to be whole on every device (readable by every process)."""
  return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec()))


@dataclasses.dataclass(frozen=True)
class StackedSampler:
  """``(data, seeds [K], step) -> Batch [K, B, ...]``: every network's training batch.

  Pure and jittable (the training loop calls it inside its compiled loop);
  network ``i``'s batch is its source's ``sample(data, seeds[i], step)``,
  the batch axis sharded over ``mesh``.

  Attributes:
    sample: the sources' :class:`~tasks.registry.Sampler` (equal for all).
    mesh: the devices, from :func:`data_mesh`.
  """

  sample: Sampler
  mesh: Mesh

  def __call__(self, data: Any, seeds: jax.Array, step: jax.Array) -> Batch:
    batch = jax.vmap(lambda seed: self.sample(data, seed, step))(seeds)
    return jax.lax.with_sharding_constraint(
        batch, NamedSharding(self.mesh, PartitionSpec(None, DATA_AXIS)))


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
    return place(stacked, NamedSharding(self.mesh, PartitionSpec(None, DATA_AXIS)))

  def _generated_eval(self, index: int) -> Batch:
    """Generated sources: all networks' evaluation batch ``index`` in one jitted call."""
    first = self.sources[0]
    generate = _stacked_generator(first.generate, first.eval_batch_size, first.eval_options, "eval",
                                  NamedSharding(self.mesh, PartitionSpec(None, DATA_AXIS)))
    return generate(self.seeds, np.int32(index))

  @property
  def seeds(self) -> np.ndarray:
    """Network ``i``'s seed, int32 ``[K]``."""
    return np.asarray([source.seed for source in self.sources], np.int32)

  def sampler(self) -> StackedSampler:
    """All networks' training batches as one pure function (see :class:`StackedSampler`)."""
    samplers = {source.sampler() for source in self.sources}
    if len(samplers) != 1:
      raise ValueError(f"the networks' batches differ in more than their seeds: {samplers}")
    return StackedSampler(samplers.pop(), self.mesh)

  @functools.cached_property
  def sampler_data(self) -> Any:
    """What :meth:`sampler` reads (e.g. the text's train split), placed whole on every
    device once."""
    return place(self.sources[0].sampler_data(), NamedSharding(self.mesh, PartitionSpec()))

  def train(self, step: int) -> Batch:
    """Every network's training batch of ``step`` (one jitted call, on the devices)."""
    return _jitted(self.sampler())(self.sampler_data, self.seeds, np.int32(step))

  def held_out(self, max_batches: int, **options) -> Iterator[Batch]:
    """Every network's evaluation batches (``options``: the sources' ``held_out``'s)."""
    if isinstance(self.sources[0], GeneratedBatches):
      for i in range(max_batches):
        yield self._generated_eval(i)
      return
    streams = [source.held_out(max_batches, **options) for source in self.sources]
    for batches in zip(*streams):
      yield self._stacked(batches)


@functools.lru_cache(maxsize=None)
def _jitted(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``jax.jit(fn)``, once per (hashable) ``fn``."""
  return jax.jit(fn)


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
def make_optimizer(learning_rate: float, grad_clip_norm: float) -> optax.GradientTransformation:
  """Adam, after clipping the gradient's global norm to ``grad_clip_norm`` if it is > 0;
  one per setting, so that equal optimizer graphdefs share compiled steps."""
  adam = optax.adam(learning_rate)
  return optax.chain(optax.clip_by_global_norm(grad_clip_norm), adam) if grad_clip_norm else adam


def _network(config: ml_collections.ConfigDict,
             task: Task) -> tuple[models.TaskModel, nnx.Optimizer]:
  """A freshly initialised model of ``config`` and its Adam optimizer."""
  model = build_model(config, task)
  return model, nnx.Optimizer(model, make_optimizer(config.learning_rate, config.grad_clip_norm),
                              wrt=nnx.Param)


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
  return graphdefs, place(stacked, NamedSharding(mesh, PartitionSpec()))


def network_taus(config: ml_collections.ConfigDict) -> list[float]:
  """Network ``i``'s tau: ``config.taus[i]``, or ``config.tau`` if ``taus`` is empty."""
  return [network_config(config, i).tau for i in range(config.num_networks)]


def network_batches(config: ml_collections.ConfigDict, task: Task, mesh: Mesh) -> NetworkBatches:
  """The batches of ``config``'s networks: network ``i`` draws those of seed ``seed + i``."""
  return NetworkBatches(
      tuple(task.source(network_config(config, i)) for i in range(config.num_networks)), mesh)
