r"""Benchmark: one training step of ACT over depth, while_loop + custom VJP vs masked scan.

A Universal-Transformer-style layer (:class:`act_jax.depth.DepthACT` around a
Transformer block: 4-head self-attention and an MLP, post-LayerNorm) halts per
token, up to ``M`` block applications. Times, side by side in one process
(interleaved rounds, median per variant), one jit-compiled forward + backward
step (loss and gradients with respect to all parameters and the input):

  (a) ``while``: the while_loop backend, which stops when every token of the
      batch has halted, forward and backward;
  (b) ``scan``: the masked scan backend, always ``M`` block applications (a
      fixed-``M`` masked scan over depth with plain autodiff);
  (c) ``fixed``: the block applied, without halting, exactly as many times as
      (a)'s loop ran: the floor for any per-token ACT of this batch.

The halting unit has half its default initial weights and bias -0.4
(``h ~ 0.4``): most tokens halt after 3 applications, some after 2 or 4, so
the while loop runs 4 of the ``M = 12``.

Usage::

  python benchmarks/depth.py            # table
  python benchmarks/depth.py --json     # table, then one JSON line
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import nnx

import act_jax
import timing  # benchmarks/timing.py, beside this script
from act_jax import depth

_JSON = flags.DEFINE_bool("json", False, "Print one JSON object on the last line.")
_ROUNDS = flags.DEFINE_integer("rounds", 20, "Timed rounds per variant (interleaved).")
_MAX_STEPS = flags.DEFINE_integer("max_steps", 12, "The depth cap M.")
_BATCH = flags.DEFINE_integer("batch", 16, "Sequences per batch.")
_LENGTH = flags.DEFINE_integer("length", 64, "Tokens per sequence.")
_FEATURES = flags.DEFINE_integer("features", 128, "State size.")
_HALTING_BIAS = flags.DEFINE_float("halting_bias", -0.4, "Initial halting bias b_h.")


class Block(nnx.Module):
  """Post-LayerNorm Transformer encoder layer (UT Eqs. 4-5)."""

  def __init__(self, features: int, *, rngs: nnx.Rngs):
    self.attention = nnx.MultiHeadAttention(4, features, decode=False, rngs=rngs)
    self.attention_norm = nnx.LayerNorm(features, rngs=rngs)
    self.mlp_in = nnx.Linear(features, 2 * features, rngs=rngs)
    self.mlp_out = nnx.Linear(2 * features, features, rngs=rngs)
    self.mlp_norm = nnx.LayerNorm(features, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.attention_norm(x + self.attention(x))
    return self.mlp_norm(x + self.mlp_out(nnx.relu(self.mlp_in(x))))


def _model(backend: str) -> depth.DepthACT:
  rngs = nnx.Rngs(0)
  model = depth.DepthACT(Block(_FEATURES.value, rngs=rngs), _FEATURES.value,
                         max_steps=_MAX_STEPS.value, halting_bias_init=_HALTING_BIAS.value,
                         step_encoding=depth.add_position_and_depth_signal, backend=backend,
                         rngs=rngs)
  model.halting.kernel[...] *= 0.5
  return model


def _act_train_step(backend: str):
  """``(params, x, targets) -> (loss, grads)`` of squared error + tau * P."""
  graphdef, params = nnx.split(_model(backend))

  def loss(params, x, targets):
    result = nnx.merge(graphdef, params)(x)
    return (jnp.mean(jnp.sum((result.state - targets) ** 2, axis=(1, 2)))
            + act_jax.ponder_penalty(result.stats.ponder_cost, 0.01))

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), params, graphdef


def _fixed_train_step(graphdef, depth_taken: int):
  """The same block applied exactly ``depth_taken`` times, without halting."""

  def loss(params, x, targets):
    block = nnx.merge(graphdef, params).block
    for step_index in range(depth_taken):
      x = block(depth.add_position_and_depth_signal(x, jnp.int32(step_index)))
    return jnp.mean(jnp.sum((x - targets) ** 2, axis=(1, 2)))

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def main(argv):
  del argv
  shape = (_BATCH.value, _LENGTH.value, _FEATURES.value)
  x = jax.random.normal(jax.random.PRNGKey(1), shape)
  targets = jax.random.normal(jax.random.PRNGKey(2), shape)
  while_step, params, graphdef = _act_train_step("while")
  scan_step, _, _ = _act_train_step("scan")
  stats = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x).stats)(params, x)
  depth_taken = int(jnp.max(stats.steps))  # the while loop's iterations
  fixed_step = _fixed_train_step(graphdef, depth_taken)
  steps = {"while": while_step, "scan": scan_step, "fixed": fixed_step}
  args = (params, x, targets)
  compile_s = {name: timing.compile_seconds(fn, *args) for name, fn in steps.items()}
  ms = {name: 1e3 * s for name, s in timing.median_seconds(steps, args, _ROUNDS.value).items()}
  summary = {
      "depth_scan_over_while": ms["scan"] / ms["while"],
      "depth_while_over_fixed": ms["while"] / ms["fixed"],
      "mean_steps": float(jnp.mean(stats.steps)),
      "max_steps_taken": depth_taken,
      "max_steps": _MAX_STEPS.value,
      "ms": ms,
      "compile_s": compile_s,
  }
  print(f"batch {shape[0]} x length {shape[1]} x features {shape[2]}, M = {_MAX_STEPS.value}: "
        f"mean N {summary['mean_steps']:.2f}, slowest token N = {depth_taken}")
  print(f"{'variant':8s} {'ms/step':>9s} {'compile s':>10s}")
  for name in steps:
    print(f"{name:8s} {ms[name]:9.2f} {compile_s[name]:10.2f}")
  print(f"scan / while = {summary['depth_scan_over_while']:.2f}, "
        f"while / fixed = {summary['depth_while_over_fixed']:.2f}")
  if _JSON.value:
    print(json.dumps(summary))


if __name__ == "__main__":
  app.run(main)
