"""PonderNet's halting rule (Banino et al. 2021) beside ACT's, under the same loop.

Pure functions over arrays. With ``halting="pondernet"`` :func:`act_jax.ponder`
runs the same loop backends as ACT; only the per-step halting weights
(:func:`step_weights`, called by :func:`act_jax.halting.advance`) and, on the
``"while"`` backends, their backward pass (:func:`backward_step`) differ:

* ``lambda_n = sigmoid(logit_n)`` (P1), the probability of halting at step
  ``n`` given that no earlier step halted; ``lambda_M := 1`` at the cap ``M``;
* ``p_n = lambda_n prod_{j<n} (1 - lambda_j) = lambda_n (1 - c_{n-1})`` (P2),
  with ``c_n = sum_{k<=n} p_k`` the halting mass so far (``c_0 = 0``);
* the loop unrolls until ``c_N >= 1 - epsilon`` or ``N = M`` (P3). The mass
  ``1 - c_N <= epsilon`` of the steps not taken is left out (not renormalised):
  it is the result's ``stats.remainder`` (0 at the cap, where ``lambda_M = 1``
  puts all of it on step ``M``). ``N`` is a constant for gradients, as in ACT.

The expected task loss ``L_rec = sum_n p_n L(y_n)`` (P4) needs each step's
loss, and keeping every ``y_n`` would make memory grow with ``M``. It is the
``p``-weighted sum the loop already accumulates for the output (ACT's Eq. 9),
applied to a per-example loss computed inside the step: :func:`with_step_loss`
wraps a step function so that its output is ``(y_n, L(y_n))``, its targets
entering with its inputs. The loop then returns ``(sum_n p_n y_n, sum_n p_n
L(y_n))`` in one carry of fixed size, differentiated by the same backward pass
(``dL/dp_n`` includes ``L(y_n)``, Eq. 17), and compaction gathers the targets
with the inputs. The regulariser ``KL(p || q)`` (P5, :func:`kl_divergence`)
and the evaluation rules (:func:`most_likely_steps`, :func:`sampled_steps`,
:func:`at_halting_step`) read the result's ``stats.halting_probs``.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from act_jax.ponder_types import PonderStats, PonderStep, PyTree, StepFn

HaltingRule = Literal["act", "pondernet"]
HALTING_RULES: tuple[str, ...] = ("act", "pondernet")
StepLoss = Callable[[PyTree, PyTree], jax.Array]
"""``step_loss(output, targets) -> per-example loss`` (see :func:`with_step_loss`)."""


class PonderNetThreshold(float):
  """``1 - epsilon`` (P3) that also selects PonderNet's halting rule.

  The loop backends hand their threshold unchanged to
  :func:`act_jax.halting.advance`; this type is how they are told the rule.
  It compares and hashes apart from a plain float of the same value, so a
  compiled ACT loop is never reused for PonderNet.
  """

  def __eq__(self, other: object) -> bool:
    return type(other) is PonderNetThreshold and float(self) == float(other)

  def __ne__(self, other: object) -> bool:
    return not self == other

  def __hash__(self) -> int:
    return hash((PonderNetThreshold, float(self)))

  def __repr__(self) -> str:
    return f"PonderNetThreshold({float(self)!r})"


def is_pondernet(threshold: float) -> bool:
  """Whether a loop's threshold selects PonderNet's rule."""
  return isinstance(threshold, PonderNetThreshold)


def check_halting_rule(halting: Any) -> None:
  """Raises ``ValueError`` naming the value unless it is one of :data:`HALTING_RULES`."""
  if not isinstance(halting, str) or halting not in HALTING_RULES:
    raise ValueError(f"halting must be one of {HALTING_RULES}, got {halting!r}")


def check_prior(lambda_p: Any) -> None:
  """Raises ``ValueError`` naming the value unless ``lambda_p`` is real in (0, 1)."""
  if isinstance(lambda_p, bool) or not isinstance(lambda_p, numbers.Real) or not (
      0.0 < float(lambda_p) < 1.0):
    raise ValueError(f"lambda_p must be a real number in (0, 1), got {lambda_p!r}")


def check_beta(beta: Any) -> None:
  """Raises ``ValueError`` naming the value unless ``beta`` is a real number >= 0
  (traced values are not checked)."""
  if isinstance(beta, jax.core.Tracer):
    return
  if isinstance(beta, bool) or not isinstance(beta, (numbers.Real, jax.Array)) or not (
      float(beta) >= 0.0):
    raise ValueError(f"beta must be a real number >= 0, got {beta!r}")


def step_weights(logit: jax.Array, cumulative: jax.Array, running: jax.Array, last: jax.Array,
                 threshold: float) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """PonderNet's halting weight for one step (P1-P3), in ``cumulative``'s dtype.

  Args:
    logit: the halting logit of step ``n``, in the halting dtype.
    cumulative: ``c_{n-1}``, the halting mass of the earlier steps.
    running: whether the example takes step ``n``.
    last: whether ``n = M`` (then ``lambda_n = 1``).
    threshold: ``1 - epsilon``.

  Returns:
    ``p_n`` (0 where not running), whether the example halts at ``n``,
    ``c_n`` (``c_{n-1}`` where not running) and the mass left out if it halts,
    ``(1 - c_{n-1}) (1 - lambda_n) = 1 - c_n``. A NaN logit halts at once with
    a NaN weight and remainder.
  """
  lam = jnp.where(last, 1.0, jax.nn.sigmoid(logit))  # P1; lambda_M = 1
  p = lam * (1.0 - cumulative)  # P2
  halts = running & (~(cumulative + p < threshold) | last)  # P3; NaN halts
  return (jnp.where(running, p, 0.0), halts, jnp.where(running, cumulative + p, cumulative),
          (1.0 - cumulative) * (1.0 - lam))


def backward_step(grad_p: jax.Array, p: jax.Array, grad_cumulative: jax.Array,
                  cumulative: jax.Array, running: jax.Array, is_last: jax.Array,
                  at_cap: jax.Array, grad_remainder: jax.Array
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Backpropagates PonderNet's weights through step ``n`` (the ``"while"`` backends).

  With ``g_n = dL/dp_n`` through the step's state, output and ``p_n`` itself
  (Eq. 17) and ``a_n = dL/dc_n``, differentiating ``p_n = lambda_n (1 -
  c_{n-1})`` and ``c_n = c_{n-1} + p_n`` gives

  * ``dL/dlambda_n = (g_n + a_n) (1 - c_{n-1})``, and ``dL/dlogit_n`` that
    times ``lambda_n (1 - lambda_n)``; 0 at the cap (``lambda_M = 1``);
  * ``a_{n-1} = a_n - (g_n + a_n) lambda_n``.

  At the halting step ``a_N`` also takes ``-dL/dR`` (``R = 1 - c_N``).
  ``c_{n-1} = c_n - p_n`` and ``lambda_n = p_n / (1 - c_{n-1})`` are rebuilt
  from the recorded weights (``1 - c_{n-1} > epsilon`` while running, so the
  division is well conditioned).

  Args:
    grad_p: ``g_n``.
    p: ``p_n``.
    grad_cumulative: ``a_n``.
    cumulative: ``c_n``.
    running: whether the example took step ``n``.
    is_last: whether ``n = N``.
    at_cap: whether ``n = M``.
    grad_remainder: ``dL/dR``.

  Returns:
    ``dL/dlogit_n`` (0 where not running), ``a_{n-1}`` and ``c_{n-1}`` (both
    unchanged where not running). The signature is
    :func:`act_jax.halting.act_backward_step`'s.
  """
  grad_cumulative = jnp.where(is_last, grad_cumulative - grad_remainder, grad_cumulative)
  before = cumulative - p
  unhalted = jnp.where(running, 1.0 - before, 1.0)
  lam = jnp.where(at_cap, 1.0, p / unhalted)
  total = grad_p + grad_cumulative
  grad_logit = jnp.where(running & ~at_cap, total * unhalted * lam * (1.0 - lam), 0.0)
  return (grad_logit, jnp.where(running, grad_cumulative - total * lam, grad_cumulative),
          jnp.where(running, before, cumulative))


def truncated_geometric(steps: jax.Array, max_steps: int, lambda_p: float,
                        dtype: jnp.dtype = jnp.float32) -> jax.Array:
  """The prior ``q`` of the regulariser: a geometric distribution truncated to
  the steps taken and renormalised (P5).

  ``q_n = lambda_p (1 - lambda_p)^(n-1) / (1 - (1 - lambda_p)^N)`` for ``n <=
  N`` and 0 after, so that ``sum_{n<=N} q_n = 1`` for each example's own
  ``N``. A constant for gradients (``N`` is).

  Args:
    steps: ``N``, int, any shape (0: masked, ``q = 0``).
    max_steps: ``M``, the length of the trailing axis.
    lambda_p: the prior's halting probability, in (0, 1).
    dtype: the result's dtype.

  Returns:
    ``q``, shape ``steps.shape + (max_steps,)``.
  """
  check_prior(lambda_p)
  n = jnp.arange(1, max_steps + 1, dtype=dtype)
  log_keep = jnp.log1p(-jnp.asarray(lambda_p, dtype))  # log(1 - lambda_p)
  q = lambda_p * jnp.exp((n - 1) * log_keep)
  total = -jnp.expm1(steps.astype(dtype) * log_keep)  # 1 - (1 - lambda_p)^N
  taken = n <= steps[..., None]
  return jnp.where(taken, q / jnp.where(taken, total[..., None], 1.0), 0.0)


def kl_divergence(stats: PonderStats, lambda_p: float) -> jax.Array:
  """``KL(p || q) = sum_{n<=N} p_n (log p_n - log q_n)`` per example (P5).

  ``q`` is :func:`truncated_geometric`. ``p`` is the loop's weights as they are:
  their sum is ``1 - R >= 1 - epsilon`` (the mass of the steps not taken is
  left out, not renormalised). Terms with ``p_n = 0`` are 0; masked examples
  (``N = 0``) give 0.

  Returns:
    Shape ``stats.steps.shape``, in the halting dtype.
  """
  probs = stats.halting_probs
  q = truncated_geometric(stats.steps, probs.shape[-1], lambda_p, probs.dtype)
  positive = probs > 0
  safe = lambda x: jnp.where(positive, x, 1.0)
  return jnp.sum(jnp.where(positive, probs * (jnp.log(safe(probs)) - jnp.log(safe(q))), 0.0),
                 axis=-1)


def kl_penalty(stats: PonderStats, beta: jax.typing.ArrayLike, lambda_p: float,
               mask: jax.typing.ArrayLike | None = None) -> jax.Array:
  """``beta * KL`` summed over all axes after the first, averaged over the first
  (the batch), as :func:`act_jax.ponder_penalty` normalises ``tau * P``.

  Args:
    stats: per-example (or per input step, ``[batch, time]``) statistics.
    beta: the regulariser's weight, >= 0.
    lambda_p: the prior's halting probability, in (0, 1).
    mask: optional, broadcastable to ``stats.steps``; zero entries are left out.

  Returns:
    A scalar in the halting dtype.
  """
  check_beta(beta)
  kl = kl_divergence(stats, lambda_p)
  if mask is not None:
    kl = jnp.where(jnp.asarray(mask), kl, 0.0)
  return jnp.asarray(beta, kl.dtype) * jnp.mean(jnp.sum(kl.reshape(kl.shape[0], -1), axis=1))


def expected_steps(stats: PonderStats) -> jax.Array:
  """``sum_n n p_n`` per example: the mean number of steps under ``p``."""
  probs = stats.halting_probs
  return jnp.sum(probs * jnp.arange(1, probs.shape[-1] + 1, dtype=probs.dtype), axis=-1)


def most_likely_steps(stats: PonderStats) -> jax.Array:
  """The most likely halting step ``argmax_n p_n`` (the first on ties), int32; 0 if masked."""
  step = jnp.argmax(stats.halting_probs, axis=-1).astype(jnp.int32) + 1
  return jnp.where(stats.steps > 0, step, 0)


def sampled_steps(stats: PonderStats, key: jax.Array) -> jax.Array:
  """A halting step drawn from ``p`` renormalised over the steps taken, int32; 0 if masked.

  This is the draw of PonderNet's evaluation (halt at step ``n`` with
  probability ``lambda_n``, having not halted before) conditioned on halting
  within the ``N`` steps taken, which differs from the untruncated draw by at
  most ``epsilon`` in total variation.
  """
  probs = stats.halting_probs
  logits = jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -jnp.inf)
  step = jax.random.categorical(key, logits, axis=-1).astype(jnp.int32) + 1
  return jnp.where(stats.steps > 0, step, 0)


def with_step_loss(step_fn: StepFn, step_loss: StepLoss) -> StepFn:
  """A step function whose output also carries each step's per-example loss.

  The new step function takes ``inputs = (x, targets)`` and returns the output
  ``(y_n, step_loss(y_n, targets))``; pondered, its result's output is
  ``(sum_n p_n y_n, sum_n p_n L(y_n))``, the second the expected loss (P4).
  ``step_loss`` returns an array of the batch shape. ``targets`` may hold
  integers (they get no gradient); with ``independent_examples=True`` every
  leaf leads with the batch axis, as the inputs do.
  """
  return functools.partial(_step_with_loss, step_fn, step_loss)


def _step_with_loss(step_fn: StepFn, step_loss: StepLoss, params: PyTree, state: PyTree,
                    inputs_and_targets: tuple[PyTree, PyTree],
                    step_index: jax.Array) -> PonderStep:
  inputs, targets = inputs_and_targets
  out = step_fn(params, state, inputs, step_index)
  return out._replace(output=(out.output, step_loss(out.output, targets)))


def at_halting_step(step_fn: StepFn) -> StepFn:
  """A step function that halts exactly at a given step, for evaluation.

  The new step function takes ``inputs = (x, halting_step)`` (int,
  ``batch_shape``; e.g. :func:`most_likely_steps` or :func:`sampled_steps`)
  and replaces the halting logit by ``-inf`` before that step and ``+inf`` at
  it. Pondered with ``halting="act"`` and ``first_step_flag_only=False`` (it
  reads the step index), the weights are one-hot at ``halting_step``, so the
  result's state and output are ``s_n`` and ``y_n`` of that step.
  """
  return functools.partial(_step_halting_at, step_fn)


def _step_halting_at(step_fn: StepFn, params: PyTree, state: PyTree,
                     inputs_and_steps: tuple[PyTree, jax.Array],
                     step_index: jax.Array) -> PonderStep:
  inputs, halting_step = inputs_and_steps
  out = step_fn(params, state, inputs, step_index)
  logit = jnp.where(step_index + 1 >= halting_step, jnp.inf, -jnp.inf)
  return out._replace(halting_logit=logit.astype(out.halting_logit.dtype))
