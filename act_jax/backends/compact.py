"""The compacting backend of :func:`act_jax.ponder` (``independent_examples=True``):
the batch shrinks as its examples halt, so the work is about ``sum_i N_i`` step
evaluations rather than ``B * max_i N_i``.

Only for step functions that treat the examples of the batch independently
(every recurrent cell): example ``i``'s new state, output and halting logit
depend on example ``i``'s state and inputs alone.

The loop runs in levels of static batch sizes ``B, B/16, B/256, ...`` (down to
2; ``SHRINK``).
Level ``k`` runs the ``"while"`` backend's differentiable segment
(:func:`act_jax.backends.while_loop.run_segment`) until at most ``B_{k+1}``
examples are still running; those are gathered into a batch of ``B_{k+1}``
slots and pondering goes on there from the same ponder step (unused slots hold
a copy of a real example, :func:`act_jax.halting.stand_in`, marked not
running). The levels' halting states are
scattered back into the full batch on the way out. Each level's segment has its
own custom VJP over the steps it took at its own batch size, and the gathers
and scatters between levels are differentiated by JAX, so the backward pass
mirrors the forward one and pays only for the running examples too. All shapes
are static: nothing retraces when the number of halted examples changes.

Every level records the same number of example-steps for its backward pass,
``chunk_steps * B``: a level of ``b`` examples records ``chunk_steps * B / b``
steps per chunk (at most ``max_steps``), so the few examples that ponder long
are recorded once, not recomputed chunk by chunk, and no level needs more
memory than the first.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from act_jax import halting
from act_jax.backends import loop_invariant, while_loop
from act_jax.ponder_types import PonderResult, PyTree, StepFn

SHRINK = 16
"""Each level's batch is the previous level's divided by ``SHRINK``.

A level has a fixed cost, forward and backward (its segment's loop, VJP and
record buffers, the gathers and scatters), and it is compiled whether it runs
or not. On a 2-core CPU, for the parity network at batch 128 (N about 2, so the
smaller levels run a step or none), levels ``128, 8`` took 1.54-1.91x a
Repeat-RNN step against 1.90-2.13x for ``128, 32, 8, 2`` (shrinking by 4),
with about the same time where 2 % of the examples ponder 50-100 steps, and
compiled in 12.6 s against 24.4 s.
"""


def level_sizes(batch: int, shrink: int = SHRINK) -> tuple[int, ...]:
  """The static batch sizes of the levels: ``batch, batch // shrink, ...``, all >= 2."""
  sizes = [batch]
  while sizes[-1] // shrink >= 2:
    sizes.append(sizes[-1] // shrink)
  return tuple(sizes)


def ponder(step_fn: StepFn, max_steps: int, threshold: float, params: PyTree, state: PyTree,
           inputs: PyTree, mask: jax.Array, *, chunk_steps: int,
           first_step_flag_only: bool = False) -> PonderResult:
  """Runs ponder steps (Eqs. 3-13) on a batch that shrinks as examples halt.

  Args:
    step_fn: a step function that treats examples independently; it may close
      over traced values that are not per-example.
    max_steps: the cap ``M`` (Eq. 13).
    threshold: ``1 - epsilon`` (Eq. 7).
    params: the step function's parameters.
    state: ``s_{t-1}``, leaves ``[B, ...]``.
    inputs: ``x_t``, leaves ``[B, ...]`` (gathered with the examples).
    mask: bool ``[B]``; False: not computed.
    chunk_steps: steps recorded per chunk for the backward pass at the full
      batch; a level of ``b`` examples records ``chunk_steps * B / b``.
    first_step_flag_only: see :func:`act_jax.backends.while_loop.later_steps_fn`.

  Returns:
    The :class:`act_jax.PonderResult`, equal to the other backends'.
  """
  step_out = jax.eval_shape(step_fn, params, state, inputs, jnp.int32(0))
  carry = halting.initial_halting(step_out, state, mask, max_steps)
  carry = while_loop.first_step_then(
      step_fn, max_steps, threshold, params, inputs, carry,
      functools.partial(after_first_step, step_fn, max_steps, threshold, chunk_steps,
                        first_step_flag_only, params, inputs))
  return halting.finish(carry, state)


def after_first_step(step_fn: StepFn, max_steps: int, threshold: float, chunk_steps: int,
                     first_step_flag_only: bool, params: PyTree, inputs: PyTree,
                     carry: halting.Halting, start_index: int = 1) -> halting.Halting:
  """Ponder steps ``start_index + 1``, ... (2, 3, ... by default) from the halting
  state after ``start_index`` steps, on ever smaller batches, until every example
  has halted; differentiable (reverse mode)."""
  split = loop_invariant.hoist_loop_invariants(
      while_loop.later_steps_fn(step_fn, first_step_flag_only), params, carry.state, inputs,
      jnp.int32(start_index))
  sizes = level_sizes(carry.tally.shape[0], SHRINK)  # read at trace time
  return _run_levels(split.step_fn, max_steps, threshold, chunk_steps * sizes[0], split.shared,
                     split.per_example, carry, jnp.int32(start_index), sizes)


def _run_levels(step_fn, max_steps, threshold, record_budget, params, inputs,
                carry: halting.Halting, start_index: jax.Array,
                sizes: tuple[int, ...]) -> halting.Halting:
  """Runs this level (batch ``sizes[0]``), then the smaller ones, from ``start_index``.

  ``record_budget``: example-steps each level records per chunk for its
  backward pass.
  """
  stop_count = sizes[1] if len(sizes) > 1 else 0
  chunk = -(-record_budget // sizes[0])  # run_segment caps it at max_steps
  carry, next_index = while_loop.run_segment(step_fn, max_steps, threshold, chunk,
                                             stop_count, params, inputs, carry, start_index)
  if len(sizes) == 1:
    return carry
  index, smaller_carry, smaller_inputs = gather_running(carry, inputs, sizes[1])
  smaller = _run_levels(step_fn, max_steps, threshold, record_budget, params,
                        smaller_inputs, smaller_carry, next_index, sizes[1:])
  return scatter_back(carry, index, smaller)


def gather_running(carry: halting.Halting, inputs: PyTree, size: int
                   ) -> tuple[jax.Array, halting.Halting, PyTree]:
  """The running examples of ``carry`` and their ``inputs``, first, in ``size`` slots.

  Unused slots hold a stand-in (a copy of a real example,
  :func:`act_jax.halting.stand_in`), so the step function only ever sees real
  states and inputs, but do not run, get no cotangent and are dropped on the
  way out (their index is out of range). Differentiable.

  Returns:
    The examples' indices in the batch (the batch size for unused slots), and
    the halting state and inputs of the ``size`` slots.
  """
  batch = carry.tally.shape[0]
  (index,) = jnp.nonzero(carry.running, size=size, fill_value=batch)
  used = index < batch
  take = lambda x: jnp.take(x, index, axis=0, mode="clip")
  smaller_carry, smaller_inputs = halting.stand_in(jax.tree.map(take, (carry, inputs)), used)
  smaller_carry = smaller_carry._replace(
      tally=smaller_carry.tally.at[:, halting.RUNNING].multiply(used))
  return index, smaller_carry, smaller_inputs


def scatter_back(carry: halting.Halting, index: jax.Array,
                 smaller: halting.Halting) -> halting.Halting:
  """``carry`` with the examples :func:`gather_running` took replaced by ``smaller``'s."""
  return jax.tree.map(lambda full, part: full.at[index].set(part, mode="drop"), carry, smaller)
