"""The ACT step around a recurrent cell, shared by the NNX and Linen wrappers.

A cell ``(carry, x) -> (carry, out)`` becomes an ACT step function (see
:data:`act_jax.StepFn`): the cell reads ``x`` with the first-step flag appended
(Eq. 3), and a sigmoid halting unit reads the new full state (Eq. 5). The
averaged output ``y_t`` is the mean field of the cell outputs; a linear output
layer applied to it equals the mean field of the layer's outputs (Eq. 9), since
the weights sum to one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from act_jax import pondernet
from act_jax.ponder_loop import PonderStep, StepFn, with_first_step_flag

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


def with_output_layer(step_fn: StepFn, apply_output: Callable[[Any, jax.Array], jax.Array]
                      ) -> StepFn:
  """``step_fn`` with an output layer applied to each step's output, inside the loop.

  The new step function takes ``(step_params, output_params)`` as params and
  returns ``apply_output(output_params, y^n)`` as its output: what a loss on
  each step's output (PonderNet's expected loss,
  :func:`act_jax.pondernet.with_step_loss`) needs. For the mean field alone,
  applying a linear layer after the loop gives the same numbers for less work.
  """
  return functools.partial(_step_with_output_layer, step_fn, apply_output)


def _step_with_output_layer(step_fn: StepFn, apply_output: Callable[[Any, jax.Array], jax.Array],
                            params: tuple[Any, Any], carry: Any, inputs: Any,
                            step_index: jax.Array) -> PonderStep:
  step_params, output_params = params
  out = step_fn(step_params, carry, inputs, step_index)
  return out._replace(output=apply_output(output_params, out.output))


def step_loss_args(step_fn: StepFn, params: Any, inputs: Any, targets: Any,
                   step_loss: pondernet.StepLoss | None,
                   apply_output: Callable[[Any, jax.Array], jax.Array] | None,
                   output_params: Any) -> tuple[StepFn, Any, Any] | None:
  """The step function, params and inputs of a wrapper's loop with a per-step loss.

  None without ``step_loss`` and ``targets``; otherwise the step with the
  output layer (if ``apply_output``) applied per step and
  :func:`act_jax.pondernet.with_step_loss`, so the loop's output is ``(y,
  sum_n p_n L(y_n))``. Raises ``ValueError`` if only one of the two is given.
  """
  if step_loss is None and targets is None:
    return None
  if step_loss is None or targets is None:
    raise ValueError("step_loss and targets go together: got "
                     f"step_loss={step_loss!r} and targets of type {type(targets).__name__}")
  if apply_output is not None:
    step_fn, params = with_output_layer(step_fn, apply_output), (params, output_params)
  return pondernet.with_step_loss(step_fn, step_loss), params, (inputs, targets)
