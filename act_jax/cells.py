"""The ACT step around a recurrent cell, shared by the NNX and Linen wrappers.

A cell ``(carry, x) -> (carry, out)`` becomes an ACT step function (see
:data:`act_jax.StepFn`): the cell reads ``x`` with the first-step flag appended
(Eq. 3), and a sigmoid halting unit reads the new full state (Eq. 5). The
averaged output ``y_t`` is the mean field of the cell outputs; a linear output
layer applied to it equals the mean field of the layer's outputs (Eq. 9), since
the weights sum to one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from act_jax.ponder_loop import PonderStep, with_first_step_flag

CellApply = Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]]
HaltingApply = Callable[[Any, jax.Array], jax.Array]


def full_state(carry: Any) -> jax.Array:
  """The whole cell state as one feature vector: the carry's leaves concatenated.

  This is what the halting unit reads by default (docs/equations.md section 12 item 1): the
  hidden vector of a tanh or GRU cell, ``[c; h]`` for an LSTM.
  """
  return jnp.concatenate(jax.tree.leaves(carry), axis=-1)


def cell_step_fn(apply_cell: CellApply, apply_halting: HaltingApply,
                 halting_reads: Callable[[Any], jax.Array] = full_state):
  """Builds ``step_fn((cell_params, halting_params), carry, x, n)`` for ``ponder``.

  Args:
    apply_cell: ``apply_cell(cell_params, carry, x_with_flag) -> (carry, out)``.
    apply_halting: ``apply_halting(halting_params, features) -> [..., 1]``
      logits.
    halting_reads: maps the new carry to the halting unit's input features.

  Returns:
    A step function for :func:`act_jax.ponder`.
  """

  def step_fn(params, carry, inputs, step_index) -> PonderStep:
    cell_params, halting_params = params
    carry, out = apply_cell(cell_params, carry, with_first_step_flag(inputs, step_index))
    logit = apply_halting(halting_params, halting_reads(carry))[..., 0]
    return PonderStep(carry, out, logit)

  return step_fn
