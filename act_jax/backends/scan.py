"""The ``"scan"`` backend of :func:`act_jax.ponder`: all ``max_steps`` steps,
halted examples masked, differentiated by JAX itself.

It is the reference the other backends are tested against, and the choice for
forward-mode or higher-order autodiff.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from act_jax import halting
from act_jax.ponder_types import PonderResult, PyTree, StepFn


def ponder(step_fn: StepFn, max_steps: int, threshold: float, params: PyTree, state: PyTree,
           inputs: PyTree, mask: jax.Array) -> PonderResult:
  """Runs ``max_steps`` masked ponder steps (Eqs. 3-13) in a ``lax.scan``.

  Args:
    step_fn: the step function (see :data:`act_jax.StepFn`).
    max_steps: the cap ``M`` (Eq. 13).
    threshold: ``1 - epsilon`` (Eq. 7).
    params: the step function's parameters.
    state: ``s_{t-1}``.
    inputs: ``x_t``.
    mask: bool, ``batch_shape``; False: not computed.

  Returns:
    The :class:`act_jax.PonderResult`.
  """
  step_out = jax.eval_shape(step_fn, params, state, inputs, jnp.int32(0))
  init = halting.initial_halting(step_out, state, mask, max_steps)

  def body(carry, step_index):
    out = step_fn(params, carry.state, inputs, step_index)
    return halting.advance(carry, out, step_index, max_steps, threshold), None

  final, _ = jax.lax.scan(body, init, jnp.arange(max_steps, dtype=jnp.int32))
  return halting.finish(final, state)
