"""What a network is scored on: per-target losses and mistakes, ponder, held-out evaluation.

:func:`target_terms`, :func:`sequence_errors` and :func:`ponder_terms` are
shared by the training loss and the evaluation. :func:`evaluate` scores one
network; the training loop scores its stacked networks with
:func:`evaluate_networks` (the held-out stream) and :func:`evaluate_figure`
(the paper's difficulty figure's examples).

With ``config.halting="pondernet"`` the training loss is PonderNet's expected
loss (:func:`step_target_loss` per ponder step), and the held-out evaluation of
the synthetic tasks scores the network as PonderNet does, halting at a step drawn
from ``p`` (:meth:`tasks.models.TaskModel.at_halting_steps`; the state carried to
the next input step is that of the halting step). Its keys name their rule:

* ``sequence_error`` and ``task_loss`` (nats per sequence, summed over its
  targets): at the *sampled* halting step ``n ~ p``, drawn with a key fixed by
  ``config.seed`` and the batch's index (:func:`evaluation_key`), so an
  evaluation run again draws the same steps;
* ``sequence_error_most_likely`` and ``task_loss_most_likely``: at the most
  likely step ``argmax_n p_n``;
* ``sequence_error_mean_field``: the ``p``-weighted mean of the steps' logits,
  the rule of ACT (and of the training metrics);
* ``expected_steps``: ``sum_n n p_n`` with the ``p`` of the sampled run, and
  ``mean_sampled_steps`` and ``mean_most_likely_steps``: the halting steps taken;
  each per sequence averaged over its input steps, as ``mean_steps`` (``N``, the
  steps until the halting mass reaches ``1 - epsilon``, of the mean-field run).

Text under PonderNet is scored per predicted byte by the same rules:
``bits_per_character`` and ``error_rate`` at the sampled step, beside
``bits_per_character_most_likely``, ``error_rate_most_likely``,
``bits_per_character_mean_field``, ``error_rate_mean_field`` and the step counts
above, per byte. ACT's evaluation scores the ``p``-weighted mean of the logits.

Sequence error counts only sequences that have a target: addition's length-1
sequences have none, and are left out of every sequence-level number
(``unscored_sequences`` says how many there were).
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
from act_jax import pondernet
from tasks import models, networks
from tasks.data import Batch, text
from tasks.registry import BITS_PER_CHARACTER, BatchSource, get_task


def _slot_terms(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-slot losses (nats) and predictions; ``logits`` is ``targets.shape + (classes,)``
  (one sigmoid unit for binary targets)."""
  if logits.shape[-1] == 1:  # binary: sigmoid unit, binary cross-entropy
    logit = logits[..., 0]
    losses = optax.sigmoid_binary_cross_entropy(logit, targets.astype(jnp.float32))
    return losses, (logit > 0).astype(jnp.int32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return losses, jnp.argmax(logits, axis=-1)


def target_terms(logits: jax.Array, batch: Batch):
  """Per-target losses (nats) and mistakes ``[B, T, slots]``, zero off target."""
  losses, predictions = _slot_terms(logits.reshape(batch.targets.shape + (-1,)), batch.targets)
  on_target = batch.target_mask[..., None]
  return jnp.where(on_target, losses, 0.0), on_target & (predictions != batch.targets)


def step_target_loss(logits: jax.Array, targets: tuple[jax.Array, jax.Array]) -> jax.Array:
  """One ponder step's loss per example, ``[B]``: the summed per-target losses of
  :func:`target_terms` for one input step (PonderNet's ``L(y_n)``).

  Args:
    logits: the step's logits ``[B, outputs]``.
    targets: the input step's targets ``[B, slots]`` and target mask ``[B]``.
  """
  labels, on_target = targets
  losses, _ = _slot_terms(logits.reshape(labels.shape + (-1,)), labels)
  return jnp.sum(jnp.where(on_target[:, None], losses, 0.0), axis=-1)


def sequence_errors(wrong: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
  """Per sequence: any mistake, and whether it has a target at all (only those count)."""
  return jnp.any(wrong, axis=(1, 2)), jnp.any(batch.target_mask, axis=1)


def sequence_error(wrong: jax.Array, batch: Batch) -> jax.Array:
  """The fraction of the sequences with a target that have a mistake (0 if none has one)."""
  any_wrong, scored = sequence_errors(wrong, batch)
  return jnp.sum(any_wrong) / jnp.maximum(jnp.sum(scored), 1)


def per_step_ponder(stats: act_jax.PonderStats):
  return stats.steps.astype(jnp.float32), stats.ponder_cost


def ponder_mean(values: jax.Array, batch: Batch) -> jax.Array:
  """Per example, the mean of ``values [B, T]`` over the valid input steps."""
  length = jnp.maximum(jnp.sum(batch.input_mask, axis=1), 1)
  return jnp.sum(jnp.where(batch.input_mask, values, 0.0), axis=1) / length


def ponder_terms(stats: act_jax.PonderStats, batch: Batch):
  """Per-example mean N and mean rho over the valid input steps."""
  return tuple(ponder_mean(x, batch) for x in per_step_ponder(stats))


def evaluation_key(seed: int, batch_index: int) -> jax.Array:
  """The PRNG key of PonderNet's sampled halting steps on an evaluation's batch ``batch_index``."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), batch_index)


def _sequence_outputs(model: models.TaskModel, batch: Batch, key: jax.Array
                      ) -> dict[str, jax.Array]:
  """Per example: any mistake, whether it has a target, mean N and rho, difficulty; for
  PonderNet, those of :func:`_halting_step_terms` too (``wrong`` at the sampled step)."""
  out = model(batch.inputs, batch.input_mask)
  _, wrong = target_terms(out.logits, batch)
  any_wrong, scored = sequence_errors(wrong, batch)
  steps, ponder = ponder_terms(out.stats, batch)
  first_weight = out.stats.halting_probs[..., 0].astype(jnp.float32)
  outputs = {"wrong": any_wrong, "scored": scored, "steps": steps, "ponder": ponder,
             "max_steps": jnp.max(jnp.where(batch.input_mask, out.stats.steps, 0), axis=1),
             "first_weight": ponder_mean(first_weight, batch), "difficulty": batch.difficulty}
  if model.halting != "pondernet":
    return outputs
  terms = _halting_step_terms(model, batch, key)
  outputs["wrong_mean_field"] = any_wrong
  for rule in _HALTING_RULES:
    outputs["wrong" + rule] = sequence_errors(terms["wrong" + rule], batch)[0]
    outputs["task_loss" + rule] = jnp.sum(terms["loss" + rule], axis=(1, 2))
    outputs["halting_steps" + rule] = ponder_mean(terms["halting_steps" + rule], batch)
  outputs["expected_steps"] = ponder_mean(terms["expected_steps"], batch)
  return outputs


# PonderNet's evaluation rules, by the suffix of their keys: halting at a step drawn from
# ``p`` (the key folded with the input step ``t``), and at the most likely step.
_HALTING_RULES = {
    "": lambda key: lambda stats, t: pondernet.sampled_steps(stats, jax.random.fold_in(key, t)),
    "_most_likely": lambda key: lambda stats, t: pondernet.most_likely_steps(stats)}


def _halting_step_terms(model: models.TaskModel, batch: Batch, key: jax.Array
                        ) -> dict[str, jax.Array]:
  """PonderNet halting by each of :data:`_HALTING_RULES`: per input step, the per-target
  losses ``loss<rule>`` and mistakes ``wrong<rule>`` ``[B, T, slots]`` and the halting step
  ``halting_steps<rule>`` ``[B, T]``; and ``expected_steps`` ``sum_n n p_n`` ``[B, T]`` of
  the sampled run (whose ``p`` after the first input step depends on the steps drawn)."""
  terms = {}
  for rule, choose in _HALTING_RULES.items():
    out = model.at_halting_steps(batch.inputs, batch.input_mask, choose(key))
    terms["loss" + rule], terms["wrong" + rule] = target_terms(out.logits, batch)
    terms["halting_steps" + rule] = out.halting_steps.astype(jnp.float32)
    if not rule:
      terms["expected_steps"] = pondernet.expected_steps(out.stats).astype(jnp.float32)
  return terms


def _character_outputs(model: models.TaskModel, batch: Batch, key: jax.Array
                       ) -> dict[str, jax.Array]:
  """Per input step: loss, mistake, N and rho, and the input byte and target mask; for
  PonderNet, loss and mistake at the sampled step, those at the most likely step and of
  the mean field, and the step counts of :func:`_halting_step_terms`."""
  out = model(batch.inputs, batch.input_mask)
  losses, wrong = target_terms(out.logits, batch)
  steps, ponder = per_step_ponder(out.stats)
  outputs = {"loss": losses[..., 0], "wrong": wrong[..., 0], "steps": steps, "ponder": ponder,
             "inputs": batch.inputs, "mask": batch.target_mask}
  if model.halting != "pondernet":
    return outputs
  terms = _halting_step_terms(model, batch, key)
  per_byte = {k: v[..., 0] if k.startswith(("loss", "wrong")) else v for k, v in terms.items()}
  return {**outputs, "loss_mean_field": outputs["loss"], "wrong_mean_field": outputs["wrong"],
          **per_byte}


@functools.partial(jax.jit, static_argnames=("graphdef", "metric", "mesh"))
def _eval_step(graphdef: nnx.GraphDef, model_state: nnx.State, batch: Batch, key: jax.Array, *,
               metric: str, mesh: Mesh) -> dict[str, jax.Array]:
  """Every network's outputs ``[K, B, ...]`` on its batch (PonderNet's draws: ``key``),
  replicated."""
  outputs = _character_outputs if metric == BITS_PER_CHARACTER else _sequence_outputs
  per_network = lambda state, batch: outputs(nnx.merge(graphdef, state), batch, key)
  return networks.replicated(jax.vmap(per_network)(model_state, batch), mesh)


# The summary's means per sequence with a target, by the per-example output they average
# (all but the first three: PonderNet's alone, see the module docstring).
_SEQUENCE_MEANS = {"wrong": "sequence_error", "steps": "mean_steps", "ponder": "mean_ponder",
                   "task_loss": "task_loss", "wrong_most_likely": "sequence_error_most_likely",
                   "task_loss_most_likely": "task_loss_most_likely",
                   "wrong_mean_field": "sequence_error_mean_field",
                   "expected_steps": "expected_steps", "halting_steps": "mean_sampled_steps",
                   "halting_steps_most_likely": "mean_most_likely_steps"}


def _sequence_summary(per_example: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """Sequence error, mean N and mean rho per sequence with a target (and PonderNet's
  numbers, :data:`_SEQUENCE_MEANS`), and by difficulty."""
  scored = per_example["scored"]
  summary = lambda sel: {name: float(per_example[k][sel].mean())
                         for k, name in _SEQUENCE_MEANS.items() if k in per_example}
  by_difficulty = {}
  for d in np.unique(per_example["difficulty"][scored]):
    sel = scored & (per_example["difficulty"] == d)
    by_difficulty[int(d)] = {"count": int(sel.sum()), **summary(sel)}
  return {**summary(scored), **_halting_summary(per_example, scored),
          "unscored_sequences": int((~scored).sum()), "by_difficulty": by_difficulty}


def _halting_summary(per_example: Mapping[str, np.ndarray], sel: np.ndarray) -> dict[str, float]:
  """What the halting unit does over the selected sequences: the share that take one
  step at every input, the 90th percentile and maximum of their largest N, and the mean
  first halting weight p^1 (h^1 if N > 1; 1 at N = 1), per sequence averaged over its
  inputs."""
  largest = per_example["max_steps"][sel]
  if not largest.size:
    return {"one_step_share": float("nan"), "max_steps_p90": float("nan"),
            "max_steps_max": float("nan"), "mean_first_weight": float("nan")}
  return {"one_step_share": float((largest == 1).mean()),
          "max_steps_p90": float(np.percentile(largest, 90)),
          "max_steps_max": float(largest.max()),
          "mean_first_weight": float(per_example["first_weight"][sel].mean())}


def _predicted_characters(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The per-byte outputs of :func:`_character_outputs` at the predicted bytes, with their
  input's class."""
  mask = outputs["mask"]
  return {**{k: v[mask] for k, v in outputs.items() if k not in ("inputs", "mask")},
          "class": text.character_class(outputs["inputs"][mask])}


# The summary's means per predicted byte, by the per-byte output they average (all but the
# first four: PonderNet's alone); the losses are reported in bits.
_CHARACTER_MEANS = {"loss": "bits_per_character", "wrong": "error_rate", "steps": "mean_steps",
                    "ponder": "mean_ponder",
                    "loss_most_likely": "bits_per_character_most_likely",
                    "wrong_most_likely": "error_rate_most_likely",
                    "loss_mean_field": "bits_per_character_mean_field",
                    "wrong_mean_field": "error_rate_mean_field",
                    "expected_steps": "expected_steps", "halting_steps": "mean_sampled_steps",
                    "halting_steps_most_likely": "mean_most_likely_steps"}


def _character_summary(per_char: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """Bits per character, error rate, N and rho per predicted byte (and PonderNet's numbers,
  :data:`_CHARACTER_MEANS`), and by class.

  Each row of ``by_difficulty`` holds the bytes whose *input* character is of
  that class (the step that reads a space, say, predicts the byte after it).
  """
  in_bits = lambda k: 1.0 / np.log(2) if k.startswith("loss") else 1.0
  summary = lambda sel: {"count": int(sel.sum()),
                         **{name: float(per_char[k][sel].mean() * in_bits(k))
                            for k, name in _CHARACTER_MEANS.items() if k in per_char}}
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
                      metric: str, mesh: Mesh, seed: int,
                      num_examples: int | None = None) -> Evaluation:
  """Evaluates stacked networks on their stacked ``batches`` (the first ``num_examples``
  examples of them, or all); PonderNet's draws from :func:`evaluation_key` of ``seed``."""
  parts = [jax.device_get(_eval_step(graphdef, model_state, batch, evaluation_key(seed, i),
                                     metric=metric, mesh=mesh))
           for i, batch in enumerate(batches)]
  outputs = {k: np.concatenate([p[k] for p in parts], axis=1)[:, :num_examples]
             for k in parts[0]}
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
      source.mesh, config.seed)
  held_out = run()
  if metric != BITS_PER_CHARACTER:
    return held_out
  seen = run(split="train")
  train_bpc = lambda held, seen: {**held, "train_bits_per_character": seen[metric]}
  return Evaluation(train_bpc(held_out.pooled, seen.pooled),
                    [train_bpc(*pair) for pair in zip(held_out.networks, seen.networks)])


def evaluate_figure(graphdef: nnx.GraphDef, model_state: nnx.State,
                    config: ml_collections.ConfigDict, mesh: Mesh) -> Evaluation:
  """Evaluates stacked networks on the examples of the paper's difficulty figure.

  ``config.figure_examples`` examples per difficulty level (:class:`FigureSet`),
  the same examples for every network, in batches of ``config.eval_batch_size``.
  """
  task = get_task(config.task)
  options = config.task_options.to_dict()
  sharding = NamedSharding(mesh, PartitionSpec(None, networks.DATA_AXIS))
  num_networks = jax.tree.leaves(model_state)[0].shape[0]
  stack = lambda batch: networks.place(
      jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (num_networks, *x.shape)), batch),
      sharding)
  batches = (stack(batch) for batch, _ in task.figure.batches(
      options, config.figure_examples, config.eval_batch_size, config.seed))
  num_examples = len(task.figure.levels(**options)) * config.figure_examples
  result = _evaluate_batches(graphdef, model_state, batches, task.metric, mesh, config.seed,
                             num_examples)
  label = lambda summary: {"difficulty": task.figure.difficulty,
                           "examples_per_level": config.figure_examples, **summary}
  return Evaluation(label(result.pooled), [label(n) for n in result.networks])


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
