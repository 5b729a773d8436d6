"""The ``"while"`` backend over a whole input sequence: one custom VJP for all input steps.

Differentiated input step by input step (a ``lax.scan`` over per-step custom
VJPs), the ponder loop makes every input step pay for what it *might* have
done: the ``lax.cond`` that skips ponder steps 2, 3, ... when step 1 halts every
example is linearized with zero-filled residual buffers for its untaken branch,
and transposed into zero parameter cotangents that are then added up. On a
language model whose examples mostly halt at step 1 that doubled the cost of
a training step. Here the sequence is differentiated at once:

* forward: a scan over input steps running each one's ponder loop without
  recording (ponder steps 1 and 2 as straight-line code, the loop from step 3
  only if an example still runs); it keeps the state entering each input step,
  the largest N of its batch and, unless ``remat``, the pullback residuals of
  its first ponder step (what a plain RNN keeps for its one step);
* backward: a reverse scan over input steps that carries the parameter
  cotangent. Each input step backpropagates through its first ponder step
  (from the kept residuals, or recomputed) and adds into that carry; only where
  an example ran past step 1 does a ``lax.switch`` branch run ponder steps 2,
  3, ... again and backpropagate through them: step 2 alone as straight-line
  code (plain autodiff) where no example ran past it, otherwise step 2 and
  the ``"while"`` or compacting loop's own VJP from step 3 (Eqs. 14-20).

With compaction (``independent_examples``) step 2 runs, forward and backward,
on the smallest of ``B, B/2, B/4`` slots that holds the examples still running
after step 1 (:func:`step_two_sizes`), so a language model whose bytes mostly
halt at step 1 pays step 2 for about the bytes that take it.

Without ``remat``, the caller hands this module the step function over what
every ponder step computes from the params and its input step's inputs alone
(a cell's input projection ``x_t W_x``, the first-step flag's row kept apart:
:func:`split_invariants`), computed before the scan for all input steps at
once; the backward scan hands back its cotangent, summed over the ponder steps
taken, and it is multiplied back after the scan. Ponder step 2 then costs the
cell's recurrent part only.

An input step where every example halts at step 1 costs a plain RNN step plus
the halting arithmetic, forward and backward. Memory: ``O(T * state)`` with
``remat``; without, ``O(T * first-step residuals)`` (a plain RNN's) and the
invariant values (``O(T * input projection)``); plus one input step's ponder
loop (``O(chunk * residuals + max_steps / chunk * state)``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from act_jax import halting
from act_jax.backends import compact, loop_invariant, step_pullback, while_loop
from act_jax.ponder_types import PonderResult, PonderStats, PonderStep, PyTree, StepFn


def hoist(step_fn: StepFn, params: PyTree, state: PyTree,
          inputs: PyTree) -> tuple[while_loop.HoistedStepFn, tuple[jax.Array, ...]]:
  """The step function taking ``(params, consts)``, and the traced values it closes over.

  With no such values (every cell of this library) the step function itself is
  called, at any batch size; otherwise the ``jax.closure_convert`` of it at
  these shapes, which :func:`ponder_sequence` can run only without compaction.

  Args:
    step_fn: the step function (see :data:`act_jax.StepFn`).
    params: its parameters.
    state: a state of the batch shape.
    inputs: one input step's inputs (leaves ``[batch, ...]``).
  """
  closed_fn, consts = jax.closure_convert(step_fn, params, state, inputs, jnp.int32(0))
  return while_loop.HoistedStepFn(closed_fn if consts else step_fn), tuple(consts)


def split_invariants(step_fn: StepFn, params: PyTree, state: PyTree,
                     inputs: PyTree) -> tuple[StepFn, PyTree, PyTree]:
  """The step function over what it computes from ``params`` and its input step's
  inputs alone, computed for every input step at once.

  Every ponder step of input step ``t`` reads the same invariant values (a
  cell's input projection ``x_t W_x``, its first-step flag's row kept apart:
  :mod:`act_jax.backends.loop_invariant`), so they are computed before the
  scan, for all ``t`` in one batched product, and their cotangent, summed over
  every ponder step the backward scan takes, is multiplied back once after it.

  Args:
    step_fn: the step function (see :data:`act_jax.StepFn`).
    params: its parameters.
    state: a state of the batch shape.
    inputs: time-major, leaves ``[T, batch, ...]``.

  Returns:
    ``(step_fn, params, inputs)`` to run the sequence with: the step over the
    invariant values, the shared ones and the per-example ones (leaves ``[T,
    batch, ...]``); the arguments themselves where nothing is invariant.
  """
  first_inputs = jax.tree.map(lambda x: x[0], inputs)
  part = loop_invariant.split_loop_invariants(step_fn, params, state, first_inputs,
                                              jnp.int32(0))
  if part is None:
    return step_fn, params, inputs
  shared, per_example = jax.vmap(part.invariant, in_axes=(None, 0),
                                 out_axes=(None, 0))(params, inputs)
  return part.step_fn, shared, per_example


def ponder_sequence(step_fn: while_loop.HoistedStepFn, max_steps: int, threshold: float,
                    params_and_consts: tuple[PyTree, tuple[jax.Array, ...]],
                    initial_state: PyTree, inputs: PyTree, mask: jax.Array, *,
                    chunk_steps: int, independent_examples: bool, first_step_flag_only: bool,
                    remat: bool) -> tuple[PyTree, tuple[PyTree, PonderStats]]:
  """Runs ACT over input steps ``t = 0 .. T-1`` (Eqs. 3-13 per step).

  Args:
    step_fn: the step function as :func:`hoist` returns it.
    max_steps: the cap ``M`` (Eq. 13).
    threshold: ``1 - epsilon`` (Eq. 7).
    params_and_consts: the step function's parameters and the values
      :func:`hoist` returned with it (empty with ``independent_examples``).
    initial_state: ``s_0``.
    inputs: time-major, leaves ``[T, batch, ...]``.
    mask: bool ``[T, batch]``; False: the example skips the input step.
    chunk_steps: steps recorded per chunk for the backward pass.
    independent_examples: compact the batch as examples halt
      (:mod:`act_jax.backends.compact`).
    first_step_flag_only: see :func:`act_jax.backends.while_loop.later_steps_fn`.
    remat: the backward pass recomputes each input step's first ponder step
      instead of keeping its residuals.

  Returns:
    The state after the last input step, and time-major outputs and
    :class:`act_jax.PonderStats` of every input step.
  """
  if independent_examples and params_and_consts[1]:
    raise ValueError("compaction needs a step function that closes over no traced values")
  loop = compact if independent_examples else while_loop
  after_first_step = functools.partial(loop.after_first_step, step_fn, max_steps, threshold,
                                       min(chunk_steps, max_steps), first_step_flag_only)
  batch = jnp.shape(mask)[1]
  sizes = step_two_sizes(batch) if independent_examples else (batch,)
  return _sequence(step_fn, sizes, after_first_step, max_steps, threshold, remat,
                   params_and_consts, initial_state, inputs, mask)


STEP_TWO_LEVELS = 3
"""Batch sizes ponder step 2 may run at with compaction: ``B, B/2, B/4`` (each >= 2).

Step 2 is straight-line code, so its smaller batches cost no loop and no
record, only a gather and a scatter of the running examples: on one CPU core an
LSTM 256 step at batch 8 and 4 took 62 % and 37 % of its time at batch 16. An
LM whose bytes mostly halt at step 1 then pays step 2 for about the bytes that
take it.
"""


def step_two_sizes(batch: int) -> tuple[int, ...]:
  """The batch sizes of :data:`STEP_TWO_LEVELS`, halving from ``batch``, all >= 2."""
  sizes = [batch]
  while len(sizes) < STEP_TWO_LEVELS and sizes[-1] // 2 >= 2:
    sizes.append(sizes[-1] // 2)
  return tuple(sizes)


def _after_step_one(max_steps, threshold, state, mask, step_out: PonderStep) -> halting.Halting:
  """The halting state after ponder step 1 (Eqs. 5-9), from that step's output."""
  carry = halting.initial_halting(step_out, state, mask, max_steps)
  return halting.advance(carry, step_out, jnp.int32(0), max_steps, threshold)


def _second_step_at(step_fn, max_steps, threshold, size: int, params, inputs,
                    carry: halting.Halting) -> halting.Halting:
  """Ponder step 2 (Eqs. 5-9) as straight-line code, from the halting state after
  step 1: on the whole batch, or on ``size`` slots holding its running examples
  (:func:`act_jax.backends.compact.gather_running`)."""
  if size == carry.tally.shape[0]:
    out = step_fn(params, carry.state, inputs, jnp.int32(1))
    return halting.advance(carry, out, jnp.int32(1), max_steps, threshold)
  index, smaller, smaller_inputs = compact.gather_running(carry, inputs, size)
  out = step_fn(params, smaller.state, smaller_inputs, jnp.int32(1))
  return compact.scatter_back(
      carry, index, halting.advance(smaller, out, jnp.int32(1), max_steps, threshold))


def _step_two_level(sizes: tuple[int, ...], carry: halting.Halting) -> jax.Array:
  """The index into ``sizes`` of the smallest batch that holds every running example."""
  running = jnp.sum(carry.running, dtype=jnp.int32)
  return sum((running <= size).astype(jnp.int32) for size in sizes[1:])


def _second_step(step_fn, max_steps, threshold, sizes: tuple[int, ...], params, inputs,
                 carry: halting.Halting) -> halting.Halting:
  """:func:`_second_step_at` on the smallest of ``sizes`` that holds every running example."""
  at = [functools.partial(_second_step_at, step_fn, max_steps, threshold, size, params, inputs)
        for size in sizes]
  return jax.lax.switch(_step_two_level(sizes, carry), at, carry) if len(at) > 1 else at[0](carry)


def _past_step_two(second_step, after_first_step, params, inputs,
                   carry: halting.Halting) -> halting.Halting:
  """Ponder step 2, then the loop from step 3 (it takes no step once every example has halted)."""
  return after_first_step(params, inputs, second_step(params, inputs, carry), start_index=2)


def _after_step_one_forward(second_step, after_first_step, params, inputs,
                            carry: halting.Halting) -> halting.Halting:
  """Ponder steps 2, 3, ... in the forward pass: step 2 as straight-line code,
  the loop only if an example still runs after it."""
  carry = second_step(params, inputs, carry)
  return jax.lax.cond(jnp.any(carry.running),
                      functools.partial(after_first_step, params, inputs, start_index=2),
                      lambda carry: carry, carry)


def _scan_forward(step_fn, second_step, after_first_step, max_steps, threshold, params,
                  initial_state, inputs, mask, keep_first_step: bool,
                  inputs_diff: tuple[bool, ...] | None):
  """The forward scan; per input step it also returns the state entering it and,
  with ``keep_first_step``, its first ponder step's output and stored residuals
  (linearized with respect to the input leaves flagged in ``inputs_diff``; the
  pullback's structure is written into the returned dict)."""
  structure = {}

  def input_step(state, xs):
    x, mask_t = xs
    if keep_first_step:
      if "plan" not in structure:  # one plan, so one residual order, for every input step
        structure["plan"] = step_pullback.plan_residuals(step_fn, params, state, x,
                                                         jnp.int32(0), inputs_diff)
      lin = structure["plan"].linearize(params, state, x, jnp.int32(0))
      step_out, kept = lin.out, (lin.out, lin.stored)
    else:
      step_out, kept = step_fn(params, state, x, jnp.int32(0)), ()
    carry = _after_step_one(max_steps, threshold, state, mask_t, step_out)
    carry = jax.lax.cond(jnp.any(carry.running),
                         functools.partial(_after_step_one_forward, second_step,
                                           after_first_step, params, x),
                         lambda carry: carry, carry)
    result = halting.finish(carry, state)
    return result.state, (result.output, result.stats, state, kept)

  final_state, (outputs, stats, states, kept) = jax.lax.scan(input_step, initial_state,
                                                             (inputs, mask))
  return final_state, (outputs, stats), (states, kept), structure


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4, 5))
def _sequence(step_fn, sizes, after_first_step, max_steps, threshold, remat, params,
              initial_state, inputs, mask):
  second_step = functools.partial(_second_step, step_fn, max_steps, threshold, sizes)
  final_state, per_step, _, _ = _scan_forward(step_fn, second_step, after_first_step, max_steps,
                                              threshold, params, initial_state, inputs, mask,
                                              keep_first_step=False, inputs_diff=None)
  return final_state, per_step


def _sequence_fwd(step_fn, sizes, after_first_step, max_steps, threshold, remat, params,
                  initial_state, inputs, mask):
  second_step = functools.partial(_second_step, step_fn, max_steps, threshold, sizes)
  (params, initial_state, inputs, mask), (_, _, inputs_perturbed, _) = (
      while_loop.unwrap_primals((params, initial_state, inputs, mask)))
  params, initial_state, inputs = while_loop.reverse_mode_only((params, initial_state, inputs))
  inputs_diff = step_pullback.differentiable_leaves(inputs, inputs_perturbed)
  final_state, per_step, (states, kept), structure = _scan_forward(
      step_fn, second_step, after_first_step, max_steps, threshold, params, initial_state,
      inputs, mask,
      keep_first_step=not remat, inputs_diff=inputs_diff)
  static = while_loop.Static((structure.get("plan"), inputs_diff))
  steps = per_step[1].steps
  most_steps = jnp.max(jnp.reshape(steps, (steps.shape[0], -1)), axis=1)  # the largest N per t
  return (final_state, per_step), (params, inputs, mask, states, kept, most_steps, static)


def _float0_like(x) -> np.ndarray:
  return np.zeros(jnp.shape(x), jax.dtypes.float0)


def _sequence_bwd(step_fn, sizes, after_first_step, max_steps, threshold, remat,
                  residuals, cts):
  """Backpropagates through the input steps, last first, carrying ``dL/ds_t`` and
  the parameter cotangent summed so far."""
  params, inputs, mask, states, kept, most_steps, static = residuals
  plan, inputs_diff = static.value
  ct_final_state, (ct_outputs, ct_stats) = while_loop.instantiate_zeros(cts)
  params_diff, merge_params = step_pullback.split_differentiable(params)
  accumulate_in = lambda p: jnp.promote_types(p.dtype, halting.MIN_HALTING_DTYPE)
  add = lambda total, d: total + d.astype(total.dtype)

  def input_step(carry, xs):
    ct_state, ct_params = carry
    x, mask_t, state, kept_t, most_steps_t, ct_output, ct_remainder, ct_probs = xs
    x_diff, merge_inputs = step_pullback.split_differentiable(x, inputs_diff)
    if remat:
      lin, step_plan = step_pullback.linearize_step(step_fn, params, state, x, jnp.int32(0),
                                                    inputs_diff)
      step_out, stored = lin.out, lin.stored
    else:
      (step_out, stored), step_plan = kept_t, plan
    pullback = step_plan.rebuild(stored, params, state, x, jnp.int32(0), step_out.state)
    carry_1 = _after_step_one(max_steps, threshold, state, mask_t, step_out)

    def later_steps(rest, ct_params):
      """Steps 2, 3, ... ran (``rest``): re-run them recording, backpropagate."""
      def after_step_one_to_finish(p_diff, x_diff, s, out):
        carry = _after_step_one(max_steps, threshold, s, mask_t, out)
        carry = rest(merge_params(p_diff), merge_inputs(x_diff), carry)
        return halting.finish(carry, s)

      _, vjp = jax.vjp(after_step_one_to_finish, params_diff, x_diff, state, step_out)
      d_params, d_inputs, d_state, d_step_out = vjp(PonderResult(
          ct_state, ct_output, PonderStats(_float0_like(carry_1.steps), ct_remainder, ct_probs)))
      return jax.tree.map(add, ct_params, d_params), d_inputs, d_state, d_step_out

    def halted(ct_params):
      """Every example halted at step 1 or is masked: the halting unit gets no
      gradient (p^1 = R = 1 and rho = 2 do not depend on h^1, Eq. 20), ``s_t = s^1``
      and ``y_t = y^1`` for the computed examples, and masked ones keep their state."""
      p_1 = carry_1.halting_probs[..., 0]  # 1 (NaN for a NaN halting unit), 0 if masked
      dtype = p_1.dtype
      weighted = lambda g, like: (halting.expand(p_1, g) * g.astype(dtype)).astype(like.dtype)
      d_step_out = PonderStep(
          state=jax.tree.map(weighted, ct_state, step_out.state),
          output=jax.tree.map(weighted, ct_output, step_out.output),
          halting_logit=jnp.zeros_like(step_out.halting_logit))
      d_state = jax.tree.map(
          lambda g, s: jnp.where(halting.expand(mask_t, g), 0.0, g).astype(s.dtype),
          ct_state, state)
      return ct_params, jax.tree.map(jnp.zeros_like, x_diff), d_state, d_step_out

    # Every example halted at step 1; at step 2 at the latest (straight-line code on
    # the batch size the forward pass took it at, plain autodiff); or some ran on
    # (the loop's VJP).
    branches = (halted,
                *(functools.partial(later_steps, functools.partial(
                    _second_step_at, step_fn, max_steps, threshold, size)) for size in sizes),
                functools.partial(later_steps, functools.partial(
                    _past_step_two, functools.partial(_second_step, step_fn, max_steps,
                                                      threshold, sizes), after_first_step)))
    branch = jnp.where(most_steps_t <= 1, 0, jnp.where(
        most_steps_t == 2, 1 + _step_two_level(sizes, carry_1), len(branches) - 1))
    ct_params, d_inputs, d_state, d_step_out = jax.lax.switch(branch, branches, ct_params)
    d_params_1, d_state_1, d_inputs_1 = pullback(d_step_out)
    ct_params = jax.tree.map(add, ct_params, d_params_1)
    ct_state = jax.tree.map(lambda d, d_1: d + d_1.astype(d.dtype), d_state, d_state_1)
    return (ct_state, ct_params), jax.tree.map(add, d_inputs, d_inputs_1)

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, accumulate_in(p)), params_diff)
  (ct_initial_state, ct_params), ct_inputs_diff = jax.lax.scan(
      input_step, (ct_final_state, zeros),
      (inputs, mask, states, kept, most_steps, ct_outputs, ct_stats.remainder,
       ct_stats.halting_probs),
      reverse=True)
  return (while_loop.cotangent_of(params, jax.tree.leaves(ct_params)), ct_initial_state,
          while_loop.cotangent_of(inputs, ct_inputs_diff, inputs_diff), _float0_like(mask))


# Symbolic zeros: inputs that are not differentiated (the data a network reads)
# get no cotangent computed, step by step; unused outputs arrive as SymbolicZero.
_sequence.defvjp(_sequence_fwd, _sequence_bwd, symbolic_zeros=True)
