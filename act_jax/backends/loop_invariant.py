"""A ponder step split into its loop-invariant part and the rest.

Every ponder step after the first evaluates the same function of the state
(with ``first_step_flag_only``, the step at the constant index 1; see
:func:`act_jax.backends.while_loop.later_steps_fn`). What it computes from the
params and inputs alone (a cell's input projection ``[x; 0] W_x + b``) is the
same at every step. XLA hoists that out of the forward loop by itself, but
not out of the backward pass: there every step's pullback would take its own
product with the input for ``dL/dW_x``. Computed once *before* the loop and
handed to it as an input, its cotangent is instead summed over the steps (an
addition per step) and JAX differentiates the invariant part once, outside the
loop, with the sum: ``d/dW sum_n f_n(u(W)) = u'(W)^T sum_n df_n/du``.

:func:`hoist_loop_invariants` reads the step's jaxpr once per trace and splits
it by data dependence: an equation is invariant when none of its operands
depends on the state or the step index and it has no effect. A step whose
invariant part only lays out values (broadcasts, reshapes, casts: a step that
reads its index as a value, so that even its input product depends on it) is
left whole: there is nothing to compute once.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from act_jax.backends import jaxpr_api
from act_jax.ponder_types import PonderStep, PyTree, StepFn


# Primitives that only lay out or cast their operand: hoisting them saves no arithmetic.
_LAYOUT_ONLY = frozenset({"broadcast_in_dim", "reshape", "squeeze", "expand_dims",
                          "convert_element_type"})


class LoopInvariantSplit(NamedTuple):
  """A step function over the values its invariant part computed.

  ``step_fn(shared, state, per_example, step_index)`` is the original step
  given the invariant values: ``shared`` (lists of arrays computed from params
  and the step's constants alone, params among them) and ``per_example``
  (computed from the inputs too, so with the inputs' leading batch axis:
  :mod:`act_jax.backends.compact` gathers them with the examples).
  """

  step_fn: StepFn
  shared: list[jax.Array]
  per_example: list[jax.Array]


def hoist_loop_invariants(step_fn: StepFn, params: PyTree, state: PyTree, inputs: PyTree,
                          step_index: jax.Array) -> LoopInvariantSplit:
  """Computes what ``step_fn`` derives from ``params`` and ``inputs`` alone, once.

  Args:
    step_fn: a step function (see :data:`act_jax.StepFn`); it may close over
      traced values (its invariant part reads them).
    params: its parameters.
    state: the state it is called with (for its shapes).
    inputs: its inputs, leaves ``[B, ...]``.
    step_index: a step index (for its shape).

  Returns:
    The :class:`LoopInvariantSplit`; its ``step_fn`` gives the same
    :class:`~act_jax.PonderStep` as ``step_fn`` at every state and step index,
    at this batch size or (for a step function that treats examples
    independently) a smaller one. Where the invariant part computes nothing
    (only layout operations), or an input-dependent invariant value lacks the
    inputs' batch axis, nothing is hoisted: the split then holds ``step_fn``
    itself with ``params`` and ``inputs``.
  """
  split = _split(step_fn, params, state, inputs, step_index)
  if split is None:
    return LoopInvariantSplit(step_fn, params, inputs)
  values = jaxpr_api.jaxpr_as_fun(split.invariant)(*jax.tree.leaves((params, inputs)))
  variant = _VariantStep(step_fn, params, state, inputs, split)
  return LoopInvariantSplit(variant, list(values[:split.num_shared]),
                            list(values[split.num_shared:]))


class _Split(NamedTuple):
  invariant: jaxpr_api.ClosedJaxpr  # (params, inputs) -> shared + per-example values
  variant: jaxpr_api.ClosedJaxpr  # (shared, state, per-example, step index) -> the step's leaves
  num_shared: int
  out_tree: jax.tree_util.PyTreeDef


def _split(step_fn: StepFn, params, state, inputs, step_index) -> _Split | None:
  """``step_fn``'s jaxpr at these shapes, split by data dependence (None:
  nothing but layout operations is invariant, or a per-example invariant value
  lacks the batch axis)."""
  closed, out_shape = jax.make_jaxpr(step_fn, return_shape=True)(params, state, inputs,
                                                                 step_index)
  jaxpr = closed.jaxpr
  num_params = len(jax.tree.leaves(params))
  num_state = len(jax.tree.leaves(state))
  param_vars = jaxpr.invars[:num_params]
  state_vars = jaxpr.invars[num_params:num_params + num_state]
  input_vars = jaxpr.invars[num_params + num_state:-1]
  index_var = jaxpr.invars[-1]

  invariant = set(jaxpr.constvars) | set(param_vars) | set(input_vars)
  per_example = set(input_vars)  # depends on the inputs
  invariant_eqns, variant_eqns = [], []
  for eqn in jaxpr.eqns:
    operands = [v for v in eqn.invars if isinstance(v, jaxpr_api.Var)]
    if not eqn.effects and all(v in invariant for v in operands):
      invariant_eqns.append(eqn)
      invariant.update(eqn.outvars)
      if any(v in per_example for v in operands):
        per_example.update(eqn.outvars)
    else:
      variant_eqns.append(eqn)

  if all(eqn.primitive.name in _LAYOUT_ONLY for eqn in invariant_eqns):
    return None
  # The invariant values the rest reads: operands of its equations and outputs.
  boundary = []
  for v in [v for eqn in variant_eqns for v in eqn.invars] + list(jaxpr.outvars):
    if isinstance(v, jaxpr_api.Var) and v in invariant and v not in boundary:
      boundary.append(v)
  shared_vars = [v for v in boundary if v not in per_example]
  example_vars = [v for v in boundary if v in per_example]
  batch = jax.tree.leaves(inputs)[0].shape[:1] if input_vars else None
  if any(v.aval.shape[:1] != batch for v in example_vars):
    return None
  invariant_jaxpr = jaxpr_api.part_of(closed, jaxpr.constvars, param_vars + input_vars,
                                      shared_vars + example_vars, invariant_eqns, closed.consts)
  variant_jaxpr = jaxpr_api.part_of(closed, [], shared_vars + state_vars + example_vars
                                    + [index_var], jaxpr.outvars, variant_eqns, [])
  return _Split(invariant_jaxpr, variant_jaxpr, len(shared_vars), jax.tree.structure(out_shape))


class _VariantStep:
  """The step's equations that read the state or the step index, as a step
  function of ``(shared, state, per_example, step_index)``.

  A jaxpr has fixed shapes; at another batch size (a compaction level) the
  step function is split again at that size, and its invariant values must
  come out the same apart from their batch axis (they are the gathered ones).
  """

  def __init__(self, step_fn: StepFn, params, state, inputs, split: _Split):
    self._step_fn = step_fn
    self._params = jax.tree.map(_abstract, params)
    self._inputs = jax.tree.map(_abstract, inputs)
    self._batch = _batch_size(state)
    self._splits = {self._batch: split}

  def _split_at(self, state, step_index) -> _Split:
    batch = _batch_size(state)
    if batch not in self._splits:
      at_batch = lambda x: jax.ShapeDtypeStruct((batch,) + x.shape[1:], x.dtype)
      split = _split(self._step_fn, self._params, state, jax.tree.map(at_batch, self._inputs),
                     step_index)
      first = self._splits[self._batch]
      if split is None or split.num_shared != first.num_shared or (
          len(split.variant.jaxpr.invars) != len(first.variant.jaxpr.invars)):
        raise ValueError(
            f"the step function's loop-invariant part differs at batch size {batch} from "
            f"batch size {self._batch}; does it treat the examples independently?")
      self._splits[batch] = split
    return self._splits[batch]

  def __call__(self, shared, state, per_example, step_index) -> PonderStep:
    split = self._split_at(state, step_index)
    flat = jaxpr_api.jaxpr_as_fun(split.variant)(
        *jax.tree.leaves((shared, state, per_example, step_index)))
    return split.out_tree.unflatten(flat)


def _batch_size(state) -> int:
  return jax.tree.leaves(state)[0].shape[0]


def _abstract(x) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(jax.numpy.shape(x), jax.numpy.result_type(x))
