r"""Trains a small Universal Transformer on binary addition, with ACT or at fixed depth.

ACT over depth (each position halts on its own, up to ``--max_steps``)::

  python examples/universal_transformer/train.py --time_penalty=0.01

The same model with the block applied a fixed number of times::

  python examples/universal_transformer/train.py --fixed_depth=4

The task is described in ``data.py``. Self-attention sees only the
neighbouring positions (``--attention_window=1``), so a carry moves one
position per application of the block and the depth a position needs grows
with the carry chain below it. Progress lines show the training batch's bit
and sequence accuracy and the mean depth per position; the final line (JSON)
reports the same on held-out examples, plus sequence accuracy by the longest
carry chain of an example and mean depth ``N`` by the carry chain below a
position.
"""

from __future__ import annotations

import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax import nnx

import act_jax
import data
from model import UniversalTransformer

_SEED = flags.DEFINE_integer("seed", 0, "Random seed (parameters and data).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 1500, "Optimiser steps.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Examples per step.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 3e-4, "Adam learning rate.")
_MIN_BITS = flags.DEFINE_integer("min_bits", 8, "Fewest bits per operand.")
_MAX_BITS = flags.DEFINE_integer("max_bits", 24, "Most bits per operand.")
_FEATURES = flags.DEFINE_integer("features", 64, "State size.")
_NUM_HEADS = flags.DEFINE_integer("num_heads", 4, "Attention heads.")
_MLP_FEATURES = flags.DEFINE_integer("mlp_features", 128, "MLP hidden size.")
_ATTENTION_WINDOW = flags.DEFINE_integer(
    "attention_window", 1, "How far a position attends (-1: the whole sequence).")
_MAX_STEPS = flags.DEFINE_integer("max_steps", 12, "ACT's depth cap M.")
_FIXED_DEPTH = flags.DEFINE_integer(
    "fixed_depth", None, "Apply the block this many times, without ACT (default: ACT).")
_TIME_PENALTY = flags.DEFINE_float("time_penalty", 0.01, "ACT's tau.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 250, "Steps between progress lines.")
_EVAL_SIZE = flags.DEFINE_integer("eval_size", 2048, "Held-out examples for the final report.")

LONGEST_CHAIN_REPORTED = 8  # longer carry chains are reported with chains of 8


def generate(key: jax.Array, batch_size: int) -> data.Batch:
  return data.generate(key, batch_size, _MIN_BITS.value, _MAX_BITS.value)


def loss_fn(model: UniversalTransformer, batch: data.Batch, time_penalty: float):
  """Cross-entropy summed over a sequence, plus tau * P; mean over the batch."""
  logits, stats = model(batch.tokens, batch.valid)
  cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, batch.targets)
  loss = jnp.mean(jnp.sum(jnp.where(batch.valid, cross_entropy, 0.0), axis=1))
  if stats is not None:
    loss += act_jax.ponder_penalty(stats.ponder_cost, time_penalty)
  return loss, (logits, stats)


def correct_and_depth(logits: jax.Array, stats: act_jax.PonderStats | None, batch: data.Batch,
              fixed_depth: int | None) -> tuple[jax.Array, jax.Array]:
  """Whether each position is right, and the depth it took."""
  correct = jnp.argmax(logits, axis=-1) == batch.targets
  depth = jnp.full(batch.valid.shape, fixed_depth) if stats is None else stats.steps
  return correct, depth


def summarize(correct: jax.Array, depth: jax.Array, valid: jax.Array) -> dict[str, jax.Array]:
  """Bit and sequence accuracy; mean depth per position and the batch's largest."""
  num_valid = jnp.sum(valid)
  return {
      "accuracy": jnp.sum(correct & valid) / num_valid,
      "sequence_accuracy": jnp.mean(jnp.all(correct | ~valid, axis=1)),
      "mean_depth": jnp.sum(jnp.where(valid, depth, 0)) / num_valid,
      "max_depth": jnp.max(jnp.where(valid, depth, 0)),
  }


@functools.partial(nnx.jit, static_argnames="fixed_depth")
def train_step(model, optimizer, batch, time_penalty, fixed_depth):
  (loss, (logits, stats)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
      model, batch, time_penalty)
  optimizer.update(model, grads)
  correct, depth = correct_and_depth(logits, stats, batch, fixed_depth)
  return {"loss": loss, **summarize(correct, depth, batch.valid)}


@functools.partial(nnx.jit, static_argnames="fixed_depth")
def evaluate(model, batch, fixed_depth):
  logits, stats = model(batch.tokens, batch.valid)
  return correct_and_depth(logits, stats, batch, fixed_depth)


def report(model: UniversalTransformer, fixed_depth: int | None) -> dict[str, object]:
  """Held-out accuracy and mean depth, overall and by carry chain length."""
  batch = generate(jax.random.key(10**6 + _SEED.value), _EVAL_SIZE.value)
  correct, depth = evaluate(model, batch, fixed_depth)
  summary = {k: round(float(v), 4) for k, v in summarize(correct, depth, batch.valid).items()}
  correct, depth, valid, chain = (np.asarray(a) for a in (correct, depth, batch.valid,
                                                           batch.carry_chain))
  chain = np.where(valid, np.minimum(chain, LONGEST_CHAIN_REPORTED), 0)
  sequence_correct, longest = np.all(correct | ~valid, axis=1), np.max(chain, axis=1)
  lengths = range(LONGEST_CHAIN_REPORTED + 1)
  summary["sequence_accuracy_by_longest_chain"] = [
      _mean_or_none(sequence_correct[longest == c]) for c in lengths]
  summary["mean_depth_by_chain"] = [_mean_or_none(depth[valid & (chain == c)]) for c in lengths]
  return summary


def _mean_or_none(values: np.ndarray) -> float | None:
  return round(float(np.mean(values)), 3) if values.size else None


def main(argv):
  del argv
  fixed_depth = _FIXED_DEPTH.value
  model = UniversalTransformer(
      vocab_size=data.VOCAB_SIZE, num_classes=data.NUM_CLASSES,
      features=_FEATURES.value, num_heads=_NUM_HEADS.value, mlp_features=_MLP_FEATURES.value,
      max_steps=_MAX_STEPS.value, fixed_depth=fixed_depth,
      attention_window=None if _ATTENTION_WINDOW.value < 0 else _ATTENTION_WINDOW.value,
      rngs=nnx.Rngs(_SEED.value))
  optimizer = nnx.Optimizer(model, optax.adam(_LEARNING_RATE.value), wrt=nnx.Param)
  num_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  name = f"ACT, M = {_MAX_STEPS.value}" if fixed_depth is None else f"fixed depth {fixed_depth}"
  print(f"{name}, {num_params} parameters", flush=True)
  data_key = jax.random.key(_SEED.value)
  start = interval_start = time.perf_counter()
  for step in range(1, _TRAIN_STEPS.value + 1):
    batch = generate(jax.random.fold_in(data_key, step), _BATCH_SIZE.value)
    metrics = train_step(model, optimizer, batch, _TIME_PENALTY.value, fixed_depth)
    if step % _LOG_EVERY.value == 0 or step == 1:
      metrics = {k: float(v) for k, v in metrics.items()}
      now = time.perf_counter()
      steps_per_second = (1 if step == 1 else _LOG_EVERY.value) / (now - interval_start)
      interval_start = now
      print(f"step {step:5d}  {steps_per_second:5.1f} steps/s  loss {metrics['loss']:7.3f}"
            f"  bit accuracy {metrics['accuracy']:.3f}  seq accuracy "
            f"{metrics['sequence_accuracy']:.3f}  depth mean {metrics['mean_depth']:.2f}"
            f" max {metrics['max_depth']:.0f}",
            flush=True)
  summary = {"train_seconds": round(time.perf_counter() - start, 1),
             **report(model, fixed_depth)}
  print("final " + json.dumps(summary))


if __name__ == "__main__":
  app.run(main)
