"""The ACT ponder loop for one input step (Graves 2016, Eqs. 3-13): its one entry point.

An ACT network updates its state ``N(t)`` times for input ``x_t``, halting when
the cumulative halting probability reaches ``1 - epsilon`` (or at the cap
``max_steps``), and returns the mean field of the intermediate states and
outputs, weighted by the halting distribution ``p_t^n``. :func:`ponder` checks
its arguments and hands them to one of the interchangeable loop backends, each
in its own module under :mod:`act_jax.backends`, all sharing the per-step
halting arithmetic of :mod:`act_jax.halting`:

* ``"while"`` (:mod:`act_jax.backends.while_loop`): a ``jax.lax.while_loop``
  that stops as soon as every example of the batch has halted, differentiated
  through a custom VJP whose backward pass also runs only the steps taken.
  Reverse mode only.
* ``"scan"`` (:mod:`act_jax.backends.scan`): a masked ``jax.lax.scan`` over all
  ``max_steps`` steps, differentiated by JAX itself. The reference the fast
  backend is tested against, and the choice for forward-mode autodiff.

With ``independent_examples=True`` (step functions that treat the examples of
the batch independently) the ``"while"`` backend compacts the batch as examples
halt (:mod:`act_jax.backends.compact`), paying for about ``sum_i N_i`` step
evaluations instead of ``B * max_i N_i``.

Both give the same values and the gradients of docs/equations.md section 8: ``N(t)`` is a
constant, ``R(t) = 1 - sum_{n<N} h^n`` carries gradient into both the ponder
cost and the last weight ``p^N``, and ``h^N`` gets none (Eqs. 14-20).

Halting arithmetic (``h``, ``p``, ``R``, the cumulative sum and the
mean-field sums) runs in float32, or in the step function's wider float type
(float64 under ``jax_enable_x64``): :func:`act_jax.halting.halting_dtype`.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal

import jax
import jax.numpy as jnp

from act_jax import halting, pondernet
from act_jax.halting import stand_in  # ponder's own argument `halting` hides the module
from act_jax.backends import compact, loop_invariant, scan, while_loop
from act_jax.pondernet import HaltingRule
from act_jax.ponder_types import PonderResult, PonderStats, PonderStep, PyTree, StepFn

__all__ = ["BACKENDS", "DEFAULT_CHUNK_STEPS", "Backend", "HaltingRule", "PonderResult",
           "PonderStats", "PonderStep", "PyTree", "StepFn", "check_ponder_config", "ponder",
           "with_first_step_flag"]

Backend = Literal["while", "scan"]
BACKENDS: tuple[str, ...] = ("while", "scan")
DEFAULT_CHUNK_STEPS = 8


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


def check_ponder_config(max_steps: Any, epsilon: Any, backend: Any = "while",
                        independent_examples: Any = False) -> None:
  """Raises ``ValueError`` naming the value if the ACT settings are invalid.

  Args:
    max_steps: the cap ``M`` (Eq. 13): a Python or NumPy integer >= 1.
    epsilon: the halting threshold slack: a real number in (0, 1).
    backend: one of :data:`BACKENDS`.
    independent_examples: a bool.
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
  if not isinstance(independent_examples, bool):
    raise ValueError(f"independent_examples must be a bool, got {independent_examples!r}")


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
    independent_examples: bool = False,
    first_step_flag_only: bool = False,
    halting: HaltingRule = "act",
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
      The step function still runs on the whole batch: it sees a stand-in
      for them (a copy of an unmasked example's state, and with
      ``independent_examples`` its inputs too; a step that mixes examples
      must not read them), so a NaN or inf in them reaches no gradient.
    backend: ``"while"`` (early exit, custom VJP; reverse mode only: a
      forward-mode or higher-order derivative raises ``TypeError``) or
      ``"scan"`` (fixed ``M``, plain autodiff: forward mode and higher order).
    chunk_steps: ``"while"`` backend only: the forward pass records the
      pullback residuals of the first ``chunk_steps`` ponder steps, and a
      checkpoint of the state every ``chunk_steps`` steps; the backward pass
      recomputes the residuals of later steps one chunk at a time. Memory is
      ``O(chunk_steps * residuals + max_steps / chunk_steps * state)``; steps
      beyond the first chunk cost one extra forward evaluation.
    independent_examples: declares that ``step_fn`` treats the examples of
      the batch independently (example ``i``'s new state, output and logit
      depend only on example ``i``'s state and inputs, as in every recurrent
      cell), that the batch shape is one axis and that every ``inputs`` leaf
      has it as its leading axis. The ``"while"`` backend then compacts the
      batch as examples halt (:mod:`act_jax.backends.compact`), so it pays
      for about ``sum_i N_i`` step evaluations instead of ``B * max_i N_i``,
      forward and backward. A step function that mixes examples (attention,
      batch statistics) gives wrong results with it. The ``"scan"`` backend
      computes the same values either way.
    first_step_flag_only: declares that ``step_fn`` reads ``step_index`` only
      through the first-step flag ``step_index == 0`` of Eq. 3 (as steps built
      on :func:`with_first_step_flag` do, e.g. :func:`act_jax.cells.cell_step_fn`,
      which the Flax wrappers use). The ``"while"`` backend then calls it with
      the constant index 1 for every step after the first, so what it computes
      from ``params``, ``inputs`` and the flag (a cell's input projection
      ``[x; 0] W``) is loop-invariant and computed once, not per step; without
      it, only the share of ``inputs`` is (``x W_x``; see
      :mod:`act_jax.backends.loop_invariant`). A step function that
      reads the index otherwise (a depth embedding) gives wrong results with
      it. The ``"scan"`` backend computes the same values either way.
    halting: the halting rule: ``"act"`` (above) or ``"pondernet"``
      (Banino et al. 2021, :mod:`act_jax.pondernet`): ``p^n = lambda_n
      prod_{j<n} (1 - lambda_j)`` with ``lambda_n = sigmoid(logit^n)`` and
      ``lambda_M = 1``, halting once ``sum_{k<=n} p^k >= 1 - epsilon`` (the
      mass left out is ``stats.remainder``). Same backends, compaction and
      outputs; the result's weighted sums are PonderNet's expectations under
      ``p``.

  Returns:
    A :class:`PonderResult`.

  Raises:
    ValueError: if a setting is invalid or the step function's shapes or
      dtypes do not match the state (raised at trace time, naming the leaf).
  """
  threshold, checked_mask = checked_step_call(
      step_fn, params, state, inputs, mask, max_steps=max_steps, epsilon=epsilon,
      backend=backend, chunk_steps=chunk_steps, independent_examples=independent_examples,
      first_step_flag_only=first_step_flag_only, halting_rule=halting)
  if mask is not None and independent_examples:  # inputs are per example: masked too
    inputs = stand_in(inputs, checked_mask)
  mask = checked_mask
  if backend == "scan":
    return scan.ponder(step_fn, max_steps, threshold, params, state, inputs, mask)
  loop = compact if independent_examples else while_loop
  # What every step computes from params and inputs alone (the cell input x W_x),
  # computed once for step 1 and the loop after it.
  split = loop_invariant.hoist_loop_invariants(step_fn, params, state, inputs, jnp.int32(0))
  with while_loop.forward_mode_is_one_error():
    return loop.ponder(split.step_fn, max_steps, threshold, split.shared, state,
                       split.per_example, mask, chunk_steps=int(chunk_steps),
                       first_step_flag_only=first_step_flag_only)


def checked_step_call(step_fn: StepFn, params: PyTree, state: PyTree, inputs: PyTree,
                      mask: jax.typing.ArrayLike | None, *, max_steps: int, epsilon: float,
                      backend: Any, chunk_steps: Any, independent_examples: Any,
                      first_step_flag_only: Any, halting_rule: Any = "act"
                      ) -> tuple[float, jax.Array]:
  """Checks the arguments of :func:`ponder` (raising ``ValueError`` naming the
  bad value) and returns the threshold ``1 - epsilon`` in the halting dtype
  (a :class:`~act_jax.pondernet.PonderNetThreshold` for ``halting_rule=
  "pondernet"``) and the mask (all True if ``mask`` is None)."""
  check_ponder_config(max_steps, epsilon, backend, independent_examples)
  pondernet.check_halting_rule(halting_rule)
  if isinstance(chunk_steps, bool) or not isinstance(chunk_steps, numbers.Integral) or (
      chunk_steps < 1):
    raise ValueError(f"chunk_steps must be an integer >= 1, got {chunk_steps!r}")
  if not isinstance(first_step_flag_only, bool):
    raise ValueError(f"first_step_flag_only must be a bool, got {first_step_flag_only!r}")
  step_out = _check_step_shapes(step_fn, params, state, inputs, jnp.zeros((), jnp.int32))
  batch_shape = step_out.halting_logit.shape
  if mask is None:
    mask = jnp.ones(batch_shape, bool)
  else:
    mask = jnp.asarray(mask)
    if mask.shape != batch_shape or mask.dtype != jnp.bool_:
      raise ValueError(
          f"mask must be a bool array of the batch shape {batch_shape}, got "
          f"{mask.dtype}{list(mask.shape)}")
  if independent_examples:
    _check_independent_examples(batch_shape, inputs)
  threshold = halting.threshold_for(epsilon, halting.halting_dtype(step_out))
  if halting_rule == "pondernet":
    threshold = pondernet.PonderNetThreshold(threshold)
  return threshold, mask


def _check_independent_examples(batch_shape: tuple[int, ...], inputs: PyTree) -> None:
  """Raises ``ValueError`` unless the batch is one axis leading every input leaf."""
  if len(batch_shape) != 1:
    raise ValueError("independent_examples=True needs a batch shape of one axis, got "
                     f"{list(batch_shape)}")
  for path, leaf in jax.tree.flatten_with_path(inputs)[0]:
    if jnp.shape(leaf)[:1] != batch_shape:
      raise ValueError(
          f"independent_examples=True needs every inputs leaf to lead with the batch axis "
          f"{batch_shape[0]}; leaf {jax.tree_util.keystr(path) or '<inputs>'} has shape "
          f"{list(jnp.shape(leaf))}")


def _check_step_shapes(step_fn, params, state, inputs, step_index) -> PonderStep:
  """Traces one step abstractly; returns its abstract output or raises ValueError."""
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
    if not jnp.issubdtype(jnp.result_type(a), jnp.floating):
      raise ValueError(
          f"state leaf {name} is {jnp.result_type(a)}{list(jnp.shape(a))}: ACT averages the "
          "state over ponder steps (Eq. 9), so every state leaf must be floating point")
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
  return out


