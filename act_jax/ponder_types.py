"""The types of the ponder loop's interface: what a step function returns and what
:func:`act_jax.ponder` returns (Graves 2016, Eqs. 3-13)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

PyTree = Any


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
first-step flag of Eq. 3 is ``step_index == 0`` (see
:func:`act_jax.with_first_step_flag`).
"""


class PonderStats(NamedTuple):
  """Per-example ponder statistics; the same fields per input step or per sequence.

  Attributes:
    steps: ``N(t)``, the number of updates taken (Eq. 13), int32; 0 where the
      example (or input step) was masked out.
    remainder: ``R(t) = 1 - sum_{n<N} h_t^n`` (Eq. 8), in the halting dtype
      (float32, or float64 for a float64 model); 0 where masked.
    halting_probs: ``p_t^n`` (Eq. 6), in the halting dtype, with a trailing
      ``max_steps`` axis, zero for ``n > N(t)``.
  """

  steps: jax.Array
  remainder: jax.Array
  halting_probs: jax.Array

  @property
  def ponder_cost(self) -> jax.Array:
    """``rho_t = N(t) + R(t)`` (Eq. 10); its gradient flows through R only."""
    return self.steps.astype(self.remainder.dtype) + self.remainder


class PonderResult(NamedTuple):
  """The result of pondering on one input step.

  Attributes:
    state: the mean-field state ``s_t = sum_n p_t^n s_t^n`` (Eq. 9), in the
      dtypes of the input state. Examples masked out keep the input state.
    output: the mean-field output ``y_t = sum_n p_t^n y_t^n`` (Eq. 9), in the
      halting dtype (float32, or float64 for a float64 model); exactly zero
      for examples masked out.
    stats: ``N``, ``R`` and ``p``, shape ``batch_shape`` (``p``: plus
      ``max_steps``).
  """

  state: PyTree
  output: PyTree
  stats: PonderStats
