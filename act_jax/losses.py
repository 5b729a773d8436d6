"""The ponder cost term of the ACT loss (Graves 2016, Eqs. 11-12)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_time_penalty(time_penalty: jax.typing.ArrayLike) -> None:
  """Raises ``ValueError`` naming the value unless ``tau`` is real and >= 0.

  Traced values (e.g. a ``tau`` vmapped over a sweep) are not checked.
  """
  if isinstance(time_penalty, jax.core.Tracer):
    return
  message = f"time_penalty (tau) must be a real number >= 0, got {time_penalty!r}"
  if isinstance(time_penalty, (bool, str)):
    raise ValueError(message)
  try:
    values = np.asarray(time_penalty, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(message) from e
  if np.any(np.isnan(values) | (values < 0)):
    raise ValueError(message)


def ponder_penalty(
    ponder_cost: jax.Array,
    time_penalty: jax.typing.ArrayLike,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  """``tau * P`` averaged over the batch, with ``P = sum_t rho_t`` (Eqs. 11-12).

  The sum runs over all axes after the first (the input steps of a sequence,
  or positions and steps for depth-wise ACT) and the mean over the first, the
  normalisation of docs/equations.md section 12 item 4, under which ``tau`` means what the
  paper's grid means. Add the result to a task loss that is likewise summed
  over a sequence and averaged over the batch.

  Args:
    ponder_cost: ``rho = N + R`` (Eq. 10), shape ``[batch, ...]``: e.g.
      ``result.stats.ponder_cost`` of a :class:`act_jax.PonderResult` or
      :class:`act_jax.SequenceResult` (:attr:`act_jax.PonderStats.ponder_cost`).
    time_penalty: ``tau >= 0``.
    mask: optional, broadcastable to ``ponder_cost``; zero entries are left
      out (the ponder statistics are already 0 at masked steps).

  Returns:
    A scalar in float32, or in ``ponder_cost``'s dtype if wider (float64).
  """
  check_time_penalty(time_penalty)
  cost = ponder_cost.astype(jnp.promote_types(ponder_cost.dtype, jnp.float32))
  if mask is not None:
    cost = jnp.where(jnp.asarray(mask), cost, 0.0)
  per_example = jnp.sum(cost.reshape(cost.shape[0], -1), axis=1)
  return jnp.asarray(time_penalty, cost.dtype) * jnp.mean(per_example)
