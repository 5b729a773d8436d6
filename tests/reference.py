"""An independent, plainly written ACT reference (docs/equations.md section 10).

One example at a time, a Python loop over ponder steps with Python ``if``s.
Nothing here is shared with ``act_jax``: the halting rule, the weights, the
mean field and the ponder cost are written out again from the paper.

Gradients: the paper treats ``N(t)`` as a constant (docs/equations.md section 8). So
:func:`halting_steps` first finds each example's ``N`` with concrete values,
and :func:`example_forward` then unrolls exactly ``N`` steps with that ``N``
fixed, which ``jax.grad`` differentiates like any Python function.
"""

import numpy as np
import jax
import jax.numpy as jnp


def sigmoid(z):
  return 1.0 / (1.0 + jnp.exp(-z))


def halting_steps(step, params, state, x, max_steps, epsilon, dtype=np.float32):
  """N for one example: the first n with sum_{k<=n} h^k >= 1 - eps, or M.

  The sums run in ``dtype``: float32, or float64 for a float64 model.
  """
  threshold = dtype(1.0) - dtype(epsilon)
  total = dtype(0.0)
  for n in range(1, max_steps + 1):
    state, _, logit = step(params, state, x, n)
    h = dtype(sigmoid(jnp.asarray(logit, dtype)))
    if total + h >= threshold or n == max_steps:
      return n
    total = dtype(total + h)


def example_forward(step, params, state, x, n_steps, max_steps):
  """Mean-field state and output, R, rho and p for one example, N fixed."""
  total_h = 0.0
  mean_state = jax.tree.map(jnp.zeros_like, state)
  mean_output = None
  probs = []
  for n in range(1, n_steps + 1):
    state, output, logit = step(params, state, x, n)
    h = sigmoid(logit.astype(jnp.promote_types(logit.dtype, jnp.float32)))
    if n < n_steps:
      p = h
      total_h = total_h + h
    else:
      remainder = 1.0 - total_h
      p = remainder
    probs.append(p)
    mean_state = jax.tree.map(lambda m, s: m + p * s, mean_state, state)
    mean_output = p * output if mean_output is None else mean_output + p * output
  probs = jnp.stack(probs + [jnp.float32(0.0)] * (max_steps - n_steps))
  rho = n_steps + remainder
  return mean_state, mean_output, remainder, rho, probs


def batch_forward(step, params, states, xs, steps, max_steps):
  """Stacks :func:`example_forward` over a batch with per-example N fixed."""
  outs = [example_forward(step, params, jax.tree.map(lambda s: s[b], states), xs[b],
                          int(steps[b]), max_steps) for b in range(len(steps))]
  stack = lambda *a: jnp.stack(a)
  return jax.tree.map(stack, *outs)
