"""The jaxpr types and helpers that the step analyses read, from one place.

:mod:`act_jax.backends.step_pullback` and :mod:`act_jax.backends.loop_invariant`
read a step function's jaxpr (``jax.make_jaxpr``) and split it. What they need
comes from ``jax.extend.core``, which JAX does not promise to keep as it is
(in JAX 0.12 ``ClosedJaxpr`` is already an alias of ``Jaxpr``): this module alone
imports it, and falls back on JAX's internal ``jax._src.core`` if a name moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
  from jax.extend.core import (ClosedJaxpr, DebugInfo, DropVar, Jaxpr, JaxprEqn, Literal,
                               Var, jaxpr_as_fun, jaxprs_in_params)
except ImportError:  # a name left jax.extend.core: JAX's own definitions
  from jax._src.core import (DebugInfo, DropVar, Jaxpr, JaxprEqn, Literal, Var,
                             jaxpr_as_fun, jaxprs_in_params)
  from jax._src import core as _core
  ClosedJaxpr = getattr(_core, "ClosedJaxpr", Jaxpr)

__all__ = ["ClosedJaxpr", "DropVar", "JaxprEqn", "Literal", "Var", "jaxpr_as_fun",
           "jaxprs_in_params", "part_of"]


def part_of(closed: ClosedJaxpr, constvars: Sequence[Var], invars: Sequence[Var],
            outvars: Sequence[Any], eqns: Sequence[JaxprEqn],
            consts: Sequence[Any]) -> ClosedJaxpr:
  """A closed jaxpr made of some of ``closed``'s equations, traced for the same function.

  Args:
    closed: the jaxpr the equations come from; its debug information (the
      traced function's name and source line) is kept, its argument and
      result names are not (the parts have other arguments and results).
    constvars: the part's constants, bound to ``consts``.
    invars: the part's arguments.
    outvars: the part's results (variables or literals).
    eqns: the part's equations, in an order that computes each operand first.
    consts: the values of ``constvars``.

  Returns:
    The part as a closed jaxpr, whose effects are its equations'.
  """
  info = closed.jaxpr.debug_info
  effects = frozenset().union(*(eqn.effects for eqn in eqns))
  jaxpr = Jaxpr(constvars, invars, outvars, eqns, effects,
                debug_info=DebugInfo(info.traced_for, info.func_src_info, None, None))
  return ClosedJaxpr(jaxpr, consts)
