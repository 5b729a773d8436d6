"""One ponder step's pullback, split into what the while backend stores per step
and what its backward pass rebuilds.

The backward pass of the ``"while"`` backend (and of its sequence driver) has
some values for every step without storing them: the loop-invariant ``params``
and ``inputs``, the step index, and the states entering and leaving the step
(the latter recorded anyway for Eq. 17). A residual of the step's pullback
that is one of those values, or is computed from them by cheap operations
only (elementwise arithmetic, broadcasts, concatenations, reductions: no
matrix product, no nested computation), is rebuilt in the backward pass
instead of being written into the per-step record: ``tanh``'s ``1 - y`` from
the new state ``y``, the cell input ``[x; 0]`` from ``x``, constants. Only
the others are stored. Which residual is which is read once per trace from
the step's jaxpr (:class:`ResidualPlan`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from act_jax.backends import jaxpr_api
from act_jax.ponder_types import PonderStep, PyTree, StepFn

# Primitives a rebuild must not repeat: they cost what storing saves, or more.
_COSTLY_PRIMITIVES = frozenset({
    "dot_general", "conv_general_dilated", "ragged_dot_general", "sort", "fft",
    "cholesky", "eig", "eigh", "lu", "qr", "svd", "triangular_solve",
})


def differentiable_leaves(tree: PyTree, perturbed: PyTree | None = None) -> tuple[bool, ...]:
  """Per leaf of ``tree``: whether it is differentiated, i.e. inexact and (where
  ``perturbed``, a tree of bools like ``tree``, is given) perturbed."""
  leaves = jax.tree.leaves(tree)
  flags = [True] * len(leaves) if perturbed is None else jax.tree.leaves(perturbed)
  return tuple(bool(f) and jnp.issubdtype(jnp.result_type(x), jnp.inexact)
               for x, f in zip(leaves, flags, strict=True))


def split_differentiable(tree: PyTree, is_diff: tuple[bool, ...] | None = None
                         ) -> tuple[list[Any], Callable[[list[Any]], PyTree]]:
  """Splits off the differentiated leaves of ``tree`` (by default the inexact
  ones; see :func:`differentiable_leaves`); returns them and a re-merger."""
  leaves, treedef = jax.tree.flatten(tree)
  is_diff = differentiable_leaves(tree) if is_diff is None else is_diff
  diff = [x for x, d in zip(leaves, is_diff) if d]

  def merge(new_diff):
    it = iter(new_diff)
    return treedef.unflatten([next(it) if d else x for x, d in zip(leaves, is_diff)])

  return diff, merge


class LinearizedStep(NamedTuple):
  """One ponder step's output and the residuals of its pullback that its plan
  stores (:meth:`ResidualPlan.rebuild` makes the pullback from them)."""

  out: PonderStep
  stored: list[jax.Array]  # the residuals the plan stores


class ResidualPlan:
  """A step function linearized once per trace: which residuals of its pullback
  are stored, and how the others are rebuilt.

  Holds the jaxpr of the linearized step, a function of ``(params, old_state,
  inputs, step_index)`` that returns the pullback's residuals and the step's
  output. :meth:`linearize` evaluates it, so every step linearized with one
  plan lists its residuals in one order (two separate ``jax.vjp`` traces need
  not). A residual is *rebuilt* when the jaxpr computes it from those
  arguments, the new state and literals through cheap equations only
  (:data:`_COSTLY_PRIMITIVES` excluded, and any equation with a nested jaxpr or
  an effect); :meth:`rebuild` re-runs exactly those equations. The step's
  closed-over constants are not available to rebuilds (what reads them is
  stored). Compared by identity: it is static data of one trace.
  """

  def __init__(self, closed: jaxpr_api.ClosedJaxpr, pullback_tree, out_tree):
    self._closed = closed
    self._pullback_tree = pullback_tree
    self._out_tree = out_tree
    jaxpr = closed.jaxpr
    num_residuals = pullback_tree.num_leaves
    residual_vars = jaxpr.outvars[:num_residuals]
    out_vars = out_tree.unflatten(jaxpr.outvars[num_residuals:])
    self._new_state_vars = jax.tree.leaves(out_vars.state)
    available = set(jaxpr.invars) | {v for v in self._new_state_vars
                                     if isinstance(v, jaxpr_api.Var)}
    for eqn in jaxpr.eqns:
      if _is_cheap(eqn) and all(_is_available(v, available) for v in eqn.invars):
        available.update(v for v in eqn.outvars if not isinstance(v, jaxpr_api.DropVar))
    self.stored = tuple(not _is_available(v, available) for v in residual_vars)
    self._rebuilt_vars = [v for v, s in zip(residual_vars, self.stored) if not s]
    # The equations the rebuilt residuals need, in program order.
    needed = {v for v in self._rebuilt_vars if isinstance(v, jaxpr_api.Var)}
    given = set(jaxpr.invars) | set(self._new_state_vars)
    eqns = []
    for eqn in reversed(jaxpr.eqns):
      if any(v in needed and v not in given for v in eqn.outvars):
        eqns.append(eqn)
        needed.update(v for v in eqn.invars if isinstance(v, jaxpr_api.Var))
    self._eqns = eqns[::-1]

  def linearize(self, params: PyTree, state: PyTree, inputs: PyTree,
                step_index: jax.Array) -> LinearizedStep:
    """The step's output and the residuals to store, computed at these values."""
    flat = jaxpr_api.jaxpr_as_fun(self._closed)(
        *jax.tree.leaves((params, state, inputs, step_index)))
    num_residuals = self._pullback_tree.num_leaves
    stored = [r for r, s in zip(flat[:num_residuals], self.stored, strict=True) if s]
    return LinearizedStep(self._out_tree.unflatten(flat[num_residuals:]), stored)

  def rebuild(self, stored: list[jax.Array], params: PyTree, old_state: PyTree,
              inputs: PyTree, step_index: jax.Array, new_state: PyTree) -> Callable:
    """The step's pullback, from its ``stored`` residuals and the values given."""
    jaxpr = self._closed.jaxpr
    env = dict(zip(jaxpr.invars, jax.tree.leaves((params, old_state, inputs, step_index)),
                   strict=True))
    env.update((v, x) for v, x in zip(self._new_state_vars, jax.tree.leaves(new_state),
                                      strict=True) if isinstance(v, jaxpr_api.Var))
    read = lambda v: v.val if isinstance(v, jaxpr_api.Literal) else env[v]
    for eqn in self._eqns:
      outs = eqn.primitive.bind(*map(read, eqn.invars), **eqn.params)
      outs = outs if eqn.primitive.multiple_results else [outs]
      env.update((v, x) for v, x in zip(eqn.outvars, outs)
                 if not isinstance(v, jaxpr_api.DropVar))
    per_step = iter(stored)
    rebuilt = iter(self._rebuilt_vars)
    return self._pullback_tree.unflatten([next(per_step) if s else read(next(rebuilt))
                                          for s in self.stored])


def _is_available(v, available: set) -> bool:
  return isinstance(v, jaxpr_api.Literal) or v in available


def _is_cheap(eqn: jaxpr_api.JaxprEqn) -> bool:
  return (eqn.primitive.name not in _COSTLY_PRIMITIVES and not eqn.effects
          and not list(jaxpr_api.jaxprs_in_params(eqn.params)))


def plan_residuals(step_fn: StepFn, params, state, inputs, step_index,
                   inputs_diff: tuple[bool, ...] | None = None) -> ResidualPlan:
  """The :class:`ResidualPlan` of ``step_fn`` linearized with respect to the
  inexact params and state, and the inputs' leaves flagged in ``inputs_diff``
  (default: the inexact ones), at the shapes of these arguments."""
  params_diff_flags = differentiable_leaves(params)
  trees = {}

  def residuals_and_out(params, state, inputs, step_index):
    params_diff, merge_params = split_differentiable(params, params_diff_flags)
    inputs_diff_leaves, merge_inputs = split_differentiable(inputs, inputs_diff)

    def step(p_diff, s, x_diff):
      return step_fn(merge_params(p_diff), s, merge_inputs(x_diff), step_index)

    out, pullback = jax.vjp(step, params_diff, state, inputs_diff_leaves)
    residuals, trees["pullback"] = jax.tree.flatten(pullback)
    out_leaves, trees["out"] = jax.tree.flatten(out)
    return residuals + out_leaves

  closed = jax.make_jaxpr(residuals_and_out)(params, state, inputs, step_index)
  return ResidualPlan(closed, trees["pullback"], trees["out"])


def linearize_step(step_fn: StepFn, params, state, inputs, step_index,
                   inputs_diff: tuple[bool, ...] | None = None
                   ) -> tuple[LinearizedStep, ResidualPlan]:
  """One step linearized with a plan of its own (see :func:`plan_residuals`)."""
  plan = plan_residuals(step_fn, params, state, inputs, step_index, inputs_diff)
  return plan.linearize(params, state, inputs, step_index), plan
