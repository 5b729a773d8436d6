"""The ``"while"`` backend of :func:`act_jax.ponder`: early exit, custom VJP over
the steps taken.

A ``jax.lax.while_loop`` stops as soon as every example of the batch has halted
(halted examples are masked). Reverse-mode autodiff through a while loop is not
supported by JAX, so the loop has a custom VJP whose backward pass also runs only
the steps that were taken (Eqs. 14-20). The forward pass records the pullback
residuals of the first ``chunk`` steps (those its
:class:`~act_jax.backends.step_pullback.ResidualPlan` cannot rebuild from the
recorded states) and a state checkpoint every ``chunk`` steps; the backward
pass recomputes later chunks from their checkpoints. Reverse mode only.

:func:`run_segment` is the loop itself, resumable: it starts from any step and
halting state and stops once at most ``stop_count`` examples run, with a VJP
with respect to the incoming halting state too. :func:`ponder` is one segment
from the start to the end; :mod:`act_jax.backends.compact` chains several on
ever smaller batches.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from act_jax import halting
from act_jax.backends.loop_invariant import hoist_loop_invariants
from act_jax.backends.step_pullback import (LinearizedStep, ResidualPlan, differentiable_leaves,
                                            plan_residuals, split_differentiable)
from act_jax.ponder_types import PonderResult, PonderStep, PyTree, StepFn


def ponder(step_fn: StepFn, max_steps: int, threshold: float, params: PyTree, state: PyTree,
           inputs: PyTree, mask: jax.Array, *, chunk_steps: int,
           first_step_flag_only: bool = False) -> PonderResult:
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
    first_step_flag_only: ``step_fn`` reads ``step_index`` only through
      ``step_index == 0``; steps after the first then get the constant index
      1 (see :func:`later_steps_fn`).

  Returns:
    The :class:`act_jax.PonderResult`.
  """
  step_out = jax.eval_shape(step_fn, params, state, inputs, jnp.int32(0))
  carry = halting.initial_halting(step_out, state, mask, max_steps)
  carry = first_step_then(
      step_fn, max_steps, threshold, params, inputs, carry,
      functools.partial(after_first_step, step_fn, max_steps, threshold, chunk_steps,
                        first_step_flag_only, params, inputs))
  return halting.finish(carry, state)


def after_first_step(step_fn: StepFn, max_steps: int, threshold: float, chunk_steps: int,
                     first_step_flag_only: bool, params: PyTree, inputs: PyTree,
                     carry: halting.Halting, start_index: int = 1) -> halting.Halting:
  """Ponder steps ``start_index + 1``, ... (2, 3, ... by default) from the halting
  state after ``start_index`` steps, until every example has halted;
  differentiable (reverse mode) as :func:`run_segment`. What the steps compute
  from ``params`` and ``inputs`` alone is computed once, before the loop (see
  :mod:`act_jax.backends.loop_invariant`)."""
  split = hoist_loop_invariants(later_steps_fn(step_fn, first_step_flag_only), params,
                                carry.state, inputs, jnp.int32(start_index))
  return run_segment(split.step_fn, max_steps, threshold, chunk_steps, 0, split.shared,
                     split.per_example, carry, jnp.int32(start_index))[0]


def later_steps_fn(step_fn: StepFn, first_step_flag_only: bool) -> StepFn:
  """The step function the loops after step 1 call.

  With ``first_step_flag_only`` (``step_fn`` reads ``step_index`` only through
  the first-step flag ``step_index == 0`` of Eq. 3) it is ``step_fn`` at the
  constant index 1, so every loop iteration evaluates the same function of the
  state: whatever the step computes from ``params`` and ``inputs`` alone (a
  cell's input projection ``[x; 0] W_x``) is loop-invariant, and
  :func:`~act_jax.backends.loop_invariant.hoist_loop_invariants` computes it
  once, before the loops, forward and backward.
  """
  if not first_step_flag_only:
    return step_fn
  return functools.partial(_at_index_one, step_fn)


def _at_index_one(step_fn: StepFn, params, state, inputs, step_index) -> PonderStep:
  del step_index  # every step it serves is past the first
  return step_fn(params, state, inputs, jnp.int32(1))


def first_step_then(step_fn: StepFn, max_steps: int, threshold: float, params: PyTree,
                    inputs: PyTree, carry: halting.Halting,
                    rest: Callable[[halting.Halting], halting.Halting]) -> halting.Halting:
  """Takes ponder step 1, then ``rest(carry)`` only if an example is still running.

  Every example takes step 1 (N >= 1, Eq. 13), so it runs as straight-line code
  that XLA fuses with what surrounds it and JAX differentiates directly (N is
  a constant there too: the halting test only selects). Where step 1 halts
  every example (N = 1, common in trained networks) the loops that follow are
  skipped, forward and backward.
  """
  out = step_fn(params, carry.state, inputs, jnp.int32(0))
  carry = halting.advance(carry, out, jnp.int32(0), max_steps, threshold)
  return jax.lax.cond(jnp.any(carry.running), rest, lambda carry: carry, carry)


def run_segment(step_fn: StepFn, max_steps: int, threshold: float, chunk_steps: int,
                stop_count: int, params: PyTree, inputs: PyTree, carry: halting.Halting,
                start_index: jax.Array) -> tuple[halting.Halting, jax.Array]:
  """Runs ponder steps from ``start_index`` until at most ``stop_count`` examples run.

  Differentiable (reverse mode) with respect to ``params``, ``inputs`` and the
  inexact fields of ``carry``; the backward pass runs only the steps taken.

  Args:
    step_fn: the step function; it may close over traced values (they are
      hoisted with ``jax.closure_convert`` at the shapes given here).
    max_steps: the cap ``M`` (Eq. 13).
    threshold: ``1 - epsilon`` (Eq. 7).
    chunk_steps: steps recorded per chunk for the backward pass.
    stop_count: the loop stops once no more than this many examples run.
    params: the step function's parameters.
    inputs: ``x_t``.
    carry: the halting state after ``start_index`` steps.
    start_index: the 0-based index of the next ponder step, int32.

  Returns:
    The halting state where the loop stopped, and the index of the next step.
  """
  closed_fn, consts = jax.closure_convert(step_fn, params, carry.state, inputs, start_index)
  return _segment(HoistedStepFn(closed_fn), max_steps, threshold,
                  min(chunk_steps, max_steps), stop_count, (params, tuple(consts)), inputs,
                  carry, start_index)


REVERSE_MODE_ONLY = (
    'the "while" backend is reverse-mode only (jax.grad, jax.vjp); for forward mode '
    '(jax.jvp, jax.jacfwd) or higher-order derivatives (jax.hessian, grad of grad) use '
    'backend="scan"')


@contextlib.contextmanager
def forward_mode_is_one_error() -> Iterator[None]:
  """Turns JAX's error for ``jax.jvp`` of a custom VJP into :data:`REVERSE_MODE_ONLY`.

  Where JAX raises it while this code calls the loop (``jax.jvp`` of an
  un-jitted function); under ``jit`` JAX raises its own error when compiling.
  """
  try:
    yield
  except TypeError as e:
    if "forward-mode autodiff (jvp) to a custom_vjp" not in str(e):
      raise
    raise TypeError(REVERSE_MODE_ONLY) from e


@jax.custom_jvp
def reverse_mode_only(tree: PyTree) -> PyTree:
  """``tree`` unchanged, but differentiating it raises :data:`REVERSE_MODE_ONLY`.

  The forward rules of the custom VJPs (this module's and
  :mod:`act_jax.backends.while_sequence`'s) pass their inputs through it: a
  forward rule is differentiated only when a derivative of the loop is
  differentiated again (``jax.hessian``, grad of grad), and its backward rule,
  made of while loops, cannot be.
  """
  return tree


@reverse_mode_only.defjvp
def _differentiated(primals, tangents):
  del primals, tangents
  raise TypeError(REVERSE_MODE_ONLY)


class HoistedStepFn:
  """A closure-converted step function taking ``(params, consts)`` as params."""

  def __init__(self, closed_fn: Callable[..., PonderStep]):
    self._closed_fn = closed_fn

  def __call__(self, params_and_consts, state, inputs, step_index) -> PonderStep:
    params, consts = params_and_consts
    return self._closed_fn(params, state, inputs, step_index, *consts)


class Static:
  """Static (non-array) data carried through custom_vjp residuals as pytree aux data."""

  def __init__(self, value):
    self.value = value


jax.tree_util.register_pytree_node(Static, lambda s: ((), s.value), lambda v, _: Static(v))


def cotangent_of(tree: PyTree, diff_cts: list[jax.Array],
                 is_diff: tuple[bool, ...] | None = None) -> PyTree:
  """Cotangents for ``tree``: ``diff_cts`` for the differentiated leaves (see
  :func:`split_differentiable`), zeros for other inexact leaves, float0 zeros else."""
  leaves, treedef = jax.tree.flatten(tree)
  is_diff = differentiable_leaves(tree) if is_diff is None else is_diff
  it = iter(diff_cts)
  out = []
  for x, diff in zip(leaves, is_diff):
    if diff:
      out.append(next(it).astype(jnp.result_type(x)))
    elif jnp.issubdtype(jnp.result_type(x), jnp.inexact):
      out.append(jnp.zeros(jnp.shape(x), jnp.result_type(x)))
    else:
      out.append(np.zeros(jnp.shape(x), jax.dtypes.float0))
  return treedef.unflatten(out)


def unwrap_primals(tree: PyTree) -> tuple[PyTree, PyTree]:
  """Splits the ``CustomVJPPrimal`` leaves a ``symbolic_zeros`` forward rule gets
  into the values and a tree of their ``perturbed`` bits."""
  is_primal = lambda x: isinstance(x, jax.custom_derivatives.CustomVJPPrimal)
  return (jax.tree.map(lambda x: x.value, tree, is_leaf=is_primal),
          jax.tree.map(lambda x: x.perturbed, tree, is_leaf=is_primal))


def instantiate_zeros(tree: PyTree) -> PyTree:
  """Replaces the ``SymbolicZero`` cotangents a ``symbolic_zeros`` backward rule
  gets (for outputs the loss does not use) with zero arrays."""
  is_zero = lambda x: isinstance(x, jax.custom_derivatives.SymbolicZero)
  return jax.tree.map(lambda x: np.zeros(x.shape, x.dtype) if is_zero(x) else x, tree,
                      is_leaf=is_zero)


def _record_buffers(plan: ResidualPlan, params, state, inputs, step_index, chunk: int):
  """Buffers for the recorded residuals, states and outputs of ``chunk`` steps.

  The states buffer is ``chunk + 1`` long: slot 0 holds the state entering the
  chunk (written by :func:`_enter_chunk`), slot ``k + 1`` the state after the
  chunk's step ``k``, frozen where the example has halted; so slots ``k`` and
  ``k + 1`` are step ``k``'s incoming and new state (the frozen state equals
  the new one wherever the backward pass sends a nonzero cotangent).
  Uninitialised where the backend allows (GPU); only written slots are read,
  so one set of buffers serves chunk after chunk.
  """
  def stored_and_output(*args):
    lin = plan.linearize(*args)
    return lin.stored, lin.out.output

  stored, output = jax.eval_shape(stored_and_output, params, state, inputs, step_index)
  empty = lambda length: lambda x: jax.lax.empty((length,) + x.shape, x.dtype)
  return (jax.tree.map(empty(chunk), stored), jax.tree.map(empty(chunk + 1), state),
          jax.tree.map(empty(chunk), output))


def _enter_chunk(buffers, state: PyTree):
  """Writes the state entering a chunk into slot 0 of the states buffer."""
  stored, states, outputs = buffers
  return stored, jax.tree.map(lambda buf, s: jax.lax.dynamic_update_index_in_dim(
      buf, s, 0, 0), states, state), outputs


def _record(buffers, lin: LinearizedStep, new_state: PyTree, slot: jax.Array):
  """Writes one linearized step and the state it leaves into the record buffers."""
  stored, states, outputs = buffers
  write = lambda at: lambda buf, x: jax.lax.dynamic_update_index_in_dim(buf, x, at, 0)
  return (jax.tree.map(write(slot), stored, lin.stored),
          jax.tree.map(write(slot + 1), states, new_state),
          jax.tree.map(write(slot), outputs, lin.out.output))


def _still_running(carry: halting.Halting, stop_count: int) -> jax.Array:
  """Whether more than ``stop_count`` examples are still running."""
  return jnp.sum(carry.running, dtype=jnp.int32) > stop_count


def _run_segment(step_fn, max_steps, threshold, chunk, stop_count, params, inputs, carry,
                 start_index, inputs_diff: tuple[bool, ...] | None):
  """The forward while loop of :func:`run_segment`.

  With ``inputs_diff`` (which input leaves are differentiated; None: no
  recording) it runs in two phases: the first ``chunk`` steps are
  linearized and their pullback residuals, states and outputs (for
  ``dL/dp^n``, Eq. 17) recorded; later steps run plainly, keeping the state
  entering every ``chunk``-th step as a checkpoint from which the backward
  pass recomputes that chunk. Buffers are ``chunk`` and
  ``ceil(max_steps / chunk)`` long, so their cost does not grow with
  ``max_steps`` times the state.

  Returns:
    The halting state, the index of the next step and the record (or None).
  """
  num_chunks = -(-max_steps // chunk)
  not_done = lambda carry: _still_running(carry, stop_count)

  def plain_steps(step_index, carry, stop_index):
    """Runs steps until ``stop_index`` or until few enough examples run."""
    def body(loop):
      step_index, carry = loop
      out = step_fn(params, carry.state, inputs, step_index)
      return step_index + 1, halting.advance(carry, out, step_index, max_steps, threshold)

    return jax.lax.while_loop(lambda loop: (loop[0] < stop_index) & not_done(loop[1]), body,
                              (step_index, carry))

  if inputs_diff is None:
    end_index, carry = plain_steps(start_index, carry, max_steps)
    return carry, end_index, None

  plan = plan_residuals(step_fn, params, carry.state, inputs, start_index, inputs_diff)

  def recording_body(loop):
    step_index, carry, buffers = loop
    lin = plan.linearize(params, carry.state, inputs, step_index)
    carry = halting.advance(carry, lin.out, step_index, max_steps, threshold)
    return step_index + 1, carry, _record(buffers, lin, carry.state, step_index - start_index)

  buffers = _enter_chunk(
      _record_buffers(plan, params, carry.state, inputs, start_index, chunk),
      carry.state)
  end_index, carry, buffers = jax.lax.while_loop(
      lambda loop: (loop[0] < start_index + chunk) & not_done(loop[1]), recording_body,
      (start_index, carry, buffers))
  checkpoints = jax.tree.map(lambda x: jax.lax.empty((num_chunks,) + x.shape, x.dtype),
                             carry.state)

  def checkpointed_chunk(loop):  # keeps the state entering the chunk, then runs it
    step_index, carry, checkpoints = loop
    slot = (step_index - start_index) // chunk
    checkpoints = jax.tree.map(
        lambda buf, s: jax.lax.dynamic_update_index_in_dim(buf, s, slot, 0),
        checkpoints, carry.state)
    step_index, carry = plain_steps(step_index, carry, step_index + chunk)
    return step_index, carry, checkpoints

  if num_chunks > 1:
    end_index, carry, checkpoints = jax.lax.while_loop(
        lambda loop: not_done(loop[1]), checkpointed_chunk, (end_index, carry, checkpoints))
  static = Static((plan,
                   jax.eval_shape(step_fn, params, carry.state, inputs,
                                  start_index).halting_logit.dtype, inputs_diff))
  return carry, end_index, (buffers, checkpoints, static)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _segment(step_fn, max_steps, threshold, chunk, stop_count, params, inputs, carry,
             start_index):
  carry, end_index, _ = _run_segment(step_fn, max_steps, threshold, chunk, stop_count, params,
                                     inputs, carry, start_index, inputs_diff=None)
  return carry, end_index


def _segment_fwd(step_fn, max_steps, threshold, chunk, stop_count, params, inputs, carry_in,
                 start_index):
  (params, inputs, carry_in, start_index), (_, inputs_perturbed, _, _) = unwrap_primals(
      (params, inputs, carry_in, start_index))
  params, inputs, carry_in = reverse_mode_only((params, inputs, carry_in))
  carry, end_index, record_state = _run_segment(
      step_fn, max_steps, threshold, chunk, stop_count, params, inputs, carry_in, start_index,
      inputs_diff=differentiable_leaves(inputs, inputs_perturbed))
  residuals = (params, inputs, carry_in.state, carry_in.running, record_state, start_index,
               end_index, carry.steps, carry.halting_probs, carry.cumulative)
  return (carry, end_index), residuals


def _segment_bwd(step_fn, max_steps, threshold, chunk, stop_count, residuals, cts):
  """Backpropagates through the steps taken, last to first (Eqs. 14-20).

  With ``g_p^n = dL/dp^n`` (Eq. 17), the halting rule's backward step
  (:func:`act_jax.halting.rule_for`) turns ``g_p^n`` and ``a = dL/dc``, for the
  cumulative halting sum ``c`` (``dL/dc`` of the ``c`` handed on when the
  segment stops, so ``dL/dc_in`` at the start), into the halting logit's
  cotangent: for ACT, ``dL/dh^n = g_p^n - g_p^N - dL/dR`` for ``n < N``
  (Eq. 19) and 0 for ``n = N`` (Eq. 20); for PonderNet see
  :func:`act_jax.pondernet.backward_step`. The state
  ``s^n`` receives ``p^n dL/d(state_sum)`` plus what flows back from step
  ``n + 1``. Each step's pullback is rebuilt from recorded residuals: the
  forward pass's for the first chunk of steps, and for each later chunk (last
  first) residuals recomputed from its checkpoint.
  """
  del stop_count
  (params, inputs, state_in, running_in, record_state, start_index, end_index, steps,
   probs, cumulative_out) = residuals
  _, halting_backward = halting.rule_for(threshold)
  ct, _ = instantiate_zeros(cts)
  first_chunk, checkpoints, static = record_state
  plan, logit_dtype, inputs_diff = static.value
  dtype = ct.tally.dtype
  batch_ndim = steps.ndim
  halts_here = running_in & (steps > 0)
  # Each example runs steps [start_index, until): to its N, or to the segment's end.
  until = jnp.where(running_in, jnp.where(steps > 0, steps, end_index), 0)

  def recompute_chunk(chunk_index, buffers):
    """Re-runs the steps of chunk ``chunk_index`` from its checkpoint, recording
    into ``buffers`` (the previous chunk's, overwritten)."""
    start = start_index + chunk_index * chunk

    def body(loop):
      i, state, buffers = loop
      lin = plan.linearize(params, state, inputs, start + i)
      running = halting.expand_tree(start + i < until, state)
      state = jax.tree.map(jnp.where, running, lin.out.state, state)
      return i + 1, state, _record(buffers, lin, state, i)

    length = jnp.minimum(chunk, end_index - start)
    state = jax.tree.map(
        lambda buf: jax.lax.dynamic_index_in_dim(buf, chunk_index, keepdims=False), checkpoints)
    _, _, buffers = jax.lax.while_loop(lambda loop: loop[0] < length, body,
                                       (jnp.int32(0), state, _enter_chunk(buffers, state)))
    return buffers

  def backward_step(step_index, buffers, carry):
    """Backpropagates through step ``step_index``, recorded at its chunk slot."""
    ct_state, ct_params, ct_inputs, (grad_cumulative, cumulative) = carry
    slot = (step_index - start_index) % chunk
    at_slot = lambda k: lambda buf: jax.lax.dynamic_index_in_dim(buf, k, keepdims=False)
    stored_buffers, state_buffers, output_buffers = buffers
    stored, outputs = jax.tree.map(at_slot(slot), (stored_buffers, output_buffers))
    states = jax.tree.map(at_slot(slot + 1), state_buffers)
    pullback = plan.rebuild(stored, params, jax.tree.map(at_slot(slot), state_buffers), inputs,
                            step_index, states)
    running = step_index < until
    is_last = running & (step_index == steps - 1)
    at_step = lambda a: jax.lax.dynamic_index_in_dim(a, step_index, -1, keepdims=False)
    p = at_step(probs)
    grad_p = (halting.per_example_dot(ct.state_sum, states, batch_ndim, dtype)  # Eq. 17
              + halting.per_example_dot(ct.output_sum, outputs, batch_ndim, dtype)
              + at_step(ct.halting_probs))
    grad_logit, grad_cumulative, cumulative = halting_backward(
        grad_p, p, grad_cumulative, cumulative, running, is_last,
        step_index == max_steps - 1, ct.remainder)

    def to_step(g, later, like):  # dL/ds^n, dL/dy^n; zero where not running
      total = halting.expand(p, like) * g.astype(dtype) + later
      return jnp.where(halting.expand(running, like), total, 0.0).astype(like.dtype)

    ct_out = PonderStep(
        state=jax.tree.map(to_step, ct.state_sum, ct_state, states),
        output=jax.tree.map(lambda g, y: to_step(g, 0.0, y), ct.output_sum, outputs),
        halting_logit=grad_logit.astype(logit_dtype))
    d_params, d_state, d_inputs = pullback(ct_out)
    # A halted example's state is carried through the step unchanged.
    frozen = lambda d, later: d.astype(dtype) + jnp.where(
        halting.expand(running, later), 0.0, later)
    add = lambda acc, d: acc + d.astype(dtype)
    return (jax.tree.map(frozen, d_state, ct_state),
            jax.tree.map(add, ct_params, d_params), jax.tree.map(add, ct_inputs, d_inputs),
            (grad_cumulative, cumulative))

  def backward_chunk(buffers, start, stop, carry):
    """Backpropagates through steps ``stop - 1`` down to ``start``."""
    def step_body(inner):
      step_index, carry = inner
      return step_index - 1, backward_step(step_index - 1, buffers, carry)

    _, carry = jax.lax.while_loop(lambda inner: inner[0] > start, step_body, (stop, carry))
    return carry

  def later_chunk_body(loop):  # chunks 1, 2, ...: residuals recomputed, last chunk first
    chunk_index, carry, buffers = loop
    chunk_index = chunk_index - 1
    start = start_index + chunk_index * chunk
    buffers = recompute_chunk(chunk_index, buffers)
    carry = backward_chunk(buffers, start, jnp.minimum(start + chunk, end_index), carry)
    return chunk_index, carry, buffers

  zeros = lambda x: jnp.zeros(jnp.shape(x), dtype)
  params_diff, _ = split_differentiable(params)
  inputs_diff_leaves, _ = split_differentiable(inputs, inputs_diff)
  # The frozen state handed on receives ct.state at the step that produced it.
  carry = (jax.tree.map(lambda g: g.astype(dtype), ct.state),
           jax.tree.map(zeros, params_diff), jax.tree.map(zeros, inputs_diff_leaves),
           (ct.cumulative, cumulative_out))
  if jax.tree.leaves(checkpoints)[0].shape[0] > 1:  # some steps may be past the first chunk
    num_chunks = (end_index - start_index + chunk - 1) // chunk

    def later_chunks(carry):  # one set of buffers for all, allocated only if they run
      buffers = _record_buffers(plan, params, state_in, inputs, start_index, chunk)
      _, carry, _ = jax.lax.while_loop(lambda loop: loop[0] > 1, later_chunk_body,
                                       (num_chunks, carry, buffers))
      return carry

    carry = jax.lax.cond(num_chunks > 1, later_chunks, lambda carry: carry, carry)
  ct_state_in, ct_params, ct_inputs, (grad_cumulative_in, _) = backward_chunk(
      first_chunk, start_index, jnp.minimum(start_index + chunk, end_index), carry)
  columns = jnp.arange(probs.shape[-1])
  written = (columns >= start_index) & (columns < end_index)
  ct_carry_in = halting.Halting(
      state=jax.tree.map(lambda g, like: g.astype(like.dtype), ct_state_in, state_in),
      state_sum=ct.state_sum,
      output_sum=ct.output_sum,
      tally=halting.make_tally(grad_cumulative_in, jnp.where(halts_here, 0.0, ct.remainder), 0.0,
                               0.0, dtype),
      halting_probs=jnp.where(written, 0.0, ct.halting_probs))
  return (cotangent_of(params, ct_params), cotangent_of(inputs, ct_inputs, inputs_diff),
          ct_carry_in,
          np.zeros((), jax.dtypes.float0))


# Symbolic zeros: the forward pass learns which inputs are differentiated (the
# data fed to a network is not) and the backward pass computes no cotangent for
# the others; outputs the loss does not use arrive as ``SymbolicZero``.
_segment.defvjp(_segment_fwd, _segment_bwd, symbolic_zeros=True)
