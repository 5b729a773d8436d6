"""ACT around a Flax Linen recurrent cell: the Linen face of :mod:`act_jax.nnx`.

Given the same weights it computes the same numbers as the NNX module (tested);
both build their step from :func:`act_jax.cells.cell_step_fn`.

Example::

  act = AdaptiveComputationTime(nn.LSTMCell(128), out_features=10)
  variables = act.init(key, x)  # x: [batch, time, in_features]
  result = act.apply(variables, x, method=act.ponder_sequence)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from act_jax import cells
from act_jax import ponder_loop
from act_jax import pondernet
from act_jax import sequence as sequence_lib
from act_jax.nnx import unchanged


class AdaptiveComputationTime(nn.Module):
  """A Linen recurrent cell that ponders: ``(carry, x) -> (carry, (y, stats))``.

  The wrapped ``cell`` sees ``x`` with the first-step flag appended (its input
  size is inferred); the halting unit ``halting`` (bias initialised to
  ``halting_bias_init``) reads ``halting_reads(carry)``; ``output`` is a linear
  layer on the mean-field cell output (absent if ``out_features`` is None).
  Calling the module (or :meth:`ponder_sequence`) in ``init`` creates all
  parameters. The cell must keep no mutable state besides its parameters.
  ``independent_examples=True`` compacts the batch as examples halt (a one-axis
  batch; see :func:`act_jax.ponder`). ``halting_rule`` and the calls'
  ``targets`` and ``step_loss``: see the NNX module.

  Attributes:
    cell: a Linen recurrent cell (``nn.SimpleCell``, ``nn.LSTMCell``,
      ``nn.OptimizedLSTMCell``, ``nn.GRUCell`` or any ``nn.RNNCellBase``).
    out_features: the size of a linear output layer on the mean-field cell
      output (Eq. 9); None returns the mean-field cell output itself.
    max_steps: the cap ``M`` on ponder steps per input step (Eq. 13).
    epsilon: the halting threshold slack (Eq. 7).
    halting_bias_init: the halting unit's initial bias (+1 in the paper).
    halting_reads: maps the carry to the halting unit's input features
      (Eq. 5); by default the whole state.
    backend: ``"while"`` (early exit, custom VJP, reverse mode only) or
      ``"scan"`` (fixed ``max_steps``, plain autodiff).
    chunk_steps: ``"while"`` only: ponder steps recorded for the backward
      pass; see :func:`act_jax.ponder`.
    independent_examples: compact the batch as examples halt (``"while"``
      only; the same values and gradients).
    dtype: the computation dtype of the halting unit and the output layer
      (None: from their inputs and parameters), as for ``nn.Dense``.
    param_dtype: the dtype of their parameters.
    halting_rule: ``"act"`` (Graves) or ``"pondernet"`` (Banino et al.).
  """

  cell: nn.RNNCellBase
  out_features: int | None = None
  max_steps: int = 100
  epsilon: float = 0.01
  halting_bias_init: float = 1.0
  halting_reads: Callable[[Any], jax.Array] = cells.full_state
  backend: ponder_loop.Backend = "while"
  chunk_steps: int = ponder_loop.DEFAULT_CHUNK_STEPS
  independent_examples: bool = False
  dtype: jnp.dtype | None = None
  param_dtype: jnp.dtype = jnp.float32
  halting_rule: ponder_loop.HaltingRule = "act"

  def setup(self):
    ponder_loop.check_ponder_config(self.max_steps, self.epsilon, self.backend,
                                    self.independent_examples)
    pondernet.check_halting_rule(self.halting_rule)
    dense = lambda features, **kw: nn.Dense(features, dtype=self.dtype,
                                            param_dtype=self.param_dtype, **kw)
    self.halting = dense(1, bias_init=nn.initializers.constant(self.halting_bias_init))
    self.output = None if self.out_features is None else dense(self.out_features)

  def _step_fn_and_params(self, carry: Any, inputs: jax.Array):
    if self.is_initializing():  # one step creates the cell's and halting unit's params
      first_carry, first_output = self.cell(carry, ponder_loop.with_first_step_flag(inputs, 0))
      self.halting(self.halting_reads(first_carry))
      if self.output is not None:
        self.output(first_output)
    cell_def = self.cell.clone(parent=None)
    halting_def = self.halting.clone(parent=None)
    step_fn = cells.cell_step_fn(
        lambda p, c, x: cell_def.apply({"params": p}, c, x),
        lambda p, f: halting_def.apply({"params": p}, f),
        self.halting_reads)
    return step_fn, (self.cell.variables["params"], self.halting.variables["params"])

  def _project(self, mean_cell_output: jax.Array) -> jax.Array:
    return mean_cell_output if self.output is None else self.output(mean_cell_output)

  def _loop_args(self, carry: Any, inputs: Any, first_inputs: jax.Array, targets: Any,
                 step_loss: pondernet.StepLoss | None):
    """As the NNX module's; ``first_inputs``: one input step, for ``init``."""
    step_fn, params = self._step_fn_and_params(carry, first_inputs)
    output_def = None if self.output is None else self.output.clone(parent=None)
    with_loss = cells.step_loss_args(
        step_fn, params, inputs, targets, step_loss,
        None if output_def is None else lambda p, y: output_def.apply({"params": p}, y),
        None if output_def is None else self.output.variables["params"])
    if with_loss is None:
      return step_fn, params, inputs, self._project
    return (*with_loss, unchanged)

  def initialize_carry(self, batch_shape: tuple[int, ...], in_features: int) -> Any:
    """The zero state ``s_0`` for a batch (the paper resets the state to 0)."""
    shapes = jax.eval_shape(lambda: self.cell.initialize_carry(
        jax.random.key(0), tuple(batch_shape) + (in_features + 1,)))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

  def __call__(self, carry: Any, inputs: jax.Array, *, mask: jax.Array | None = None,
               targets: Any = None, step_loss: pondernet.StepLoss | None = None):
    """One input step: ``(s_{t-1}, x_t) -> (s_t, (y_t, stats))``; see the NNX module."""
    step_fn, params, loop_inputs, finish = self._loop_args(carry, inputs, inputs, targets,
                                                           step_loss)
    result = ponder_loop.ponder(step_fn, params, carry, loop_inputs,
                                max_steps=self.max_steps, epsilon=self.epsilon, mask=mask,
                                backend=self.backend, chunk_steps=self.chunk_steps,
                                independent_examples=self.independent_examples,
                                first_step_flag_only=True, halting=self.halting_rule)
    return result.state, (finish(result.output), result.stats)

  def ponder_sequence(
      self,
      inputs: jax.Array,
      *,
      initial_carry: Any = None,
      mask: jax.Array | None = None,
      lengths: jax.Array | None = None,
      remat: bool = True,
      targets: Any = None,
      step_loss: pondernet.StepLoss | None = None,
  ) -> sequence_lib.SequenceResult:
    """ACT over ``inputs`` ``[batch, time, in_features]`` from a zero state.

    The arguments and result are those of the NNX module's
    :meth:`act_jax.nnx.AdaptiveComputationTime.ponder_sequence`.
    """
    if inputs.ndim < 3:
      raise ValueError(f"inputs must be [batch, time, features], got {list(inputs.shape)}")
    if initial_carry is None:
      initial_carry = self.initialize_carry(inputs.shape[:1], inputs.shape[-1])
    step_fn, params, loop_inputs, finish = self._loop_args(initial_carry, inputs, inputs[:, 0],
                                                           targets, step_loss)
    result = sequence_lib.ponder_sequence(
        step_fn, params, initial_carry, loop_inputs, max_steps=self.max_steps,
        epsilon=self.epsilon, mask=mask, lengths=lengths, backend=self.backend,
        chunk_steps=self.chunk_steps, independent_examples=self.independent_examples,
        first_step_flag_only=True, remat=remat, halting=self.halting_rule)
    return result._replace(outputs=finish(result.outputs))
