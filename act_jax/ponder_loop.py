"""The ACT ponder loop for one input step (Graves 2016, Eqs. 3-13).

An ACT network updates its state ``N(t)`` times for input ``x_t``, halting when
the cumulative halting probability reaches ``1 - epsilon`` (or at the cap
``max_steps``), and returns the mean field of the intermediate states and
outputs, weighted by the halting distribution ``p_t^n``. This module holds the
one implementation of that arithmetic, as pure functions over pytrees, and two
interchangeable loop backends behind one signature:

* ``"while"``: a ``jax.lax.while_loop`` that stops as soon as every example of
  the batch has halted (halted examples are masked), differentiated through a
  custom VJP whose backward pass also runs only the steps that were taken. It
  keeps the states entering each step, ``O(max_steps * state)``, for the
  backward pass. Reverse mode only.
* ``"scan"``: a masked ``jax.lax.scan`` over all ``max_steps`` steps,
  differentiated by JAX itself. It is the reference the fast backend is tested
  against, and the choice for forward-mode or higher-order autodiff.

Both give the same values and the gradients of spec section 1.7: ``N(t)`` is a
constant, ``R(t) = 1 - sum_{n<N} h^n`` carries gradient into both the ponder
cost and the last weight ``p^N``, and ``h^N`` gets none (Eqs. 14-20).

Halting arithmetic (``h``, ``p``, ``R``, the cumulative sum and the
mean-field sums) is float32 whatever dtype the step function computes in.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Backend = Literal["while", "scan"]
BACKENDS: tuple[str, ...] = ("while", "scan")
DEFAULT_CHUNK_STEPS = 8


class PonderStep(NamedTuple):
  """What a step function returns for one ponder step ``n`` (Eqs. 3-5).

  Attributes:
    state: the new state ``s_t^n``, a pytree with the structure, shapes and
      dtypes of the state it was given.
    output: the step's output ``y_t^n``, a pytree whose leaves have the batch
      shape as leading axes (``()`` if the step has no output to average).
    halting_logit: the pre-sigmoid halting activation ``W_h s_t^n + b_h``, of
      shape ``batch_shape``; ``h_t^n = sigmoid(halting_logit)`` (Eq. 5).
  """

  state: PyTree
  output: PyTree
  halting_logit: jax.Array


StepFn = Callable[[PyTree, PyTree, PyTree, jax.Array], PonderStep]
"""``step_fn(params, state, inputs, step_index) -> PonderStep``.

``step_index`` is the 0-based ponder step ``n - 1`` as an int32 scalar; the
first-step flag of Eq. 3 is ``step_index == 0`` (see :func:`with_first_step_flag`).
"""


class PonderStats(NamedTuple):
  """Per-example ponder statistics; the same fields per input step or per sequence.

  Attributes:
    steps: ``N(t)``, the number of updates taken (Eq. 13), int32; 0 where the
      example (or input step) was masked out.
    remainder: ``R(t) = 1 - sum_{n<N} h_t^n`` (Eq. 8), float32; 0 where masked.
    halting_probs: ``p_t^n`` (Eq. 6), float32, with a trailing ``max_steps``
      axis, zero for ``n > N(t)``.
  """

  steps: jax.Array
  remainder: jax.Array
  halting_probs: jax.Array

  @property
  def ponder_cost(self) -> jax.Array:
    """``rho_t = N(t) + R(t)`` (Eq. 10); its gradient flows through R only."""
    return self.steps.astype(jnp.float32) + self.remainder


class PonderResult(NamedTuple):
  """The result of pondering on one input step.

  Attributes:
    state: the mean-field state ``s_t = sum_n p_t^n s_t^n`` (Eq. 9), in the
      dtypes of the input state. Examples masked out keep the input state.
    output: the mean-field output ``y_t = sum_n p_t^n y_t^n`` (Eq. 9), float32.
    stats: ``N``, ``R`` and ``p``, shape ``batch_shape`` (``p``: plus
      ``max_steps``).
  """

  state: PyTree
  output: PyTree
  stats: PonderStats


def with_first_step_flag(inputs: jax.Array, step_index: jax.typing.ArrayLike) -> jax.Array:
  """Appends the first-step flag ``delta_{n,1}`` of Eq. 3 as a last feature.

  Args:
    inputs: ``x_t`` of shape ``batch_shape + (features,)``.
    step_index: the 0-based ponder step.

  Returns:
    ``x_t^n`` of shape ``batch_shape + (features + 1,)``: 1 in the last
    feature at the first ponder step, 0 after.
  """
  flag = jnp.broadcast_to(
      (jnp.asarray(step_index) == 0).astype(inputs.dtype), inputs.shape[:-1] + (1,))
  return jnp.concatenate([inputs, flag], axis=-1)


def check_ponder_config(max_steps: Any, epsilon: Any, backend: Any = "while") -> None:
  """Raises ``ValueError`` naming the value if the ACT settings are invalid.

  Args:
    max_steps: the cap ``M`` (Eq. 13): a Python or NumPy integer >= 1.
    epsilon: the halting threshold slack: a real number in (0, 1).
    backend: one of :data:`BACKENDS`.
  """
  if isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral):
    raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
  if max_steps < 1:
    raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
  if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
    raise ValueError(f"epsilon must be a real number in (0, 1), got {epsilon!r}")
  if not 0.0 < float(epsilon) < 1.0:
    raise ValueError(f"epsilon must be in (0, 1), got {epsilon!r}")
  if backend not in BACKENDS:
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def ponder(
    step_fn: StepFn,
    params: PyTree,
    state: PyTree,
    inputs: PyTree,
    *,
    max_steps: int,
    epsilon: float = 0.01,
    mask: jax.typing.ArrayLike | None = None,
    backend: Backend = "while",
    chunk_steps: int = DEFAULT_CHUNK_STEPS,
) -> PonderResult:
  """Runs ACT for one input step over a batch (Graves 2016, Eqs. 3-13).

  For ``n = 1, 2, ...``: ``s^n, y^n, logit^n = step_fn(params, s^{n-1}, x, n-1)``
  with ``s^0 = state``, ``h^n = sigmoid(logit^n)``; an example halts at the
  first ``n`` where ``sum_{k<=n} h^k >= 1 - epsilon``, or at ``max_steps``.
  Its weights are ``p^n = h^n`` for ``n < N`` and ``p^N = R``, and the result
  is the ``p``-weighted mean of its states and outputs.

  Args:
    step_fn: ``step_fn(params, state, inputs, step_index) -> PonderStep``, a
      pure function of its arguments, applied to the whole batch. It may mix
      examples (e.g. attention across positions halting separately): a halted
      example's state stays frozen, still visible to the others, and gradients
      flow through it. With the ``"while"`` backend it may close over traced
      values (they are hoisted with ``jax.closure_convert``).
    params: a pytree of parameters, differentiated.
    state: ``s_{t-1}``, a pytree whose leaves have ``batch_shape`` as leading
      axes; ``batch_shape`` is the shape of the halting logit.
    inputs: ``x_t``, a pytree passed unchanged to every step (integer leaves
      get no gradient).
    max_steps: the cap ``M`` (Eq. 13), static.
    epsilon: the threshold slack (Eq. 7), static; the paper uses 0.01.
    mask: optional boolean of shape ``batch_shape``; examples where it is
      False are not computed (``N = R = 0``, state passed through, zero output).
    backend: ``"while"`` (early exit, custom VJP) or ``"scan"`` (fixed ``M``).
    chunk_steps: ``"while"`` backend only: the forward pass records the
      pullback residuals of the first ``chunk_steps`` ponder steps, and a
      checkpoint of the state every ``chunk_steps`` steps; the backward pass
      recomputes the residuals of later steps one chunk at a time. Memory is
      ``O(chunk_steps * residuals + max_steps / chunk_steps * state)``; steps
      beyond the first chunk cost one extra forward evaluation.

  Returns:
    A :class:`PonderResult`.

  Raises:
    ValueError: if a setting is invalid or the step function's shapes or
      dtypes do not match the state (raised at trace time, naming the leaf).
  """
  check_ponder_config(max_steps, epsilon, backend)
  if isinstance(chunk_steps, bool) or not isinstance(chunk_steps, numbers.Integral) or (
      chunk_steps < 1):
    raise ValueError(f"chunk_steps must be an integer >= 1, got {chunk_steps!r}")
  step_index = jnp.zeros((), jnp.int32)
  batch_shape = _check_step_shapes(step_fn, params, state, inputs, step_index)
  if mask is None:
    mask = jnp.ones(batch_shape, bool)
  else:
    mask = jnp.asarray(mask)
    if mask.shape != batch_shape or mask.dtype != jnp.bool_:
      raise ValueError(
          f"mask must be a bool array of the batch shape {batch_shape}, got "
          f"{mask.dtype}{list(mask.shape)}")
  threshold = float(np.float32(1.0) - np.float32(epsilon))
  if backend == "scan":
    return _ponder_scan(step_fn, max_steps, threshold, params, state, inputs, mask)
  closed_fn, consts = jax.closure_convert(step_fn, params, state, inputs, step_index)
  hoisted_fn = _HoistedStepFn(closed_fn)
  return _ponder_while(hoisted_fn, max_steps, threshold, min(int(chunk_steps), max_steps),
                       (params, tuple(consts)), state, inputs, mask)


class _HoistedStepFn:
  """A closure-converted step function taking ``(params, consts)`` as params."""

  def __init__(self, closed_fn: Callable[..., PonderStep]):
    self._closed_fn = closed_fn

  def __call__(self, params_and_consts, state, inputs, step_index) -> PonderStep:
    params, consts = params_and_consts
    return self._closed_fn(params, state, inputs, step_index, *consts)


def _check_step_shapes(step_fn, params, state, inputs, step_index) -> tuple[int, ...]:
  """Traces one step abstractly; returns the batch shape or raises ValueError."""
  try:
    out = jax.eval_shape(step_fn, params, state, inputs, step_index)
  except (TypeError, ValueError) as e:
    shapes = lambda tree: jax.tree.map(lambda a: f"{jnp.result_type(a)}{list(jnp.shape(a))}",
                                       tree)
    raise ValueError(f"step_fn failed on state {shapes(state)} and inputs "
                     f"{shapes(inputs)}: {e}") from e
  if not isinstance(out, PonderStep):
    raise ValueError(f"step_fn must return a PonderStep, got {type(out).__name__}")
  logit = out.halting_logit
  if not jnp.issubdtype(logit.dtype, jnp.floating):
    raise ValueError(f"halting_logit must be floating point, got {logit.dtype}")
  batch_shape = tuple(logit.shape)
  in_leaves, in_tree = jax.tree.flatten_with_path(state)
  out_leaves, out_tree = jax.tree.flatten_with_path(out.state)
  if in_tree != out_tree:
    raise ValueError(
        f"step_fn changed the state structure: {in_tree} -> {out_tree}")
  for (path, a), (_, b) in zip(in_leaves, out_leaves):
    name = jax.tree_util.keystr(path) or "<state>"
    if jnp.shape(a) != b.shape or jnp.result_type(a) != b.dtype:
      raise ValueError(
          f"step_fn changed state leaf {name} from {jnp.result_type(a)}"
          f"{list(jnp.shape(a))} to {b.dtype}{list(b.shape)}")
  for kind, tree in (("state", out.state), ("output", out.output)):
    for path, leaf in jax.tree.flatten_with_path(tree)[0]:
      if leaf.shape[:len(batch_shape)] != batch_shape:
        name = jax.tree_util.keystr(path) or f"<{kind}>"
        raise ValueError(
            f"{kind} leaf {name} has shape {list(leaf.shape)}, whose leading "
            f"axes do not match the halting logit's batch shape {list(batch_shape)}")
  return batch_shape


# ----------------------------------------------------------------------------
# The per-step arithmetic, shared by both backends.
# ----------------------------------------------------------------------------


def _expand(per_example: jax.Array, leaf: jax.Array) -> jax.Array:
  """Reshapes a ``batch_shape`` array to broadcast against ``leaf``."""
  return per_example.reshape(per_example.shape + (1,) * (leaf.ndim - per_example.ndim))


def _expand_tree(per_example: jax.Array, tree: PyTree) -> PyTree:
  """:func:`_expand` against every leaf of ``tree``."""
  return jax.tree.map(lambda leaf: _expand(per_example, leaf), tree)


def _per_example_dot(a: PyTree, b: PyTree, batch_ndim: int) -> jax.Array:
  """``<a, b>`` per example, summed over all non-batch axes and leaves (f32)."""
  dots = [
      jnp.sum(x.astype(jnp.float32) * y.astype(jnp.float32),
              axis=tuple(range(batch_ndim, x.ndim)))
      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  ]
  return functools.reduce(jnp.add, dots, jnp.zeros((), jnp.float32))


class _Halting(NamedTuple):
  """The halting state of every example after ``n`` ponder steps."""

  state: PyTree  # s^n while running, frozen at s^N once halted
  state_sum: PyTree  # sum_k p^k s^k, float32
  output_sum: PyTree  # sum_k p^k y^k, float32
  cumulative: jax.Array  # sum_{k<=n, k<N} h^k
  running: jax.Array  # not yet halted (and not masked out)
  steps: jax.Array  # N once halted, else 0
  remainder: jax.Array  # R once halted, else 0
  halting_probs: jax.Array  # p^k, batch_shape + (max_steps,)


def _initial_halting(step_out: PonderStep, state: PyTree, mask: jax.Array,
                     max_steps: int) -> _Halting:
  """The halting state before the first step; shapes from ``step_out``."""
  f32_zeros = lambda x: jnp.zeros(x.shape, jnp.float32)
  batch_shape = step_out.halting_logit.shape
  return _Halting(
      state=state,
      state_sum=jax.tree.map(f32_zeros, step_out.state),
      output_sum=jax.tree.map(f32_zeros, step_out.output),
      cumulative=jnp.zeros(batch_shape, jnp.float32),
      running=mask,
      steps=jnp.zeros(batch_shape, jnp.int32),
      remainder=jnp.zeros(batch_shape, jnp.float32),
      halting_probs=jnp.zeros(batch_shape + (max_steps,), jnp.float32),
  )


def _advance(carry: _Halting, step_out: PonderStep, step_index: jax.Array,
             max_steps: int, threshold: float) -> _Halting:
  """Accounts for ponder step ``n = step_index + 1`` (Eqs. 5-9, 13)."""
  h = jax.nn.sigmoid(step_out.halting_logit.astype(jnp.float32))  # Eq. 5
  running = carry.running
  halts = running & ((carry.cumulative + h >= threshold)  # Eq. 7
                     | (step_index == max_steps - 1))  # Eq. 13
  remainder = 1.0 - carry.cumulative  # Eq. 8
  p = jnp.where(halts, remainder, jnp.where(running, h, 0.0))  # Eq. 6

  def accumulate(total, leaf):  # Eq. 9
    return total + _expand(p, total) * leaf.astype(jnp.float32)

  return _Halting(
      state=jax.tree.map(lambda new, old: jnp.where(_expand(running, new), new, old),
                         step_out.state, carry.state),
      state_sum=jax.tree.map(accumulate, carry.state_sum, step_out.state),
      output_sum=jax.tree.map(accumulate, carry.output_sum, step_out.output),
      cumulative=jnp.where(running & ~halts, carry.cumulative + h, carry.cumulative),
      running=running & ~halts,
      steps=jnp.where(halts, step_index + 1, carry.steps),
      remainder=jnp.where(halts, remainder, carry.remainder),
      halting_probs=carry.halting_probs.at[..., step_index].set(p),
  )


def _finish(carry: _Halting, state: PyTree) -> PonderResult:
  """Packs the mean fields; examples masked out keep ``state``."""
  computed = carry.steps > 0
  mean_state = jax.tree.map(
      lambda total, old: jnp.where(_expand(computed, old), total.astype(old.dtype), old),
      carry.state_sum, state)
  return PonderResult(mean_state, carry.output_sum,
                      PonderStats(carry.steps, carry.remainder, carry.halting_probs))


# ----------------------------------------------------------------------------
# The "scan" backend: all max_steps steps, masked; plain autodiff.
# ----------------------------------------------------------------------------


def _ponder_scan(step_fn, max_steps, threshold, params, state, inputs, mask):
  step_out = jax.eval_shape(step_fn, params, state, inputs, jnp.int32(0))
  init = _initial_halting(step_out, state, mask, max_steps)

  def body(carry, step_index):
    out = step_fn(params, carry.state, inputs, step_index)
    return _advance(carry, out, step_index, max_steps, threshold), None

  final, _ = jax.lax.scan(body, init, jnp.arange(max_steps, dtype=jnp.int32))
  return _finish(final, state)


# ----------------------------------------------------------------------------
# The "while" backend: early exit, custom VJP over the steps taken.
# ----------------------------------------------------------------------------


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
  carry = _initial_halting(step_out, state, mask, max_steps)
  not_done = lambda step_index, carry, limit: (step_index < limit) & jnp.any(carry.running)

  def plain_body(loop):
    step_index, carry, checkpoints = loop
    if checkpoints is not None:
      slot = step_index // chunk
      checkpoints = jax.tree.map(
          lambda buf, s: buf.at[slot].set(jnp.where(step_index % chunk == 0, s, buf[slot])),
          checkpoints, carry.state)
    out = step_fn(params, carry.state, inputs, step_index)
    return step_index + 1, _advance(carry, out, step_index, max_steps, threshold), checkpoints

  if not record:
    steps_taken, carry, _ = jax.lax.while_loop(
        lambda loop: not_done(loop[0], loop[1], max_steps), plain_body,
        (jnp.int32(0), carry, None))
    return _finish(carry, state), steps_taken, None

  structure = {}

  def recording_body(loop):
    step_index, carry, buffers = loop
    lin = _linearize_step(step_fn, params, carry.state, inputs, step_index)
    structure.update(treedef=lin.treedef, invariant_at=tuple(lin.invariant_at))
    return (step_index + 1, _advance(carry, lin.out, step_index, max_steps, threshold),
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
  return _finish(carry, state), steps_taken, (buffers, checkpoints, static)


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

  def recompute_chunk(chunk_index):
    """Re-runs the steps of chunk ``chunk_index`` from its checkpoint, recording."""
    start = chunk_index * chunk

    def body(loop):
      i, state_in, buffers = loop
      lin = _linearize_step(step_fn, params, state_in, inputs, start + i)
      running = _expand_tree(start + i < steps, state_in)
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
    grad_p = (_per_example_dot(ct.state, states, batch_ndim)  # Eq. 17
              + _per_example_dot(ct.output, outputs, batch_ndim)
              + ct.stats.halting_probs[..., step_index])
    last_grad_p = jnp.where(is_last, grad_p + ct.stats.remainder, last_grad_p)
    grad_h = jnp.where(running & ~is_last, grad_p - last_grad_p, 0.0)  # Eqs. 19-20
    grad_logit = grad_h * p * (1.0 - p)  # p^n = h^n wherever grad_h != 0

    def to_step(g, later, like):  # dL/ds^n, dL/dy^n; zero where not running
      total = _expand(p, like) * g.astype(jnp.float32) + later
      return jnp.where(_expand(running, like), total, 0.0).astype(like.dtype)

    ct_out = PonderStep(
        state=jax.tree.map(to_step, ct.state, ct_state, states),
        output=jax.tree.map(lambda g, y: to_step(g, 0.0, y), ct.output, outputs),
        halting_logit=grad_logit.astype(logit_dtype))
    d_params, d_state, d_inputs = pullback(ct_out)
    # A halted example's state is carried through the step unchanged.
    frozen = lambda d, later: d.astype(jnp.float32) + jnp.where(
        _expand(running, later), 0.0, later)
    add = lambda acc, d: acc + d.astype(jnp.float32)
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

  f32_zeros = lambda x: jnp.zeros(jnp.shape(x), jnp.float32)
  params_diff, _ = _split_differentiable(params)
  inputs_diff, _ = _split_differentiable(inputs)
  carry = (jax.tree.map(f32_zeros, ct.state), jax.tree.map(f32_zeros, params_diff),
           jax.tree.map(f32_zeros, inputs_diff), jnp.zeros(steps.shape, jnp.float32))
  if jax.tree.leaves(checkpoints)[0].shape[0] > 1:  # some steps are past the first chunk
    num_chunks = (steps_taken + chunk - 1) // chunk
    _, carry = jax.lax.while_loop(lambda loop: loop[0] > 1, later_chunk_body,
                                  (num_chunks, carry))
  ct_state0, ct_params, ct_inputs, _ = backward_chunk(
      first_chunk, 0, jnp.minimum(chunk, steps_taken), carry)
  passed_through = steps == 0  # masked out: the result's state is the input state
  ct_state0 = jax.tree.map(
      lambda through, back, like: (back + jnp.where(_expand(passed_through, like),
                                                    through.astype(jnp.float32), 0.0)
                                   ).astype(jnp.result_type(like)),
      ct.state, ct_state0, state)
  return (_cotangent_of(params, ct_params), ct_state0, _cotangent_of(inputs, ct_inputs),
          np.zeros(mask.shape, jax.dtypes.float0))


_ponder_while.defvjp(_ponder_while_fwd, _ponder_while_bwd)
