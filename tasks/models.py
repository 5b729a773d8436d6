"""The paper's task networks: a recurrent cell with ACT, without it, or repeated.

* ``mode="act"``: ACT around the cell (:class:`act_jax.nnx.AdaptiveComputationTime`).
* ``mode="none"``: one update per input, the paper's baseline; the cell reads
  the same input width, the first-step flag always 1 (docs/equations.md section 12 item 3).
* ``mode="repeat"``: a fixed number of updates per input, flag on the first:
  the "Repeat-RNN" baseline of Fojo et al. 2018 (docs/results.md section 1).

All three return per-step logits and :class:`act_jax.PonderStats`, so the
training loop treats them alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

import act_jax
from act_jax import pondernet
from act_jax.nnx import AdaptiveComputationTime, zero_carry
from act_jax.ponder_loop import DEFAULT_CHUNK_STEPS

CELLS = {"tanh": nnx.SimpleCell, "lstm": nnx.LSTMCell, "gru": nnx.GRUCell}
MODES = ("act", "none", "repeat")
# "flax": Flax's initialisers (cell: LeCun-normal input kernel, orthogonal recurrent
# kernel; linear layers: LeCun normal). "tf_glorot": what TensorFlow 1 gives the
# parity networks of the published TF implementations (Fojo et al.'s): Glorot uniform
# over the tanh cell's concatenated [x; h] kernel, and over every linear layer's kernel
# and bias as ``tf.get_variable``'s default (the halting bias keeps halting_bias).
WEIGHT_INITS = ("flax", "tf_glorot")


class ModelOutput(NamedTuple):
  """Per-step logits ``[batch, time, outputs]`` and the ponder statistics; with a
  per-step loss (PonderNet), ``expected_loss`` ``[batch, time]``: ``sum_n p_n L(y_n)``."""

  logits: jax.Array
  stats: act_jax.PonderStats
  expected_loss: jax.Array | None = None


class HaltingStepOutput(NamedTuple):
  """A PonderNet network halted at chosen steps (:meth:`TaskModel.at_halting_steps`).

  Attributes:
    logits: the logits of each input step's halting step, ``[batch, time, outputs]``.
    halting_steps: the chosen steps ``[batch, time]``, int32 (a rule's choice at masked
      input steps: :mod:`act_jax.pondernet`'s rules give 0).
    stats: PonderNet's statistics of each input step (``p`` from the state the
      network reached by halting at the earlier chosen steps), ``[batch, time]``.
  """

  logits: jax.Array
  halting_steps: jax.Array
  stats: act_jax.PonderStats


HaltingChoice = Callable[[act_jax.PonderStats, jax.Array], jax.Array]
"""``choose(stats, t) -> halting steps``: a rule that picks each example's halting step at
input step ``t`` from its PonderNet statistics (e.g. :func:`act_jax.pondernet.sampled_steps`)."""


class TaskModel(nnx.Module):
  """A one-layer recurrent classifier that ponders, or not.

  Args:
    input_size: input features per step, without the first-step flag; integer
      (token) inputs ``[B, T]`` are one-hot encoded to this size.
    hidden_size: the cell's hidden units.
    output_size: logits per step.
    cell: ``"tanh"``, ``"lstm"`` or ``"gru"``.
    mode: ``"act"``, ``"none"`` or ``"repeat"``.
    repeats: updates per input for ``mode="repeat"``.
    max_steps, epsilon, halting_bias, backend: ACT settings (``mode="act"``).
    halting: the halting rule with ``mode="act"``: ``"act"`` or ``"pondernet"``.
    beta, lambda_p: PonderNet's regulariser ``beta * KL(p || geometric(lambda_p))``
      (``halting="pondernet"``), read by the training loss.
    weight_init: one of :data:`WEIGHT_INITS`; ``"tf_glorot"`` needs ``cell="tanh"``.
    independent_examples: compact the ponder loop's batch as examples halt
      (``mode="act"``; every cell here treats examples independently; see
      :func:`act_jax.ponder`). The same results to float tolerance, faster.
    remat: ``mode="act"`` over several input steps: the backward pass recomputes
      each input step's first ponder step instead of keeping its residuals
      (see :func:`act_jax.ponder_sequence`): less memory, one more forward pass.
    chunk_steps: ``mode="act"``: ponder steps recorded per chunk for the backward
      pass (see :func:`act_jax.ponder`).
    rngs: parameter initialisation.
  """

  def __init__(self, *, input_size: int, hidden_size: int, output_size: int, cell: str,
               mode: str, repeats: int, max_steps: int, epsilon: float,
               halting_bias: float, backend: str, independent_examples: bool = True,
               remat: bool = False, chunk_steps: int = DEFAULT_CHUNK_STEPS,
               weight_init: str = "flax", halting: str = "act", beta: float = 0.01,
               lambda_p: float = 0.2, rngs: nnx.Rngs):
    if cell not in CELLS:
      raise ValueError(f"unknown cell {cell!r}; known cells: {sorted(CELLS)}")
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "repeat" and (not isinstance(repeats, int) or repeats < 1):
      raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if weight_init not in WEIGHT_INITS:
      raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")
    if weight_init == "tf_glorot" and cell != "tanh":
      raise ValueError(f"weight_init='tf_glorot' is defined for the tanh cell, got cell={cell!r}")
    self.mode = mode
    self.halting = halting if mode == "act" else "act"
    self.beta, self.lambda_p = beta, lambda_p
    self.input_size = input_size
    self.remat = remat
    self.repeats = {"act": 0, "none": 1, "repeat": repeats}[mode]
    cell_init = {}
    if weight_init == "tf_glorot":  # one [input + flag + hidden, hidden] kernel in TF
      kernel_init = glorot_uniform(input_size + 1 + hidden_size, hidden_size)
      cell_init = {"kernel_init": kernel_init, "recurrent_kernel_init": kernel_init}
    recurrent = CELLS[cell](input_size + 1, hidden_size, rngs=rngs, **cell_init)
    if mode == "act":
      self.act = AdaptiveComputationTime(
          recurrent, out_features=output_size, max_steps=max_steps, epsilon=epsilon,
          halting_bias_init=halting_bias, backend=backend, chunk_steps=chunk_steps,
          independent_examples=independent_examples, halting_rule=halting, rngs=rngs)
    else:
      self.cell = recurrent
      self.output = nnx.Linear(hidden_size, output_size, rngs=rngs)
    if weight_init == "tf_glorot":
      output = self.act.output if mode == "act" else self.output
      _tf_default_init(output, rngs)
      if mode == "act":
        _tf_default_init(self.act.halting, rngs, bias=False)

  def __call__(self, inputs: jax.Array, input_mask: jax.Array, *, targets: Any = None,
               step_loss: pondernet.StepLoss | None = None) -> ModelOutput:
    """Runs the network over ``inputs`` (``[B, T, D]`` or tokens ``[B, T]``) from a zero state.

    With ``step_loss`` and ``targets`` (leaves ``[B, T, ...]``; ``mode="act"``)
    each ponder step's logits are scored inside the loop: ``expected_loss``.
    """
    inputs = self._features(inputs)
    if self.mode == "act":
      # Rematerialising input steps saves memory only across several of them; for one
      # (parity, logic) it would just run the forward pass twice.
      result = self.act.ponder_sequence(inputs, mask=input_mask,
                                        remat=self.remat and inputs.shape[1] > 1,
                                        targets=targets, step_loss=step_loss)
      if step_loss is None:
        return ModelOutput(result.outputs, result.stats)
      logits, expected_loss = result.outputs
      return ModelOutput(logits, result.stats, expected_loss)
    return self._fixed_steps(inputs, input_mask)

  def at_halting_steps(self, inputs: jax.Array, input_mask: jax.Array,
                       choose: HaltingChoice) -> HaltingStepOutput:
    """PonderNet's evaluation: the network halting at steps that ``choose`` picks.

    At each input step ``t`` the network ponders by PonderNet's rule from the
    state it has reached, ``choose(stats, t)`` picks each example's halting step
    ``n`` from ``p``, and the network ponders again halting exactly there
    (:func:`act_jax.pondernet.at_halting_step`): the input step's logits are
    ``y_t^n`` and the state carried on is ``s_t^n``, as for a network that
    halts at ``n``, not the mean field of training.

    Args:
      inputs: ``[B, T, D]`` or tokens ``[B, T]``.
      input_mask: bool ``[B, T]``.
      choose: ``(stats, t) -> int [B]``, e.g. :func:`act_jax.pondernet.most_likely_steps`.

    Raises:
      ValueError: unless the network halts by PonderNet's rule.
    """
    if self.halting != "pondernet":
      raise ValueError(f"at_halting_steps needs halting='pondernet', got {self.halting!r}")
    inputs = self._features(inputs)
    graphdef, state = nnx.split(self.act)

    def one_input(carry, xs):
      x_t, mask_t, t = xs
      act = nnx.merge(graphdef, state)
      _, (_, stats) = act(carry, x_t, mask=mask_t)
      steps = choose(stats, t)
      carry, (logits, _) = act(carry, x_t, mask=mask_t, halting_steps=steps)
      return carry, (logits, steps, stats)

    swap = lambda x: jnp.swapaxes(x, 0, 1)
    time_steps = jnp.arange(inputs.shape[1], dtype=jnp.int32)
    _, outs = jax.lax.scan(one_input, self.act.initialize_carry(inputs.shape[:1]),
                           (swap(inputs), swap(input_mask), time_steps))
    return HaltingStepOutput(*jax.tree.map(swap, outs))

  def _features(self, inputs: jax.Array) -> jax.Array:
    """``inputs`` as features: integer (token) inputs one-hot encoded."""
    if jnp.issubdtype(inputs.dtype, jnp.integer):
      return jax.nn.one_hot(inputs, self.input_size)
    return inputs

  def _fixed_steps(self, inputs: jax.Array, input_mask: jax.Array) -> ModelOutput:
    """``repeats`` cell updates per input step (flag on the first), no halting."""
    graphdef, cell_params = nnx.split(self.cell)
    carry = zero_carry(self.cell, inputs.shape[:1])

    def one_input(carry, xs):
      x_t, mask_t = xs
      cell = nnx.merge(graphdef, cell_params)
      new = carry
      for n in range(self.repeats):
        new, out = cell(new, act_jax.with_first_step_flag(x_t, n))
      keep = lambda a, b: jnp.where(mask_t.reshape(mask_t.shape + (1,) * (a.ndim - 1)), a, b)
      return jax.tree.map(keep, new, carry), jnp.where(mask_t[:, None], out, 0.0)

    swap = lambda x: jnp.swapaxes(x, 0, 1)
    _, outs = jax.lax.scan(one_input, carry, (swap(inputs), swap(input_mask)))
    steps = jnp.where(input_mask, self.repeats, 0).astype(jnp.int32)
    last = jax.nn.one_hot(self.repeats - 1, self.repeats) * input_mask[..., None]
    stats = act_jax.PonderStats(steps, jnp.zeros(steps.shape, jnp.float32), last)
    return ModelOutput(self.output(swap(outs)), stats)


def glorot_uniform(fan_in: int, fan_out: int) -> nnx.Initializer:
  """Uniform in +-sqrt(6 / (fan_in + fan_out)), whatever the shape it fills: a slice of a
  Glorot-initialised matrix that TensorFlow keeps whole (the cell's [x; h] kernel)."""
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -limit,
                                                                  limit)


def _tf_default_init(linear: nnx.Linear, rngs: nnx.Rngs, bias: bool = True) -> None:
  """Re-initialises ``linear`` as ``tf.get_variable``'s default does: Glorot uniform,
  its bias too (a vector of n has fan-in and fan-out n)."""
  fan_in, fan_out = linear.kernel.shape
  linear.kernel[...] = glorot_uniform(fan_in, fan_out)(rngs.params(), (fan_in, fan_out))
  if bias:
    linear.bias[...] = glorot_uniform(fan_out, fan_out)(rngs.params(), (fan_out,))
