"""A ponder step split into its loop-invariant part and the rest.

Every ponder step evaluates the same function of the state and the step index.
What it computes from the params and inputs alone (a cell's input projection
``x W_x``) is the same at every step. XLA hoists that out of the forward loop
by itself, but not out of the backward pass: there every step's pullback would
take its own product with the input for ``dL/dW_x``. Computed once *before* the
loop and handed to it as an input, its cotangent is instead summed over the
steps (an addition per step) and JAX differentiates the invariant part once,
outside the loop, with the sum: ``d/dW sum_n f_n(u(W)) = u'(W)^T sum_n df_n/du``.

:func:`split_loop_invariants` reads the step's jaxpr once per trace and splits
it by data dependence: an equation is invariant when none of its operands
depends on the state or the step index and it has no effect. A product of a
concatenation whose pieces are partly invariant (the cell input ``[x; flag]``
of Eq. 3, where the first-step flag depends on the step index) is first
distributed over the pieces, ``[x; f] W = x W_x + f W_f``, so that ``x W_x`` is
invariant at every step, the first included, and only the flag's row is not.
A step whose invariant part only lays out values (broadcasts, reshapes, casts)
is left whole: there is nothing to compute once.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
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


class InvariantPart(NamedTuple):
  """A step function split in two, before any value is computed.

  ``invariant(params, inputs) -> (shared, per_example)`` computes the
  invariant values (lists, as in :class:`LoopInvariantSplit`) for inputs of
  the batch shape it was split at, or (under ``jax.vmap``) for a stack of
  them; ``step_fn(shared, state, per_example, step_index)`` is the rest.
  """

  invariant: Callable[[PyTree, PyTree], tuple[list[jax.Array], list[jax.Array]]]
  step_fn: StepFn


def split_loop_invariants(step_fn: StepFn, params: PyTree, state: PyTree, inputs: PyTree,
                          step_index: jax.Array) -> InvariantPart | None:
  """Splits ``step_fn`` into what it derives from ``params`` and ``inputs`` alone, and the rest.

  Args:
    step_fn: a step function (see :data:`act_jax.StepFn`); it may close over
      traced values (its invariant part reads them).
    params: its parameters.
    state: the state it is called with (for its shapes).
    inputs: its inputs, leaves ``[B, ...]``.
    step_index: a step index (for its shape).

  Returns:
    The :class:`InvariantPart`, whose ``step_fn`` gives the same
    :class:`~act_jax.PonderStep` as ``step_fn`` at every state and step index,
    at this batch size or (for a step function that treats examples
    independently) a smaller one. None where the invariant part computes
    nothing (only layout operations), or an input-dependent invariant value
    lacks the inputs' batch axis.
  """
  split = _split(step_fn, params, state, inputs, step_index)
  if split is None:
    return None
  return InvariantPart(functools.partial(_invariant_values, split),
                       _VariantStep(step_fn, params, state, inputs, split))


def hoist_loop_invariants(step_fn: StepFn, params: PyTree, state: PyTree, inputs: PyTree,
                          step_index: jax.Array) -> LoopInvariantSplit:
  """Computes what ``step_fn`` derives from ``params`` and ``inputs`` alone, once.

  Args: as :func:`split_loop_invariants`.

  Returns:
    The :class:`LoopInvariantSplit`; its ``step_fn`` gives the same
    :class:`~act_jax.PonderStep` as ``step_fn`` (see
    :func:`split_loop_invariants`). Where nothing is split off, the split holds
    ``step_fn`` itself with ``params`` and ``inputs``.
  """
  part = split_loop_invariants(step_fn, params, state, inputs, step_index)
  if part is None:
    return LoopInvariantSplit(step_fn, params, inputs)
  return LoopInvariantSplit(part.step_fn, *part.invariant(params, inputs))


class _Split(NamedTuple):
  invariant: jaxpr_api.ClosedJaxpr  # (params, inputs) -> shared + per-example values
  variant: jaxpr_api.ClosedJaxpr  # (shared, state, per-example, step index) -> the step's leaves
  num_shared: int
  out_tree: jax.tree_util.PyTreeDef


def _invariant_values(split: _Split, params: PyTree,
                      inputs: PyTree) -> tuple[list[jax.Array], list[jax.Array]]:
  values = jaxpr_api.jaxpr_as_fun(split.invariant)(*jax.tree.leaves((params, inputs)))
  return list(values[:split.num_shared]), list(values[split.num_shared:])


class _Classes(NamedTuple):
  """A step's variables and equations by what they depend on (see :func:`_classify`)."""

  known: set  # values known when tracing, and what is computed from them alone
  invariant: set  # computed from params, inputs and traced constants (and known values)
  per_example: set  # those invariant values that depend on the inputs
  known_eqns: list
  invariant_eqns: list
  variant_eqns: list


def _classify(closed: jaxpr_api.ClosedJaxpr, num_params: int, num_state: int) -> _Classes:
  """Sorts the equations of a step's jaxpr (arguments: params, state, inputs,
  step index). Known: every operand is a literal, a concrete constant or
  computed from those alone; both parts compute what they read of them, so a
  constant broadcast over the batch (the first-step flag at a constant index)
  is never handed across. Invariant: no operand depends on the state or the
  step index, and no effect. Variant: the others."""
  jaxpr = closed.jaxpr
  traced = [v for v, c in zip(jaxpr.constvars, closed.consts) if isinstance(c, jax.core.Tracer)]
  known = set(jaxpr.constvars) - set(traced)
  input_vars = jaxpr.invars[num_params + num_state:-1]
  invariant = set(traced) | set(jaxpr.invars[:num_params]) | set(input_vars)
  per_example = set(input_vars)
  known_eqns, invariant_eqns, variant_eqns = [], [], []
  for eqn in jaxpr.eqns:
    operands = [v for v in eqn.invars if isinstance(v, jaxpr_api.Var)]
    if eqn.effects or any(v not in invariant and v not in known for v in operands):
      variant_eqns.append(eqn)
    elif all(v in known for v in operands):
      known_eqns.append(eqn)
      known.update(eqn.outvars)
    else:
      invariant_eqns.append(eqn)
      invariant.update(eqn.outvars)
      if any(v in per_example for v in operands):
        per_example.update(eqn.outvars)
  return _Classes(known, invariant, per_example, known_eqns, invariant_eqns, variant_eqns)


def _split(step_fn: StepFn, params, state, inputs, step_index) -> _Split | None:
  """``step_fn``'s jaxpr at these shapes, its products distributed over
  partly invariant concatenations, split by data dependence (None: nothing
  but layout operations is invariant, or a per-example invariant value lacks
  the batch axis)."""
  closed, out_shape = jax.make_jaxpr(step_fn, return_shape=True)(params, state, inputs,
                                                                 step_index)
  num_params = len(jax.tree.leaves(params))
  num_state = len(jax.tree.leaves(state))
  classes = _classify(closed, num_params, num_state)
  distributed = _distributed(closed, classes)
  if distributed is not closed:
    closed, classes = distributed, _classify(distributed, num_params, num_state)
  jaxpr = closed.jaxpr
  param_vars = jaxpr.invars[:num_params]
  state_vars = jaxpr.invars[num_params:num_params + num_state]
  input_vars = jaxpr.invars[num_params + num_state:-1]
  index_var = jaxpr.invars[-1]

  if all(eqn.primitive.name in _LAYOUT_ONLY for eqn in classes.invariant_eqns):
    return None
  # The invariant values the rest reads: operands of its equations and outputs.
  boundary = []
  for v in [v for eqn in classes.variant_eqns for v in eqn.invars] + list(jaxpr.outvars):
    if isinstance(v, jaxpr_api.Var) and v in classes.invariant and v not in boundary:
      boundary.append(v)
  shared_vars = [v for v in boundary if v not in classes.per_example]
  example_vars = [v for v in boundary if v in classes.per_example]
  batch = jax.tree.leaves(inputs)[0].shape[:1] if input_vars else None
  if any(v.aval.shape[:1] != batch for v in example_vars):
    return None
  known_consts = [(v, c) for v, c in zip(jaxpr.constvars, closed.consts) if v in classes.known]
  invariant_jaxpr = jaxpr_api.part_of(closed, jaxpr.constvars, param_vars + input_vars,
                                      shared_vars + example_vars,
                                      _with_known(jaxpr, classes, classes.invariant_eqns),
                                      closed.consts)
  variant_jaxpr = jaxpr_api.part_of(
      closed, [v for v, _ in known_consts], shared_vars + state_vars + example_vars
      + [index_var], jaxpr.outvars, _with_known(jaxpr, classes, classes.variant_eqns),
      [c for _, c in known_consts])
  return _Split(invariant_jaxpr, variant_jaxpr, len(shared_vars), jax.tree.structure(out_shape))


def _with_known(jaxpr: jaxpr_api.Jaxpr, classes: _Classes, eqns: list) -> list:
  """``eqns`` and the known equations (each part computes those it reads), in
  ``jaxpr``'s order."""
  ids = {id(eqn) for eqn in classes.known_eqns + eqns}
  return [eqn for eqn in jaxpr.eqns if id(eqn) in ids]


class _Product(NamedTuple):
  """A ``dot_general`` of a concatenation (its left operand), to be taken piece by piece."""

  axis: int  # the concatenated axis, contracted
  other_axis: int  # the right operand's axis contracted with it
  runs: tuple[tuple[int, int, tuple], ...]  # (start, stop, pieces): invariant runs first


def _distributed(closed: jaxpr_api.ClosedJaxpr, classes: _Classes) -> jaxpr_api.ClosedJaxpr:
  """``closed`` with each product of a concatenation by an invariant operand,
  where the concatenation has per-example invariant pieces and variant ones,
  taken over the runs of invariant and variant pieces and summed, invariant
  terms first: ``[x; f] W = x W[:k] + f W[k:]`` (re-traced). ``closed`` itself
  where there is none. ``x W[:k]`` is then invariant too, and so is the sum of
  the invariant terms, per example (a term of constants alone, such as a
  constant flag's row broadcast over the batch, is never left on its own)."""
  jaxpr = closed.jaxpr
  concats = {eqn.outvars[0]: eqn for eqn in jaxpr.eqns if eqn.primitive.name == "concatenate"}
  products = {}
  for i, eqn in enumerate(jaxpr.eqns):
    product = _distributable(eqn, concats, classes)
    if product is not None:
      products[i] = product
  if not products:
    return closed
  args = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype, weak_type=v.aval.weak_type)
          for v in jaxpr.invars]
  return jax.make_jaxpr(functools.partial(_evaluate_distributed, closed, products))(*args)


def _is_invariant(v, invariant: set) -> bool:
  return isinstance(v, jaxpr_api.Literal) or v in invariant


def _distributable(eqn: jaxpr_api.JaxprEqn, concats: dict, classes: _Classes) -> _Product | None:
  """The :class:`_Product` ``eqn`` is, if it contracts a concatenation with per-example
  invariant and variant pieces (``x @ W``'s left operand) against an invariant
  right operand."""
  if eqn.primitive.name != "dot_general":
    return None
  (contract, other_contract), _ = eqn.params["dimension_numbers"]
  var, other = eqn.invars
  concat = concats.get(var) if isinstance(var, jaxpr_api.Var) else None
  if concat is None or not _is_invariant(other, classes.invariant):
    return None
  axis = concat.params["dimension"]
  pieces = _pieces(concat, concats)
  kinds = [_is_invariant(piece, classes.invariant) for piece in pieces]
  if axis not in contract or all(kinds) or not any(
      isinstance(piece, jaxpr_api.Var) and piece in classes.per_example for piece in pieces):
    return None
  runs, start = [], 0
  for kind, group in itertools.groupby(zip(kinds, pieces), key=lambda pair: pair[0]):
    run = tuple(piece for _, piece in group)
    stop = start + sum(piece.aval.shape[axis] for piece in run)
    runs.append((not kind, start, stop, run))
    start = stop
  return _Product(axis, other_contract[list(contract).index(axis)],
                  tuple(run[1:] for run in sorted(runs, key=lambda run: run[0])))


def _pieces(concat: jaxpr_api.JaxprEqn, concats: dict) -> list:
  """The operands of ``concat``, those that are concatenations along the same axis
  replaced by their own pieces (``[[x; f]; s]`` is ``[x; f; s]``)."""
  pieces = []
  for v in concat.invars:
    inner = concats.get(v) if isinstance(v, jaxpr_api.Var) else None
    if inner is not None and inner.params["dimension"] == concat.params["dimension"]:
      pieces.extend(_pieces(inner, concats))
    else:
      pieces.append(v)
  return pieces


def _evaluate_distributed(closed: jaxpr_api.ClosedJaxpr, products: dict[int, _Product], *args):
  """Evaluates ``closed`` with the equations at ``products``' indices taken
  piece by piece; the others run as they are (as parts of ``closed``, so they
  keep their name scopes), and equations only the replaced concatenations
  needed are dropped."""
  jaxpr = closed.jaxpr
  env = dict(zip(jaxpr.constvars, closed.consts))
  env.update(zip(jaxpr.invars, args))
  read = lambda v: v.val if isinstance(v, jaxpr_api.Literal) else env[v]
  segment = []

  def run_segment():
    made = {v for eqn in segment for v in eqn.outvars}
    reads = list(dict.fromkeys(v for eqn in segment for v in eqn.invars
                               if isinstance(v, jaxpr_api.Var) and v not in made))
    writes = [v for eqn in segment for v in eqn.outvars if not isinstance(v, jaxpr_api.DropVar)]
    part = jaxpr_api.part_of(closed, [], reads, writes, segment, [])
    env.update(zip(writes, jaxpr_api.jaxpr_as_fun(part)(*map(read, reads))))
    segment.clear()

  for i in _live_equations(jaxpr, products):
    eqn = jaxpr.eqns[i]
    if i not in products:
      segment.append(eqn)
      continue
    if segment:
      run_segment()
    product, other = products[i], read(eqn.invars[1])
    total = None
    for start, stop, pieces in product.runs:
      piece = jax.lax.concatenate([read(p) for p in pieces], product.axis)
      part = jax.lax.slice_in_dim(other, start, stop, axis=product.other_axis)
      term = eqn.primitive.bind(piece, part, **eqn.params)
      total = term if total is None else total + term
    env[eqn.outvars[0]] = total
  if segment:
    run_segment()
  return [read(v) for v in jaxpr.outvars]


def _live_equations(jaxpr: jaxpr_api.Jaxpr, products: dict[int, _Product]) -> list[int]:
  """The indices of the equations the outputs need once ``products`` read the
  pieces of their concatenations instead of it."""
  needed = {v for v in jaxpr.outvars if isinstance(v, jaxpr_api.Var)}
  live = []
  for i in reversed(range(len(jaxpr.eqns))):
    eqn = jaxpr.eqns[i]
    if not eqn.effects and not any(v in needed for v in eqn.outvars):
      continue
    live.append(i)
    operands = eqn.invars if i not in products else (
        [eqn.invars[1]] + [piece for *_, pieces in products[i].runs for piece in pieces])
    needed.update(v for v in operands if isinstance(v, jaxpr_api.Var))
  return live[::-1]


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
