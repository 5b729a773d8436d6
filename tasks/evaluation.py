"""What a network is scored on: per-target losses and mistakes, ponder, held-out evaluation.

:func:`target_terms` and :func:`ponder_terms` are shared by the training loss
and the evaluation. :func:`evaluate` scores one network; the training loop
scores its stacked networks with :func:`evaluate_networks`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import act_jax
from tasks import models, networks
from tasks.data import Batch, text
from tasks.registry import BITS_PER_CHARACTER, BatchSource, get_task


def target_terms(logits: jax.Array, batch: Batch):
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


def per_step_ponder(stats: act_jax.PonderStats):
  return stats.steps.astype(jnp.float32), stats.ponder_cost


def ponder_terms(stats: act_jax.PonderStats, batch: Batch):
  """Per-example mean N and mean rho over the valid input steps."""
  length = jnp.maximum(jnp.sum(batch.input_mask, axis=1), 1)
  mean = lambda x: jnp.sum(jnp.where(batch.input_mask, x, 0.0), axis=1) / length
  return tuple(mean(x) for x in per_step_ponder(stats))


def _sequence_outputs(model: models.TaskModel, batch: Batch) -> dict[str, jax.Array]:
  """Per example: any mistake, mean N and rho, difficulty."""
  out = model(batch.inputs, batch.input_mask)
  _, wrong = target_terms(out.logits, batch)
  steps, ponder = ponder_terms(out.stats, batch)
  return {"wrong": jnp.any(wrong, axis=(1, 2)), "steps": steps, "ponder": ponder,
          "difficulty": batch.difficulty}


def _character_outputs(model: models.TaskModel, batch: Batch) -> dict[str, jax.Array]:
  """Per input step: loss, mistake, N and rho, and the input byte and target mask."""
  out = model(batch.inputs, batch.input_mask)
  losses, wrong = target_terms(out.logits, batch)
  steps, ponder = per_step_ponder(out.stats)
  return {"loss": losses[..., 0], "wrong": wrong[..., 0], "steps": steps, "ponder": ponder,
          "inputs": batch.inputs, "mask": batch.target_mask}


@functools.partial(jax.jit, static_argnames=("graphdef", "metric", "mesh"))
def _eval_step(graphdef: nnx.GraphDef, model_state: nnx.State, batch: Batch, *, metric: str,
               mesh: Mesh) -> dict[str, jax.Array]:
  """Every network's outputs ``[K, B, ...]`` on its batch, replicated."""
  outputs = _character_outputs if metric == BITS_PER_CHARACTER else _sequence_outputs
  per_network = lambda state, batch: outputs(nnx.merge(graphdef, state), batch)
  return networks.replicated(jax.vmap(per_network)(model_state, batch), mesh)


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
  per_network = [examples({k: v[i] for k, v in outputs.items()}) for i in range(num_networks)]
  pooled = {k: np.concatenate([n[k] for n in per_network]) for k in per_network[0]}
  return Evaluation(summarize(pooled), [summarize(n) for n in per_network])


def evaluate_networks(graphdef: nnx.GraphDef, model_state: nnx.State,
                      config: ml_collections.ConfigDict,
                      source: networks.NetworkBatches) -> Evaluation:
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
  mesh = networks.data_mesh()
  graphdef, model_state = nnx.split(model)
  stacked = networks.place(jax.tree.map(lambda x: np.asarray(x)[None], model_state),
                 NamedSharding(mesh, PartitionSpec()))
  sources = networks.NetworkBatches((source or get_task(config.task).source(config),), mesh)
  return evaluate_networks(graphdef, stacked, config, sources).pooled
