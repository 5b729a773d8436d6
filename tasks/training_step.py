"""The compiled training step: Adam on the task loss plus ``tau * P``, every network at once.

The loss (docs/equations.md section 12 item 4): the task loss summed over a sequence's
target steps and slots, plus ``tau`` times the ponder cost summed over its
input steps, both averaged over the batch. The ``K`` networks of a run step
together, ``jax.vmap`` over their parameters, optimizer states, batches and
taus (traced values: one compilation serves every tau). :func:`train_steps`
runs many steps in one call, generating the batches and summing the metrics
inside it; :func:`train_step` runs one step on a given batch.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

import act_jax
from act_jax import pondernet
from tasks import evaluation, models, networks
from tasks.data import Batch
from tasks.registry import BITS_PER_CHARACTER


def metric_names(metric: str) -> tuple[str, ...]:
  """The names of a training step's metrics (float32 scalars per network); ``grad_norm`` is
  the global norm of the loss's gradient before any clipping (a spike precedes a blow-up)."""
  return ("loss", "task_loss", "mean_steps", "mean_ponder", metric, "grad_norm")


class LossTerms(NamedTuple):
  """One network's training loss on a batch, as its two terms and what the metrics read.

  Attributes:
    task: the task loss the optimiser sees, averaged over the batch: summed over
      target steps and slots (PonderNet: the expected loss ``sum_n p_n L(y_n)``).
    halting: the halting rule's term: ``ponder_penalty(rho, tau)`` (ACT),
      ``beta * KL(p || geometric(lambda_p))`` (PonderNet), 0 (no ACT).
    output: the network's output.
    losses: the loss of each target step and slot ``[B, T, S]`` (PonderNet: of
      the p-weighted mean logits).
    wrong: whether each of those was mistaken ``[B, T, S]``.
  """

  task: jax.Array
  halting: jax.Array
  output: models.ModelOutput
  losses: jax.Array
  wrong: jax.Array


def loss_terms(model: models.TaskModel, batch: Batch, tau: jax.Array) -> LossTerms:
  """One network's training loss on ``batch`` as :class:`LossTerms` (their sum is the loss;
  docs/equations.md section 12 item 4)."""
  if model.halting == "pondernet":
    out = model(batch.inputs, batch.input_mask, targets=(batch.targets, batch.target_mask),
                step_loss=evaluation.step_target_loss)
  else:
    out = model(batch.inputs, batch.input_mask)
  losses, wrong = evaluation.target_terms(out.logits, batch)
  if model.halting == "pondernet":
    task = jnp.mean(jnp.sum(out.expected_loss, axis=1))
    halting = pondernet.kl_penalty(out.stats, model.beta, model.lambda_p, batch.input_mask)
  else:
    task = jnp.mean(jnp.sum(losses, axis=(1, 2)))
    halting = (act_jax.ponder_penalty(out.stats.ponder_cost, tau, batch.input_mask)
               if model.mode == "act" else jnp.zeros((), task.dtype))
  return LossTerms(task, halting, out, losses, wrong)


def loss_fn(model: models.TaskModel, batch: Batch, tau: jax.Array, metric: str
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """One network's training loss on ``batch`` and its metrics (the headline ``metric`` too).

  The task loss summed over target steps and slots, averaged over the batch,
  plus (ACT) ``ponder_penalty(rho, tau)`` (docs/equations.md section 12 item 4).
  PonderNet: the expected task loss ``sum_n p_n L(y_n)`` + beta * KL (``tau``
  unused); mistakes, bits per character and the metrics' ``task_loss`` are those
  of the p-weighted mean logits.
  """
  terms = loss_terms(model, batch, tau)
  steps, ponder = evaluation.ponder_terms(terms.output.stats, batch)
  metrics = {"task_loss": jnp.mean(jnp.sum(terms.losses, axis=(1, 2))),
             "mean_steps": jnp.mean(steps), "mean_ponder": jnp.mean(ponder)}
  if metric == BITS_PER_CHARACTER:
    metrics[metric] = jnp.sum(terms.losses) / jnp.sum(batch.target_mask) / jnp.log(2.0)
  else:
    metrics[metric] = evaluation.sequence_error(terms.wrong, batch)
  return terms.task + terms.halting, metrics


def _network_step(graphdefs: networks.GraphDefs, metric: str, state: networks.TrainState,
                  batch: Batch, tau: jax.Array
                  ) -> tuple[networks.TrainState, dict[str, jax.Array]]:
  """One Adam step of one network (unstacked state, batch and tau)."""
  model = nnx.merge(graphdefs.model, state.model)
  optimizer = nnx.merge(graphdefs.optimizer, state.optimizer)
  grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
  (loss, metrics), grads = grad_fn(model, batch, tau, metric)
  optimizer.update(model, grads)
  return networks.TrainState(nnx.state(model), nnx.state(optimizer)), {
      "loss": loss, **metrics, "grad_norm": optax.global_norm(grads)}


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
def train_step(graphdefs: networks.GraphDefs, state: networks.TrainState, batch: Batch,
               taus: jax.Array, *, metric: str, mesh: Mesh
               ) -> tuple[networks.TrainState, dict[str, jax.Array]]:
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

  zeros = {name: jnp.zeros(seeds.shape, jnp.float32) for name in metric_names(metric)}
  return networks.replicated(jax.lax.fori_loop(0, num_steps, body, (state, zeros)), sample.mesh)
