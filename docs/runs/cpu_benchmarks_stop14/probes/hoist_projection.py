"""Probe: the parity value-and-grad (tanh 128, batch 128, M = 100, N about 3) with the
cell's input projection computed once outside the ponder loop (the step function
closes over it), against the benchmark's step function (projection inside, hoisted
by XLA in the forward pass only) and the plain unrolled cell.

  PYTHONPATH=.:benchmarks python hoist_projection.py [rounds]
"""
import sys

import jax
import jax.numpy as jnp

from absl import flags

import act_jax
import ponder_loop as bench
import timing

flags.FLAGS(["hoist_projection"])  # the benchmark's flags at their defaults

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
params, state, x, targets = bench._parity_args(128, halting_bias=-0.4)
args = (params, state, x, targets)
standard, _, stats = bench._act_train_step(bench._tanh_cell, "while", 100, sequence=False)


def hoisted_loss(params, state, x, targets):
  projection = x @ params["w_x"][:-1] + params["b"]  # [batch, hidden], once
  flag_row = params["w_x"][-1]

  def step_fn(p, s, unused_x, n):
    pre = projection + jnp.where(n == 0, 1.0, 0.0) * flag_row + s @ p["w_s"]
    s = jnp.tanh(pre)
    return act_jax.PonderStep(s, (), s @ p["w_h"] + p["b_h"])

  r = act_jax.ponder(step_fn, params, state, x, max_steps=100, backend="while",
                     first_step_flag_only=True)
  return (bench._bce(r.state @ params["w_y"], targets)
          + act_jax.ponder_penalty(r.stats.ponder_cost, 1e-3))


hoisted = jax.jit(jax.value_and_grad(hoisted_loss))
taken = int(jnp.max(stats(*args[:3]).steps))
plain, _ = bench._plain_train_step(bench._tanh_cell, [taken], sequence=False)
(l1, g1), (l2, g2) = standard(*args), hoisted(*args)
print("loss", float(l1), float(l2), "max grad diff",
      max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2))))
for _ in range(3):
  s = timing.median_seconds({"standard": standard, "hoisted": hoisted, "plain": plain}, args, rounds)
  print({k: round(1e3 * v, 3) for k, v in s.items()},
        "standard/plain", round(s["standard"] / s["plain"], 3),
        "hoisted/plain", round(s["hoisted"] / s["plain"], 3), flush=True)
