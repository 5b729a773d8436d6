"""The per-step halting arithmetic of ACT (Graves 2016, Eqs. 5-9, 13), shared by
every loop backend of :func:`act_jax.ponder`.

Pure functions over pytrees. The halting quantities (``h``, ``p``, ``R``, the
cumulative sum and the mean-field sums) are computed in one dtype,
:func:`halting_dtype`: float32, or the step function's wider float type
(float64 under ``jax_enable_x64``); bfloat16 and float16 models halt in
float32. It is read back from the carry (``carry.tally.dtype``)
everywhere after :func:`initial_halting`.

The per-example bookkeeping (cumulative sum, remainder, ``N`` and whether the
example still runs) is kept in one array, :attr:`Halting.tally`, and updated in
one expression, so that a compiled loop updates it in one kernel per step
rather than one per quantity.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from act_jax import pondernet
from act_jax.ponder_types import PonderResult, PonderStats, PonderStep, PyTree

MIN_HALTING_DTYPE = jnp.float32  # the narrowest dtype the halting arithmetic runs in


def halting_dtype(step_out: PonderStep) -> jnp.dtype:
  """The dtype of the halting arithmetic for a step function's (abstract) output.

  The widest of float32 and the float types of the halting logit and of the
  state and output leaves: float32 for bfloat16, float16 and float32 models,
  float64 for a float64 model.
  """
  floats = [leaf.dtype for leaf in jax.tree.leaves(step_out)
            if jnp.issubdtype(leaf.dtype, jnp.floating)]
  return jnp.dtype(functools.reduce(jnp.promote_types, floats, MIN_HALTING_DTYPE))


def threshold_for(epsilon: float, dtype: jnp.dtype) -> float:
  """``1 - epsilon`` computed in ``dtype`` (Eq. 7), as a Python float."""
  one_in = jnp.dtype(dtype).type
  return float(one_in(1.0) - one_in(epsilon))


def expand(per_example: jax.Array, leaf: jax.Array) -> jax.Array:
  """Reshapes a ``batch_shape`` array to broadcast against ``leaf``."""
  return per_example.reshape(per_example.shape + (1,) * (leaf.ndim - per_example.ndim))


def expand_tree(per_example: jax.Array, tree: PyTree) -> PyTree:
  """:func:`expand` against every leaf of ``tree``."""
  return jax.tree.map(lambda leaf: expand(per_example, leaf), tree)


def stand_in(tree: PyTree, real: jax.Array) -> PyTree:
  """``tree`` with every example where ``real`` is False replaced by a copy of
  the first example where it is True (of example 0 if none is).

  The leaves lead with ``real.shape`` (the batch shape). Examples that are not
  computed (masked, or a compaction level's spare slots) still go through the
  step function with the rest of the batch, and its backward pass multiplies
  their zero cotangent by what it computed for them: on a copy of a real
  example that is finite wherever the real examples' values are, so a NaN or
  inf in an example that is not computed reaches no gradient.
  """
  first = jnp.argmax(real.reshape(-1))
  copy_first = lambda leaf: jnp.where(
      expand(real, leaf), leaf, leaf.reshape((-1,) + leaf.shape[real.ndim:])[first])
  return jax.tree.map(copy_first, tree)


def per_example_dot(a: PyTree, b: PyTree, batch_ndim: int, dtype: jnp.dtype) -> jax.Array:
  """``<a, b>`` per example, summed over all non-batch axes and leaves, in ``dtype``."""
  dots = [
      jnp.sum(x.astype(dtype) * y.astype(dtype), axis=tuple(range(batch_ndim, x.ndim)))
      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  ]
  return functools.reduce(jnp.add, dots, jnp.zeros((), dtype))


CUMULATIVE, REMAINDER, STEPS, RUNNING = range(4)
"""The columns of :attr:`Halting.tally`."""


class Halting(NamedTuple):
  """The halting state of every example after ``n`` ponder steps.

  ``tally`` is ``batch_shape + (4,)`` in the halting dtype; its columns, read
  through the properties of the same names: ``cumulative``
  (``sum_{k<=n, k<N} h^k``), ``remainder`` (``R`` once halted, else 0),
  ``steps`` (``N`` once halted, else 0; exact, and int32 when read) and
  ``running`` (1 while not yet halted and not masked out, else 0).
  """

  state: PyTree  # s^n while running, frozen at s^N once halted
  state_sum: PyTree  # sum_k p^k s^k (Eq. 9)
  output_sum: PyTree  # sum_k p^k y^k (Eq. 9)
  tally: jax.Array  # cumulative, remainder, steps, running; batch_shape + (4,)
  halting_probs: jax.Array  # p^k, batch_shape + (max_steps,)

  @property
  def cumulative(self) -> jax.Array:
    return self.tally[..., CUMULATIVE]

  @property
  def remainder(self) -> jax.Array:
    return self.tally[..., REMAINDER]

  @property
  def steps(self) -> jax.Array:
    return self.tally[..., STEPS].astype(jnp.int32)

  @property
  def running(self) -> jax.Array:
    return self.tally[..., RUNNING] != 0


def make_tally(cumulative, remainder, steps, running, dtype: jnp.dtype) -> jax.Array:
  """Stacks the four per-example quantities into a :attr:`Halting.tally`."""
  columns = jnp.broadcast_arrays(cumulative, remainder, steps, running)
  return jnp.stack([c.astype(dtype) for c in columns], axis=-1)


def initial_halting(step_out: PonderStep, state: PyTree, mask: jax.Array,
                    max_steps: int) -> Halting:
  """The halting state before the first step; shapes and dtype from ``step_out``.

  Masked examples enter with a :func:`stand_in` state (:func:`finish` hands
  back their own ``state``).
  """
  dtype = halting_dtype(step_out)
  zeros = lambda x: jnp.zeros(x.shape, dtype)
  batch_shape = step_out.halting_logit.shape
  return Halting(
      state=stand_in(state, mask),
      state_sum=jax.tree.map(zeros, step_out.state),
      output_sum=jax.tree.map(zeros, step_out.output),
      tally=make_tally(0.0, 0.0, 0.0, mask, dtype),
      halting_probs=jnp.zeros(batch_shape + (max_steps,), dtype),
  )


def act_step_weights(logit: jax.Array, cumulative: jax.Array, running: jax.Array,
                     last: jax.Array, threshold: float
                     ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """ACT's halting weight for one step (Eqs. 5-8, 13), in ``cumulative``'s dtype.

  Args:
    logit: the halting logit of step ``n``, in the halting dtype.
    cumulative: ``sum_{k<n} h^k``.
    running: whether the example takes step ``n``.
    last: whether ``n = M``.
    threshold: ``1 - epsilon``.

  Returns:
    ``p^n`` (0 where not running), whether the example halts at ``n``, the
    cumulative sum handed on (unchanged where it halts or does not run) and
    ``R = 1 - sum_{k<n} h^k``. A NaN logit halts at once with a NaN remainder.
  """
  h = jax.nn.sigmoid(logit)  # Eq. 5
  halts = running & (~(cumulative + h < threshold) | last)  # Eqs. 7, 13; NaN halts
  remainder = jnp.where(jnp.isnan(h), jnp.nan, 1.0 - cumulative)  # Eq. 8
  p = jnp.where(halts, remainder, jnp.where(running, h, 0.0))  # Eq. 6
  return p, halts, jnp.where(running & ~halts, cumulative + h, cumulative), remainder


def act_backward_step(grad_p: jax.Array, p: jax.Array, grad_cumulative: jax.Array,
                      cumulative: jax.Array, running: jax.Array, is_last: jax.Array,
                      at_cap: jax.Array, grad_remainder: jax.Array
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Backpropagates ACT's weights through step ``n`` (the ``"while"`` backends).

  With ``g_n = dL/dp^n`` (Eq. 17) and ``a = dL/dc`` for the cumulative sum
  ``c`` handed on: at the halting step ``a = -(g_N + dL/dR)`` (``p^N = R = 1 -
  c_{N-1}``); for ``n < N``, ``dL/dh^n = g_n + a`` (Eq. 19), and 0 at ``N``
  (Eq. 20). ``a`` is the same for every ``n < N``, since ``c`` is a plain sum.
  The signature is :func:`act_jax.pondernet.backward_step`'s.

  Returns:
    ``dL/dlogit^n`` (0 where not running or at ``N``), ``a`` and ``cumulative``
    (unused by ACT, handed back unchanged).
  """
  del at_cap
  grad_cumulative = jnp.where(is_last, -(grad_p + grad_remainder), grad_cumulative)
  grad_h = jnp.where(running & ~is_last, grad_p + grad_cumulative, 0.0)  # Eqs. 19-20
  return grad_h * p * (1.0 - p), grad_cumulative, cumulative  # p^n = h^n where grad_h != 0


def rule_for(threshold: float) -> tuple[Callable[..., tuple], Callable[..., tuple]]:
  """The halting rule's per-step weights and their backward pass:
  :func:`act_step_weights` and :func:`act_backward_step` for a plain ``1 -
  epsilon``, PonderNet's (:mod:`act_jax.pondernet`) for a
  :class:`~act_jax.pondernet.PonderNetThreshold`."""
  if pondernet.is_pondernet(threshold):
    return pondernet.step_weights, pondernet.backward_step
  return act_step_weights, act_backward_step


def advance(carry: Halting, step_out: PonderStep, step_index: jax.Array, max_steps: int,
            threshold: float) -> Halting:
  """Accounts for ponder step ``n = step_index + 1`` (Eqs. 5-9, 13).

  ``threshold`` is ``1 - epsilon``; its type selects the halting rule's
  weights (:func:`rule_for`), the rest is shared.

  Only running examples add to the mean fields (selected, not multiplied by a
  zero weight, so a NaN or inf computed for a halted or masked example stays
  out). A NaN halting probability halts its example at once with a NaN
  remainder, so its outputs and ponder cost are NaN and the rest of the batch
  goes on unaffected.
  """
  dtype = carry.tally.dtype
  running = carry.running
  weights, _ = rule_for(threshold)
  p, halts, cumulative, remainder = weights(
      step_out.halting_logit.astype(dtype), carry.cumulative, running,
      step_index == max_steps - 1, threshold)

  def accumulate(total, leaf):  # Eq. 9
    return jnp.where(expand(running, total), total + expand(p, total) * leaf.astype(dtype),
                     total)

  return Halting(
      state=jax.tree.map(lambda new, old: jnp.where(expand(running, new), new, old),
                         step_out.state, carry.state),
      state_sum=jax.tree.map(accumulate, carry.state_sum, step_out.state),
      output_sum=jax.tree.map(accumulate, carry.output_sum, step_out.output),
      tally=make_tally(cumulative, jnp.where(halts, remainder, carry.remainder),
                       jnp.where(halts, step_index + 1, carry.tally[..., STEPS]),
                       running & ~halts, dtype),
      halting_probs=jax.lax.dynamic_update_index_in_dim(carry.halting_probs, p, step_index,
                                                        axis=-1),
  )


def finish(carry: Halting, state: PyTree) -> PonderResult:
  """Packs the mean fields; examples masked out keep ``state``."""
  computed = carry.steps > 0
  mean_state = jax.tree.map(
      lambda total, old: jnp.where(expand(computed, old), total.astype(old.dtype), old),
      carry.state_sum, state)
  return PonderResult(mean_state, carry.output_sum,
                      PonderStats(carry.steps, carry.remainder, carry.halting_probs))
