"""The ``"while"`` backend of :func:`act_jax.ponder`: early exit, custom VJP over
the steps taken.

A ``jax.lax.while_loop`` stops as soon as every example of the batch has halted
(halted examples are masked). Reverse-mode autodiff through a while loop is not
supported by JAX, so the loop has a custom VJP whose backward pass also runs only
the steps that were taken (Eqs. 14-20). The forward pass records the pullback
residuals of the first ``chunk`` steps and a state checkpoint every ``chunk``
steps; the backward pass recomputes later chunks from their checkpoints.
Reverse mode only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from act_jax import halting
from act_jax.ponder_types import PonderResult, PonderStep, PyTree, StepFn


def ponder(step_fn: StepFn, max_steps: int, threshold: float, params: PyTree, state: PyTree,
           inputs: PyTree, mask: jax.Array, *, chunk_steps: int) -> PonderResult:
  """Runs ponder steps (Eqs. 3-13) until every example has halted.

  Args:
    step_fn: the step function (see :data:`act_jax.StepFn`); it may close over
      traced values (they are hoisted with ``jax.closure_convert``).
    max_steps: the cap ``M`` (Eq. 13).
    threshold: ``1 - epsilon`` (Eq. 7).
    params: the step function's parameters.
    state: ``s_{t-1}``.
    inputs: ``x_t``.
    mask: bool, ``batch_shape``; False: not computed.
    chunk_steps: steps recorded per chunk for the backward pass.

  Returns:
    The :class:`act_jax.PonderResult`.
  """
  step_index = jnp.zeros((), jnp.int32)
  closed_fn, consts = jax.closure_convert(step_fn, params, state, inputs, step_index)
  return _ponder_while(_HoistedStepFn(closed_fn), max_steps, threshold,
                       min(chunk_steps, max_steps), (params, tuple(consts)), state, inputs,
                       mask)


class _HoistedStepFn:
  """A closure-converted step function taking ``(params, consts)`` as params."""

  def __init__(self, closed_fn: Callable[..., PonderStep]):
    self._closed_fn = closed_fn

  def __call__(self, params_and_consts, state, inputs, step_index) -> PonderStep:
    params, consts = params_and_consts
    return self._closed_fn(params, state, inputs, step_index, *consts)



class _Static:
  """Static (non-array) data carried through custom_vjp residuals as pytree aux data."""

  def __init__(self, value):
    self.value = value


jax.tree_util.register_pytree_node(_Static, lambda s: ((), s.value), lambda v, _: _Static(v))


def _split_differentiable(tree: PyTree) -> tuple[list[Any], Callable[[list[Any]], PyTree]]:
  """Splits off the inexact leaves of ``tree``; returns them and a re-merger."""
  leaves, treedef = jax.tree.flatten(tree)
  is_diff = [jnp.issubdtype(jnp.result_type(x), jnp.inexact) for x in leaves]
  diff = [x for x, d in zip(leaves, is_diff) if d]

  def merge(new_diff):
    it = iter(new_diff)
    return treedef.unflatten([next(it) if d else x for x, d in zip(leaves, is_diff)])

  return diff, merge


def _cotangent_of(tree: PyTree, diff_cts: list[jax.Array]) -> PyTree:
  """Cotangents for ``tree``: ``diff_cts`` for inexact leaves, float0 zeros else."""
  leaves, treedef = jax.tree.flatten(tree)
  it = iter(diff_cts)
  out = []
  for x in leaves:
    if jnp.issubdtype(jnp.result_type(x), jnp.inexact):
      out.append(next(it).astype(jnp.result_type(x)))
    else:
      out.append(np.zeros(jnp.shape(x), jax.dtypes.float0))
  return treedef.unflatten(out)


class _LinearizedStep(NamedTuple):
  """One ponder step and its pullback, its residuals split for storage."""

  out: PonderStep
  stored: list[jax.Array]  # residuals that change from step to step
  treedef: Any  # the pullback's pytree structure
  invariant_at: list[int | None]  # per residual: its index among the loop invariants


def _linearize_step(step_fn, params, state, inputs, step_index) -> _LinearizedStep:
  """``jax.vjp`` of one step with respect to the inexact params, state and inputs.

  Residuals that are the loop-invariant ``params`` or ``inputs`` themselves
  (found by identity) are not stored per step: the backward pass passes them in
  again. Everything else the pullback needs is returned in ``stored``.
  """
  params_diff, merge_params = _split_differentiable(params)
  inputs_diff, merge_inputs = _split_differentiable(inputs)

  def step(p_diff, s, x_diff):
    return step_fn(merge_params(p_diff), s, merge_inputs(x_diff), step_index)

  out, pullback = jax.vjp(step, params_diff, state, inputs_diff)
  residuals, treedef = jax.tree.flatten(pullback)
  invariants = jax.tree.leaves((params, inputs))
  invariant_at = [next((i for i, v in enumerate(invariants) if r is v), None)
                  for r in residuals]
  stored = [r for r, i in zip(residuals, invariant_at) if i is None]
  return _LinearizedStep(out, stored, treedef, invariant_at)


def _record_buffers(step_fn, params, state, inputs, step_out: PonderStep, chunk: int):
  """``chunk``-long buffers for the recorded residuals, states and outputs.

  Uninitialised where the backend allows (GPU); only written slots are read.
  """
  stored = jax.eval_shape(lambda *a: _linearize_step(step_fn, *a).stored,
                          params, state, inputs, jnp.int32(0))
  return jax.tree.map(lambda x: jax.lax.empty((chunk,) + x.shape, x.dtype),
                      (stored, step_out.state, step_out.output))


def _record(buffers, lin: _LinearizedStep, slot: jax.Array):
  """Writes one linearized step into slot ``slot`` of the record buffers."""
  return jax.tree.map(lambda buf, x: buf.at[slot].set(x), buffers,
                      (lin.stored, lin.out.state, lin.out.output))


def _run_while(step_fn, max_steps, threshold, chunk, params, state, inputs, mask,
               record: bool):
  """The forward while loop.

  With ``record`` it runs in two phases: the first ``chunk`` steps are
  linearized and their pullback residuals, states and outputs (for
  ``dL/dp^n``, Eq. 17) recorded; later steps run plainly, keeping the state
  entering every ``chunk``-th step as a checkpoint from which the backward
  pass recomputes that chunk. Buffers are ``chunk`` and
  ``ceil(max_steps / chunk)`` long, so their cost does not grow with
  ``max_steps`` times the state.

  Returns:
    The result, the number of loop iterations and the record (or None).
  """
  step_out = jax.eval_shape(step_fn, params, state, inputs, jnp.int32(0))
  carry = halting.initial_halting(step_out, state, mask, max_steps)
  not_done = lambda step_index, carry, limit: (step_index < limit) & jnp.any(carry.running)

  def plain_body(loop):
    step_index, carry, checkpoints = loop
    if checkpoints is not None:
      slot = step_index // chunk
      checkpoints = jax.tree.map(
          lambda buf, s: buf.at[slot].set(jnp.where(step_index % chunk == 0, s, buf[slot])),
          checkpoints, carry.state)
    out = step_fn(params, carry.state, inputs, step_index)
    return step_index + 1, halting.advance(carry, out, step_index, max_steps, threshold), checkpoints

  if not record:
    steps_taken, carry, _ = jax.lax.while_loop(
        lambda loop: not_done(loop[0], loop[1], max_steps), plain_body,
        (jnp.int32(0), carry, None))
    return halting.finish(carry, state), steps_taken, None

  structure = {}

  def recording_body(loop):
    step_index, carry, buffers = loop
    lin = _linearize_step(step_fn, params, carry.state, inputs, step_index)
    structure.update(treedef=lin.treedef, invariant_at=tuple(lin.invariant_at))
    return (step_index + 1, halting.advance(carry, lin.out, step_index, max_steps, threshold),
            _record(buffers, lin, step_index))

  buffers = _record_buffers(step_fn, params, state, inputs, step_out, chunk)
  steps_taken, carry, buffers = jax.lax.while_loop(
      lambda loop: not_done(loop[0], loop[1], chunk), recording_body,
      (jnp.int32(0), carry, buffers))
  num_chunks = -(-max_steps // chunk)
  checkpoints = jax.tree.map(lambda x: jax.lax.empty((num_chunks,) + x.shape, x.dtype), state)
  if num_chunks > 1:
    steps_taken, carry, checkpoints = jax.lax.while_loop(
        lambda loop: not_done(loop[0], loop[1], max_steps), plain_body,
        (steps_taken, carry, checkpoints))
  static = _Static((structure["treedef"], structure["invariant_at"],
                    step_out.halting_logit.dtype))
  return halting.finish(carry, state), steps_taken, (buffers, checkpoints, static)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _ponder_while(step_fn, max_steps, threshold, chunk, params, state, inputs, mask):
  result, _, _ = _run_while(step_fn, max_steps, threshold, chunk, params, state, inputs,
                            mask, record=False)
  return result


def _ponder_while_fwd(step_fn, max_steps, threshold, chunk, params, state, inputs, mask):
  result, steps_taken, record_state = _run_while(
      step_fn, max_steps, threshold, chunk, params, state, inputs, mask, record=True)
  residuals = (params, state, inputs, mask, record_state, steps_taken, result.stats.steps,
               result.stats.halting_probs)
  return result, residuals


def _ponder_while_bwd(step_fn, max_steps, threshold, chunk, residuals, ct: PonderResult):
  """Backpropagates through the steps taken, last to first (Eqs. 14-20).

  For an example that took ``N`` steps, with ``g_p^n = dL/dp^n`` (Eq. 17):
  ``dL/dh^n = g_p^n - g_p^N - dL/dR`` for ``n < N`` (Eq. 19) and 0 for
  ``n = N`` (Eq. 20); the state ``s^n`` receives ``p^n dL/ds_t`` plus what
  flows back from step ``n + 1``. Each step's pullback is rebuilt from
  recorded residuals: the forward pass's for the first chunk of steps, and for
  each later chunk (last first) residuals recomputed from its checkpoint.
  """
  del max_steps, threshold
  params, state, inputs, mask, record_state, steps_taken, steps, probs = residuals
  first_chunk, checkpoints, static = record_state
  treedef, invariant_at, logit_dtype = static.value
  invariants = jax.tree.leaves((params, inputs))
  batch_ndim = steps.ndim
  dtype = probs.dtype  # the halting dtype

  def recompute_chunk(chunk_index):
    """Re-runs the steps of chunk ``chunk_index`` from its checkpoint, recording."""
    start = chunk_index * chunk

    def body(loop):
      i, state_in, buffers = loop
      lin = _linearize_step(step_fn, params, state_in, inputs, start + i)
      running = halting.expand_tree(start + i < steps, state_in)
      state_out = jax.tree.map(jnp.where, running, lin.out.state, state_in)
      return i + 1, state_out, _record(buffers, lin, i)

    length = jnp.minimum(chunk, steps_taken - start)
    state_in = jax.tree.map(lambda buf: buf[chunk_index], checkpoints)
    _, _, buffers = jax.lax.while_loop(
        lambda loop: loop[0] < length, body,
        (jnp.int32(0), state_in,
         jax.tree.map(lambda b: jax.lax.empty(b.shape, b.dtype), first_chunk)))
    return buffers

  def backward_step(step_index, buffers, carry):
    """Backpropagates through step ``step_index``, recorded at its chunk slot."""
    ct_state, ct_params, ct_inputs, last_grad_p = carry
    stored, states, outputs = jax.tree.map(lambda buf: buf[step_index % chunk], buffers)
    per_step = iter(stored)
    pullback = treedef.unflatten([next(per_step) if i is None else invariants[i]
                                  for i in invariant_at])
    running = step_index < steps
    is_last = step_index == steps - 1
    p = probs[..., step_index]
    grad_p = (halting.per_example_dot(ct.state, states, batch_ndim, dtype)  # Eq. 17
              + halting.per_example_dot(ct.output, outputs, batch_ndim, dtype)
              + ct.stats.halting_probs[..., step_index])
    last_grad_p = jnp.where(is_last, grad_p + ct.stats.remainder, last_grad_p)
    grad_h = jnp.where(running & ~is_last, grad_p - last_grad_p, 0.0)  # Eqs. 19-20
    grad_logit = grad_h * p * (1.0 - p)  # p^n = h^n wherever grad_h != 0

    def to_step(g, later, like):  # dL/ds^n, dL/dy^n; zero where not running
      total = halting.expand(p, like) * g.astype(dtype) + later
      return jnp.where(halting.expand(running, like), total, 0.0).astype(like.dtype)

    ct_out = PonderStep(
        state=jax.tree.map(to_step, ct.state, ct_state, states),
        output=jax.tree.map(lambda g, y: to_step(g, 0.0, y), ct.output, outputs),
        halting_logit=grad_logit.astype(logit_dtype))
    d_params, d_state, d_inputs = pullback(ct_out)
    # A halted example's state is carried through the step unchanged.
    frozen = lambda d, later: d.astype(dtype) + jnp.where(
        halting.expand(running, later), 0.0, later)
    add = lambda acc, d: acc + d.astype(dtype)
    return (jax.tree.map(frozen, d_state, ct_state),
            jax.tree.map(add, ct_params, d_params), jax.tree.map(add, ct_inputs, d_inputs),
            last_grad_p)

  def backward_chunk(buffers, start, stop, carry):
    """Backpropagates through steps ``stop - 1`` down to ``start``."""
    def step_body(inner):
      step_index, carry = inner
      return step_index - 1, backward_step(step_index - 1, buffers, carry)

    _, carry = jax.lax.while_loop(lambda inner: inner[0] > start, step_body, (stop, carry))
    return carry

  def later_chunk_body(loop):  # chunks 1, 2, ...: residuals recomputed, last chunk first
    chunk_index, carry = loop
    chunk_index = chunk_index - 1
    start = chunk_index * chunk
    carry = backward_chunk(recompute_chunk(chunk_index), start,
                           jnp.minimum(start + chunk, steps_taken), carry)
    return chunk_index, carry

  zeros = lambda x: jnp.zeros(jnp.shape(x), dtype)
  params_diff, _ = _split_differentiable(params)
  inputs_diff, _ = _split_differentiable(inputs)
  carry = (jax.tree.map(zeros, ct.state), jax.tree.map(zeros, params_diff),
           jax.tree.map(zeros, inputs_diff), jnp.zeros(steps.shape, dtype))
  if jax.tree.leaves(checkpoints)[0].shape[0] > 1:  # some steps are past the first chunk
    num_chunks = (steps_taken + chunk - 1) // chunk
    _, carry = jax.lax.while_loop(lambda loop: loop[0] > 1, later_chunk_body,
                                  (num_chunks, carry))
  ct_state0, ct_params, ct_inputs, _ = backward_chunk(
      first_chunk, 0, jnp.minimum(chunk, steps_taken), carry)
  passed_through = steps == 0  # masked out: the result's state is the input state
  ct_state0 = jax.tree.map(
      lambda through, back, like: (back + jnp.where(halting.expand(passed_through, like),
                                                    through.astype(dtype), 0.0)
                                   ).astype(jnp.result_type(like)),
      ct.state, ct_state0, state)
  return (_cotangent_of(params, ct_params), ct_state0, _cotangent_of(inputs, ct_inputs),
          np.zeros(mask.shape, jax.dtypes.float0))


_ponder_while.defvjp(_ponder_while_fwd, _ponder_while_bwd)
