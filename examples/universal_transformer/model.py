"""A small Universal Transformer encoder (Dehghani et al. 2019) in Flax NNX.

One shared Transformer block is applied over depth: with ACT, each position
halts on its own (:class:`act_jax.depth.DepthACT`); without, the block is
applied a fixed number of times. Both variants have the same parameters
(ACT adds the halting unit, ``features + 1`` numbers) and the same position and
depth signals, added to the state before every application (UT Eq. 1).
Self-attention can be limited to a window of neighbouring positions, so that
information travels a bounded distance per application.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import act_jax
from act_jax import depth


class TransformerBlock(nnx.Module):
  """A post-LayerNorm encoder layer, as in UT Eqs. 4-5.

  ``A = LayerNorm(x + MultiHeadAttention(x))`` and
  ``LayerNorm(A + MLP(A))``, the MLP being the UT "transition function".
  """

  def __init__(self, features: int, num_heads: int, mlp_features: int, *, rngs: nnx.Rngs):
    self.attention = nnx.MultiHeadAttention(num_heads, features, decode=False, rngs=rngs)
    self.attention_norm = nnx.LayerNorm(features, rngs=rngs)
    self.mlp_in = nnx.Linear(features, mlp_features, rngs=rngs)
    self.mlp_out = nnx.Linear(mlp_features, features, rngs=rngs)
    self.mlp_norm = nnx.LayerNorm(features, rngs=rngs)

  def __call__(self, x: jax.Array, attention_mask: jax.Array) -> jax.Array:
    x = self.attention_norm(x + self.attention(x, mask=attention_mask))
    return self.mlp_norm(x + self.mlp_out(nnx.relu(self.mlp_in(x))))


class UniversalTransformer(nnx.Module):
  """Token embedding, a shared block over depth, and a per-token classifier.

  Args:
    vocab_size: number of input tokens.
    num_classes: number of output classes per token.
    features: the state size.
    num_heads: attention heads.
    mlp_features: hidden size of the block's MLP.
    max_steps: ACT's depth cap ``M``.
    fixed_depth: if given, no ACT: the block is applied exactly this many
      times.
    attention_window: if given, a position attends only to positions at most
      this far away, so information moves at most this far per step.
    rngs: parameter initialisation.
  """

  def __init__(self, *, vocab_size: int, num_classes: int, features: int, num_heads: int,
               mlp_features: int, max_steps: int, fixed_depth: int | None = None,
               attention_window: int | None = None, rngs: nnx.Rngs):
    self.fixed_depth = fixed_depth
    self.attention_window = attention_window
    self.embed = nnx.Embed(vocab_size, features, rngs=rngs)
    block = TransformerBlock(features, num_heads, mlp_features, rngs=rngs)
    if fixed_depth is None:
      self.adaptive_depth = depth.DepthACT(
          block, features, max_steps=max_steps,
          step_encoding=depth.add_position_and_depth_signal, rngs=rngs)
    else:
      self.block = block
    self.classifier = nnx.Linear(features, num_classes, rngs=rngs)

  def __call__(self, tokens: jax.Array, valid: jax.Array
               ) -> tuple[jax.Array, act_jax.PonderStats | None]:
    """Per-token logits ``[batch, length, num_classes]`` and ponder statistics.

    Args:
      tokens: int ``[batch, length]``.
      valid: bool ``[batch, length]``; padding is neither attended to nor
        computed by ACT.

    Returns:
      The logits and, with ACT, the per-position :class:`act_jax.PonderStats`
      (None at fixed depth).
    """
    x = self.embed(tokens)
    attention_mask = nnx.make_attention_mask(valid, valid, dtype=jnp.bool_)
    if self.attention_window is not None:
      positions = jnp.arange(tokens.shape[-1])
      attention_mask &= jnp.abs(positions[:, None] - positions) <= self.attention_window
    if self.fixed_depth is None:
      result = self.adaptive_depth(x, attention_mask, mask=valid)
      return self.classifier(result.state), result.stats
    for step_index in range(self.fixed_depth):
      x = self.block(depth.add_position_and_depth_signal(x, jnp.int32(step_index)),
                     attention_mask)
    return self.classifier(x), None
