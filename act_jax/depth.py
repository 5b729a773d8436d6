"""ACT over depth: one block applied up to ``M`` times, halting per position.

Graves (2016) ponders a recurrent cell on each input step. Universal
Transformers (Dehghani et al. 2019, section 2.2; docs/equations.md section 13) apply the
same mechanism over *depth*: one shared block ``f`` (a Transformer layer, an
MLP, a convolution) refines a state, ``s^n = f(s^{n-1} + e^n)`` for
``n = 1, 2, ...``, and every position (token, pixel: any set of leading axes)
halts on its own. This module builds that on the functional core
:func:`act_jax.ponder`, so it has the core's exact arithmetic (Eqs. 5-13), its
gradients (Eqs. 14-20) and, with the ``"while"`` backend, its cost: forward
and backward run only as many block applications as the slowest position of
the batch takes.

Choices, where the two papers leave room:

* The halting unit reads the state after the update,
  ``h^n = sigmoid(W_h s^n + b_h)`` (Graves Eq. 5; docs/equations.md section 12 item 1). The
  tensor2tensor UT reads the state before it.
* The block sees every position at every step. A halted position's state is
  frozen at ``s^{N}`` and stays visible to the positions still running (UT:
  "its state is copied forward"); gradients flow through the frozen state.
* The result is the mean field ``sum_n p^n s^n`` (Eq. 9), which UT uses as the
  encoder output; the ponder cost is ``N + R`` per position (Eq. 10).
* The block's input is ``s^{n-1} + e^n`` with an optional step encoding
  ``e^n`` (UT Eq. 1: the sinusoidal position plus depth signals, added at every
  step). It replaces Graves' first-step flag, which marks new input, not depth.
* Positions where ``mask`` is False (padding) are not computed: ``N = R = 0``
  and their state passes through. The block is still applied to the whole
  array, so it must keep other positions from reading them (an attention mask
  among ``block_args``).

Example (NNX)::

  layers = DepthACT(block, features=64, max_steps=8,
                    step_encoding=add_position_and_depth_signal, rngs=rngs)
  result = layers(x, attention_mask, mask=valid)  # x: [batch, length, 64]
  loss = task_loss(result.state) + act_jax.ponder_penalty(result.stats.ponder_cost, tau)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from act_jax import cells
from act_jax import ponder_loop
from act_jax.nnx import apply_merged

PyTree = ponder_loop.PyTree
BlockApply = Callable[..., jax.Array]
"""``apply_block(block_params, x, *block_args) -> x``, shape and dtype kept."""
StepEncoding = Callable[[jax.Array, jax.Array], jax.Array]
"""``step_encoding(state, step_index) -> block input`` (``step_index = n - 1``)."""


def timing_signal(positions: jax.typing.ArrayLike, features: int) -> jax.Array:
  """The sinusoidal signal of Vaswani et al. (2017, section 3.5), float32.

  Feature ``2j`` is ``sin(pos / 10000^(2j / features))`` and feature ``2j + 1``
  the matching cosine.

  Args:
    positions: integer positions of any shape.
    features: the signal's size.

  Returns:
    ``positions.shape + (features,)``.
  """
  frequencies = 10000.0 ** (-2.0 * jnp.arange((features + 1) // 2) / features)
  angles = jnp.asarray(positions, jnp.float32)[..., None] * frequencies
  signal = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  return signal.reshape(signal.shape[:-2] + (-1,))[..., :features]


def add_depth_signal(x: jax.Array, step_index: jax.Array) -> jax.Array:
  """``x + timing_signal(n)`` at every position, ``n = step_index + 1``.

  A step encoding for any layout of positions (sequences, images).
  """
  return x + timing_signal(step_index + 1, x.shape[-1]).astype(x.dtype)


def add_position_and_depth_signal(x: jax.Array, step_index: jax.Array) -> jax.Array:
  """The Universal Transformer's coordinate embedding (UT Eq. 1).

  ``x[..., i, :] + timing_signal(i) + timing_signal(n)``, for states
  ``[..., length, features]``: the position ``i`` is the index along axis -2.
  """
  position = timing_signal(jnp.arange(x.shape[-2]), x.shape[-1]).astype(x.dtype)
  return add_depth_signal(x + position, step_index)


def _check_state(state: Any) -> None:
  shape, dtype = jnp.shape(state), jnp.result_type(state)
  if len(shape) < 2 or not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"state must be a floating array [*positions, features], got {dtype}{list(shape)}")


def _check_features(x: jax.Array, features: int) -> None:
  if jnp.ndim(x) < 2 or jnp.shape(x)[-1] != features:
    raise ValueError(
        f"x must be [*positions, {features}] (features = {features}), got {list(jnp.shape(x))}")


def reject_independent_examples(independent_examples: Any) -> None:
  """Raises ``ValueError`` unless ``independent_examples`` is False.

  A depth block mixes positions (attention), so compacting the halted ones
  away (``act_jax.ponder(..., independent_examples=True)``) would change what
  the running positions see and give wrong results.
  """
  if independent_examples is not False:
    raise ValueError(
        "ACT over depth cannot use independent_examples="
        f"{independent_examples!r}: its block mixes positions (attention), so the "
        "ponder loop must not compact halted positions away")


def ponder_depth(
    apply_block: BlockApply,
    apply_halting: cells.HaltingApply,
    params: tuple[PyTree, PyTree],
    state: jax.Array,
    block_args: tuple[Any, ...] = (),
    *,
    max_steps: int,
    epsilon: float = 0.01,
    mask: jax.typing.ArrayLike | None = None,
    step_encoding: StepEncoding | None = None,
    backend: ponder_loop.Backend = "while",
    chunk_steps: int = ponder_loop.DEFAULT_CHUNK_STEPS,
    independent_examples: bool = False,
) -> ponder_loop.PonderResult:
  """Applies a block up to ``max_steps`` times with ACT halting per position.

  Step ``n``: ``s^n = apply_block(block_params, encode(s^{n-1}, n - 1),
  *block_args)`` and ``h^n = sigmoid(apply_halting(halting_params, s^n))``
  (Eq. 5), with ``s^0 = state``; then :func:`act_jax.ponder`'s halting rule
  and mean field (Eqs. 6-13), position by position.

  Args:
    apply_block: ``apply_block(block_params, x, *block_args) -> x``, a pure
      function keeping ``x``'s shape and dtype. It may mix positions.
    apply_halting: ``apply_halting(halting_params, s) -> [*positions, 1]``
      halting logits, e.g. a linear layer ``features -> 1``.
    params: ``(block_params, halting_params)``, differentiated.
    state: ``s^0``, ``[*positions, features]``; the halting logits' shape
      ``[*positions]`` is the batch shape of the core (e.g. ``[batch, length]``).
    block_args: passed to every block application (e.g. an attention mask, or
      a memory to attend to, which is differentiated if floating point).
    max_steps: the cap ``M`` on the depth (Eq. 13).
    epsilon: the threshold slack (Eq. 7).
    mask: optional bool ``[*positions]``; False positions are not computed.
    step_encoding: optional ``(s, step_index) -> block input``, e.g.
      :func:`add_position_and_depth_signal`; None feeds ``s`` unchanged.
    backend: ``"while"`` (stops when every position has halted; custom VJP
      over the steps taken) or ``"scan"`` (always ``M`` steps, plain autodiff).
    chunk_steps: see :func:`act_jax.ponder`.
    independent_examples: must be False: the block mixes positions, so the
      ponder loop must not compact them (see :func:`act_jax.ponder`).

  Returns:
    A :class:`act_jax.PonderResult`: ``state`` is the mean-field state
    ``[*positions, features]``, ``output`` is ``()``, and ``stats`` holds
    ``N`` and ``R`` ``[*positions]`` and ``p`` ``[*positions, M]``.

  Raises:
    ValueError: naming the value, if a setting or shape is invalid.
  """
  reject_independent_examples(independent_examples)
  _check_state(state)

  def step_fn(params, state, block_args, step_index) -> ponder_loop.PonderStep:
    block_params, halting_params = params
    block_input = state if step_encoding is None else step_encoding(state, step_index)
    state = apply_block(block_params, block_input, *block_args)
    logits = apply_halting(halting_params, state)
    if jnp.shape(logits) != state.shape[:-1] + (1,):
      raise ValueError(f"apply_halting must return [*positions, 1] = "
                       f"{list(state.shape[:-1] + (1,))}, got {list(jnp.shape(logits))}")
    return ponder_loop.PonderStep(state, (), logits[..., 0])

  return ponder_loop.ponder(step_fn, params, state, tuple(block_args), max_steps=max_steps,
                            epsilon=epsilon, mask=mask, backend=backend,
                            chunk_steps=chunk_steps)


class DepthACT(nnx.Module):
  """ACT over depth around an NNX block (Universal Transformer style).

  Owns the block and the halting unit ``nnx.Linear(features, 1)`` (bias
  initialised to ``halting_bias_init``, +1 in both papers) and calls
  :func:`ponder_depth`, the block entering as split NNX state. The block is
  called as ``block(x, *block_args)``, must keep ``x``'s shape and dtype, and
  must be a pure function of its variables (no dropout RNG or batch
  statistics updated inside).

  Args:
    block: the shared NNX block ``f``, called as ``block(x, *block_args)``.
    features: the size of the state's last axis (the halting unit's input).
    max_steps: the cap ``M`` on the depth (Eq. 13).
    epsilon: the halting threshold slack (Eq. 7).
    halting_bias_init: the halting unit's initial bias (+1 in both papers).
    step_encoding: optional ``(s, step_index) -> block input`` added at every
      step, e.g. :func:`add_position_and_depth_signal`; None feeds ``s``.
    backend: ``"while"`` (stops when every position has halted; custom VJP,
      reverse mode only) or ``"scan"`` (always ``M`` steps, plain autodiff).
    chunk_steps: ``"while"`` only: steps recorded for the backward pass; see
      :func:`act_jax.ponder`.
    independent_examples: must be False (the block mixes positions).
    dtype: the computation dtype of the halting unit (None: from its inputs
      and parameters), as for ``nnx.Linear``.
    param_dtype: the dtype of the halting unit's parameters.
    rngs: the random streams that initialise the halting unit.

  Attributes:
    block: the shared block.
    halting: the halting unit.
  """

  def __init__(
      self,
      block: nnx.Module,
      features: int,
      *,
      max_steps: int,
      epsilon: float = 0.01,
      halting_bias_init: float = 1.0,
      step_encoding: StepEncoding | None = None,
      backend: ponder_loop.Backend = "while",
      chunk_steps: int = ponder_loop.DEFAULT_CHUNK_STEPS,
      independent_examples: bool = False,
      dtype: jnp.dtype | None = None,
      param_dtype: jnp.dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    ponder_loop.check_ponder_config(max_steps, epsilon, backend)
    reject_independent_examples(independent_examples)
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
      raise ValueError(f"features must be a positive int, got {features!r}")
    self.block = block
    self.features = features
    self.max_steps = max_steps
    self.epsilon = epsilon
    self.step_encoding = step_encoding
    self.backend = backend
    self.chunk_steps = chunk_steps
    self.halting = nnx.Linear(
        features, 1, bias_init=nnx.initializers.constant(halting_bias_init), dtype=dtype,
        param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *block_args: Any,
               mask: jax.Array | None = None) -> ponder_loop.PonderResult:
    """Ponders over depth.

    Args:
      x: ``s^0``, ``[*positions, features]``.
      *block_args: passed to the block at every step (e.g. an attention mask).
      mask: optional bool ``[*positions]``; False positions are not computed.

    Returns:
      See :func:`ponder_depth`.
    """
    _check_features(x, self.features)
    block_def, block_state = nnx.split(self.block)
    halting_def, halting_state = nnx.split(self.halting)
    return ponder_depth(
        functools.partial(apply_merged, block_def),
        functools.partial(apply_merged, halting_def),
        (block_state, halting_state), x, block_args, max_steps=self.max_steps,
        epsilon=self.epsilon, mask=mask, step_encoding=self.step_encoding,
        backend=self.backend, chunk_steps=self.chunk_steps)


class LinenDepthACT(nn.Module):
  """:class:`DepthACT` for a Linen block: the same numbers on the same weights.

  The halting unit ``halting`` is an ``nn.Dense(1)`` (bias initialised to
  ``halting_bias_init``). Calling the module in ``init`` creates the block's
  and the halting unit's parameters; the block may have no variables other
  than ``params``. Call it as ``module.apply(variables, x, *block_args,
  mask=mask)``.

  Attributes:
    block: the shared Linen block, called as ``block(x, *block_args)``.
    max_steps: the cap ``M`` on the depth (Eq. 13).
    epsilon: the halting threshold slack (Eq. 7).
    halting_bias_init: the halting unit's initial bias (+1 in both papers).
    step_encoding: optional ``(s, step_index) -> block input``; see
      :class:`DepthACT`.
    backend: ``"while"`` or ``"scan"``; see :class:`DepthACT`.
    chunk_steps: ``"while"`` only: steps recorded for the backward pass.
    independent_examples: must be False (the block mixes positions).
    dtype: the computation dtype of the halting unit, as for ``nn.Dense``.
    param_dtype: the dtype of the halting unit's parameters.
  """

  block: nn.Module
  max_steps: int
  epsilon: float = 0.01
  halting_bias_init: float = 1.0
  step_encoding: StepEncoding | None = None
  backend: ponder_loop.Backend = "while"
  chunk_steps: int = ponder_loop.DEFAULT_CHUNK_STEPS
  independent_examples: bool = False  # rejected unless False: blocks mix positions
  dtype: jnp.dtype | None = None
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    ponder_loop.check_ponder_config(self.max_steps, self.epsilon, self.backend)
    reject_independent_examples(self.independent_examples)
    self.halting = nn.Dense(1, bias_init=nn.initializers.constant(self.halting_bias_init),
                            dtype=self.dtype, param_dtype=self.param_dtype)

  def __call__(self, x: jax.Array, *block_args: Any,
               mask: jax.Array | None = None) -> ponder_loop.PonderResult:
    """Ponders over depth; see :meth:`DepthACT.__call__`."""
    _check_state(x)
    if self.is_initializing():  # one step creates the block's and halting unit's params
      encode = self.step_encoding or (lambda s, _: s)
      self.halting(self.block(encode(x, jnp.int32(0)), *block_args))
    _check_features(x, self.halting.variables["params"]["kernel"].shape[0])
    block_def = self.block.clone(parent=None)
    halting_def = self.halting.clone(parent=None)
    return ponder_depth(
        lambda p, s, *args: block_def.apply({"params": p}, s, *args),
        lambda p, s: halting_def.apply({"params": p}, s),
        (self.block.variables["params"], self.halting.variables["params"]), x, block_args,
        max_steps=self.max_steps, epsilon=self.epsilon, mask=mask,
        step_encoding=self.step_encoding, backend=self.backend,
        chunk_steps=self.chunk_steps)
