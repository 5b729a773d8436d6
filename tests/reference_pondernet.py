"""An independent, plainly written PonderNet reference (Banino et al. 2021).

One example at a time, a Python loop over ponder steps with Python ``if``s,
in float64. Nothing here is shared with ``act_jax``: the halting distribution
is written as a running product of ``1 - lambda`` (the library keeps the
running sum of ``p``), the prior is normalised by an explicit sum (the library
uses the geometric series' closed form).

Gradients: ``N`` is a constant, as in the ACT reference. :func:`halting_steps`
finds each example's ``N`` with concrete float64 values, and
:func:`example_forward` then unrolls exactly ``N`` steps with that ``N``
fixed, which ``jax.grad`` differentiates like any Python function.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np


def sigmoid(z):
  return 1.0 / (1.0 + jnp.exp(-z))


def halting_steps(step, params, state, x, max_steps, epsilon):
  """N for one example: the first n whose halting mass reaches 1 - eps, or M."""
  unhalted = 1.0  # prod_{j<n} (1 - lambda_j)
  for n in range(1, max_steps + 1):
    state, _, logit = step(params, state, x, n)
    lam = 1.0 if n == max_steps else 1.0 / (1.0 + math.exp(-float(logit)))
    unhalted = unhalted * (1.0 - lam)
    if 1.0 - unhalted >= 1.0 - epsilon or n == max_steps:
      return n


def example_forward(step, params, state, x, n_steps, max_steps, step_loss, target):
  """For one example, N fixed: the p-weighted state and output, the expected
  step loss sum_n p_n L(y_n), p (padded with zeros to M) and the left-out mass."""
  unhalted = 1.0
  mean_state = jax.tree.map(jnp.zeros_like, state)
  mean_output, expected_loss, probs = 0.0, 0.0, []
  for n in range(1, n_steps + 1):
    state, output, logit = step(params, state, x, n)
    lam = 1.0 if n == max_steps else sigmoid(logit.astype(jnp.float64))
    p = lam * unhalted
    unhalted = unhalted * (1.0 - lam)
    probs.append(p)
    mean_state = jax.tree.map(lambda m, s: m + p * s, mean_state, state)
    mean_output = mean_output + p * output
    expected_loss = expected_loss + p * step_loss(output, target)
  probs = jnp.stack([jnp.asarray(p, jnp.float64) for p in probs]
                    + [jnp.float64(0.0)] * (max_steps - n_steps))
  return mean_state, mean_output, expected_loss, probs, jnp.asarray(unhalted, jnp.float64)


def batch_forward(step, params, states, xs, steps, max_steps, step_loss, targets):
  """Stacks :func:`example_forward` over a batch with per-example N fixed."""
  outs = [example_forward(step, params, jax.tree.map(lambda s: s[b], states), xs[b],
                          int(steps[b]), max_steps, step_loss, targets[b])
          for b in range(len(steps))]
  return jax.tree.map(lambda *a: jnp.stack(a), *outs)


def truncated_geometric(n_steps, max_steps, lambda_p):
  """q_n = lambda_p (1 - lambda_p)^(n-1) for n <= N, divided by their sum; 0 after."""
  q = [lambda_p * (1.0 - lambda_p) ** (n - 1) for n in range(1, n_steps + 1)]
  total = sum(q)
  return np.array([v / total for v in q] + [0.0] * (max_steps - n_steps))


def kl_divergence(probs, n_steps, lambda_p):
  """sum_{n<=N} p_n log(p_n / q_n), p as given (jnp, differentiable)."""
  q = truncated_geometric(n_steps, probs.shape[-1], lambda_p)
  return sum(probs[n] * jnp.log(probs[n] / q[n]) for n in range(n_steps))
