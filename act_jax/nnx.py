"""ACT around a Flax NNX recurrent cell (Graves 2016, section 2).

Example::

  cell = nnx.LSTMCell(in_features + 1, 128, rngs=rngs)  # + 1: first-step flag
  act = AdaptiveComputationTime(cell, out_features=10, rngs=rngs)
  result = act.ponder_sequence(x)  # x: [batch, time, in_features]
  loss = task_loss(result.outputs) + act_jax.ponder_penalty(
      result.stats.ponder_cost, tau)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from act_jax import cells
from act_jax import ponder_loop
from act_jax import pondernet
from act_jax import sequence as sequence_lib


def apply_merged(graphdef: nnx.GraphDef, state: nnx.State, *args: Any) -> Any:
  """Calls the module ``nnx.merge(graphdef, state)`` on ``args``: an NNX module
  as a pure function of its split state, for the functional core."""
  return nnx.merge(graphdef, state)(*args)


def zero_carry(cell: nnx.Module, batch_shape: tuple[int, ...]) -> Any:
  """An all-zero carry of an NNX recurrent cell for ``batch_shape``."""
  shapes = jax.eval_shape(lambda: cell.initialize_carry(
      tuple(batch_shape) + (cell.in_features,), rngs=nnx.Rngs(0)))
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


class AdaptiveComputationTime(nnx.Module):
  """An NNX recurrent cell that ponders: ``(carry, x) -> (carry, (y, stats))``.

  Owns the wrapped cell, the halting unit (a sigmoid unit on the full state,
  bias initialised to ``halting_bias_init``, +1 in the paper) and an optional
  linear output layer, and calls the functional core :func:`act_jax.ponder`.
  The cell must be a pure function of its parameters (no mutable state such
  as batch statistics) and take ``in_features + 1`` inputs: the last one is
  the first-step flag. With ``independent_examples=True`` (a one-axis batch;
  every Flax recurrent cell treats examples independently) the ponder loop
  compacts the batch as examples halt; see :func:`act_jax.ponder`.
  ``halting_rule="pondernet"`` halts by PonderNet's rule (``halting=`` of
  :func:`act_jax.ponder`); with ``step_loss`` and ``targets`` the calls also
  return PonderNet's expected loss ``sum_n p_n L(y_n)``, the output layer then
  applied inside the loop to each step's output.

  Args:
    cell: an NNX recurrent cell (``SimpleCell``, ``LSTMCell``,
      ``OptimizedLSTMCell``, ``GRUCell`` or any module with ``in_features``,
      ``hidden_features``, ``initialize_carry`` and ``(carry, x) -> (carry,
      out)``) built with ``in_features`` = input features + 1.
    out_features: the size of a linear output layer on the mean-field cell
      output (Eq. 9); None returns the mean-field cell output itself.
    max_steps: the cap ``M`` on ponder steps per input step (Eq. 13).
    epsilon: the halting threshold slack (Eq. 7): an example halts once its
      cumulative halting probability reaches ``1 - epsilon``.
    halting_bias_init: the halting unit's initial bias; +1 (the paper's)
      makes an untrained network take about 2 steps.
    halting_reads: maps the cell's carry to the features the halting unit
      reads (Eq. 5); by default the whole state (``[c; h]`` for an LSTM).
    backend: ``"while"`` (early exit, custom VJP, reverse mode only) or
      ``"scan"`` (always ``max_steps`` steps, plain autodiff, forward mode
      and higher order too); see :func:`act_jax.ponder`.
    chunk_steps: ``"while"`` only: ponder steps whose residuals the forward
      pass records; later ones are recomputed from checkpoints (memory against
      one extra forward evaluation per later step).
    independent_examples: compact the batch as examples halt (``"while"``
      only; the same values and gradients): pays for about ``sum_i N_i`` steps
      instead of ``B * max_i N_i``.
    dtype: the computation dtype of the halting unit and the output layer
      (None: from their inputs and parameters), as for ``nnx.Linear``.
    param_dtype: the dtype of their parameters (float32; float64 for a
      float64 model).
    halting_rule: ``"act"`` (Graves' halting, the default) or ``"pondernet"``
      (Banino et al.'s); see ``halting=`` of :func:`act_jax.ponder`.
    rngs: the random streams that initialise the halting unit and the output
      layer.

  Attributes:
    cell: the wrapped NNX cell.
    halting: the halting unit's ``nnx.Linear(state_features, 1)``.
    output: ``nnx.Linear(hidden_features, out_features)`` or None (then the
      mean-field cell output is returned).
  """

  def __init__(
      self,
      cell: nnx.Module,
      *,
      out_features: int | None = None,
      max_steps: int = 100,
      epsilon: float = 0.01,
      halting_bias_init: float = 1.0,
      halting_reads: Callable[[Any], jax.Array] = cells.full_state,
      backend: ponder_loop.Backend = "while",
      chunk_steps: int = ponder_loop.DEFAULT_CHUNK_STEPS,
      independent_examples: bool = False,
      dtype: jnp.dtype | None = None,
      param_dtype: jnp.dtype = jnp.float32,
      halting_rule: ponder_loop.HaltingRule = "act",
      rngs: nnx.Rngs,
  ):
    ponder_loop.check_ponder_config(max_steps, epsilon, backend, independent_examples)
    pondernet.check_halting_rule(halting_rule)
    cell_in = getattr(cell, "in_features", None)
    if not isinstance(cell_in, int) or cell_in < 2:
      raise ValueError(
          "cell must have in_features = input features + 1 (the first-step flag) >= 2, "
          f"got {cell_in!r}")
    if out_features is not None and (not isinstance(out_features, int) or out_features < 1):
      raise ValueError(f"out_features must be a positive int or None, got {out_features!r}")
    self.cell = cell
    self.in_features = cell_in - 1
    self.max_steps = max_steps
    self.epsilon = epsilon
    self.backend = backend
    self.chunk_steps = chunk_steps
    self.independent_examples = independent_examples
    self.halting_rule = halting_rule
    self.halting_reads = halting_reads
    halting_in = jax.eval_shape(halting_reads, zero_carry(cell, (1,))).shape[-1]
    self.halting = nnx.Linear(
        halting_in, 1, bias_init=nnx.initializers.constant(halting_bias_init), dtype=dtype,
        param_dtype=param_dtype, rngs=rngs)
    self.output = (None if out_features is None else
                   nnx.Linear(cell.hidden_features, out_features, dtype=dtype,
                              param_dtype=param_dtype, rngs=rngs))

  def initialize_carry(self, batch_shape: tuple[int, ...]) -> Any:
    """The zero state ``s_0`` for a batch (the paper resets the state to 0)."""
    return zero_carry(self.cell, batch_shape)

  def _step_fn_and_params(self):
    cell_def, cell_params = nnx.split(self.cell)
    halting_def, halting_params = nnx.split(self.halting)
    step_fn = cells.cell_step_fn(functools.partial(apply_merged, cell_def),
                                 functools.partial(apply_merged, halting_def),
                                 self.halting_reads)
    return step_fn, (cell_params, halting_params)

  def _project(self, mean_cell_output: jax.Array) -> jax.Array:
    return mean_cell_output if self.output is None else self.output(mean_cell_output)

  def _loop_args(self, inputs: Any, targets: Any, step_loss: pondernet.StepLoss | None):
    """The step function, its params and inputs, and what maps the loop's output to
    the result's: the mean field projected after the loop, or, with ``step_loss``,
    ``(y, sum_n p_n L(y_n))`` with the output layer applied per step."""
    step_fn, params = self._step_fn_and_params()
    output_def, output_params = (None, None) if self.output is None else nnx.split(self.output)
    with_loss = cells.step_loss_args(
        step_fn, params, inputs, targets, step_loss,
        None if output_def is None else functools.partial(apply_merged, output_def),
        output_params)
    if with_loss is None:
      return step_fn, params, inputs, self._project
    return (*with_loss, unchanged)

  def _check_features(self, inputs: jax.Array) -> None:
    """ValueError unless the last axis of ``inputs`` is the cell's input size minus the flag."""
    features = inputs.shape[-1] if inputs.ndim else None
    if features != self.in_features:
      raise ValueError(
          f"inputs have {features} features, but the cell reads {self.in_features + 1} = "
          f"{self.in_features} input features + 1 first-step flag; for {features} input "
          f"features build the cell with in_features={features} + 1")

  def __call__(self, carry: Any, inputs: jax.Array, *, mask: jax.Array | None = None,
               targets: Any = None, step_loss: pondernet.StepLoss | None = None,
               halting_steps: jax.Array | None = None):
    """One input step: ``(s_{t-1}, x_t) -> (s_t, (y_t, stats))``.

    Args:
      carry: ``s_{t-1}``, the cell's carry for the batch.
      inputs: ``x_t``, ``[*batch, in_features]`` (without the flag).
      mask: optional bool ``batch_shape``; False skips an example.
      targets: with ``step_loss``: what it compares each step's output with.
      step_loss: optional ``step_loss(y_n, targets) -> batch_shape`` loss; see
        :func:`act_jax.pondernet.with_step_loss`.
      halting_steps: optional int ``batch_shape``, for evaluation: halt exactly
        at these steps (:func:`act_jax.pondernet.at_halting_step`), so ``s_t``
        and ``y_t`` are the state and output of that step, not a mean field.
        Not with ``step_loss``.

    Returns:
      ``(s_t, (y_t, stats))`` with ``stats`` an :class:`act_jax.PonderStats`;
      with ``step_loss``, ``y_t`` is ``(y_t, sum_n p_n L(y_n))``; with
      ``halting_steps``, ``stats.steps`` is ``halting_steps`` (0 where masked)
      and ``stats.halting_probs`` one-hot.
    """
    self._check_features(inputs)
    if halting_steps is not None and step_loss is not None:
      raise ValueError("halting_steps and step_loss do not go together")
    step_fn, params, inputs, finish = self._loop_args(inputs, targets, step_loss)
    rule, flag_only = self.halting_rule, True
    if halting_steps is not None:  # the step reads its index to halt there
      step_fn, inputs = pondernet.at_halting_step(step_fn), (inputs, halting_steps)
      rule, flag_only = "act", False
    result = ponder_loop.ponder(step_fn, params, carry, inputs, max_steps=self.max_steps,
                               epsilon=self.epsilon, mask=mask, backend=self.backend,
                               chunk_steps=self.chunk_steps,
                               independent_examples=self.independent_examples,
                               first_step_flag_only=flag_only, halting=rule)
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

    Args:
      inputs: ``[batch, time, in_features]`` (without the flag).
      initial_carry: ``s_0``; None: :meth:`initialize_carry`'s zeros.
      mask: optional bool ``[batch, time]``; False skips the step.
      lengths: optional int ``[batch]``, the valid leading steps (instead
        of ``mask``).
      remat: recompute in the backward pass instead of keeping (memory
        against time); see :func:`act_jax.ponder_sequence`.
      targets: with ``step_loss``, the targets ``[batch, time, ...]`` that
        PonderNet's per-step loss reads.
      step_loss: ``(y_n, targets) -> per-example loss``; see :meth:`__call__`.

    Returns:
      See :func:`act_jax.ponder_sequence`; ``outputs`` are the output layer's
      (with ``step_loss`` and ``targets``, leaves ``[batch, time, ...]``:
      ``(y_t, sum_n p_n L(y_n))``, see :meth:`__call__`).
    """
    if inputs.ndim < 3:
      raise ValueError(
          f"inputs must be [batch, time, {self.in_features}], got {list(inputs.shape)}")
    self._check_features(inputs)
    if initial_carry is None:
      initial_carry = self.initialize_carry(inputs.shape[:1])
    step_fn, params, inputs, finish = self._loop_args(inputs, targets, step_loss)
    result = sequence_lib.ponder_sequence(
        step_fn, params, initial_carry, inputs, max_steps=self.max_steps,
        epsilon=self.epsilon, mask=mask, lengths=lengths, backend=self.backend,
        chunk_steps=self.chunk_steps, independent_examples=self.independent_examples,
        first_step_flag_only=True, remat=remat, halting=self.halting_rule)
    return result._replace(outputs=finish(result.outputs))


def unchanged(outputs: Any) -> Any:
  """The loop's output as the result's (it is already the output layer's)."""
  return outputs
