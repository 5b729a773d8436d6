"""ACT over a whole input sequence: an outer scan over time, a ponder loop per step.

The state carried from input step ``t`` to ``t + 1`` is the mean-field state of
Eq. 9. With the ``"while"`` backend a sequence of several input steps is
differentiated as a whole (:mod:`act_jax.backends.while_sequence`): an input
step where every example halts at ponder step 1 costs a plain RNN step, ponder
steps 2, 3, ... are re-run, recording, only in the backward pass of the input
steps that took them, and, without ``remat``, what every ponder step computes
from its input alone (the cell's input projection) is computed once for the
whole sequence, before it. Otherwise (the ``"scan"`` backend, one input step,
or compaction of a step function that closes over traced values) each input
step is one :func:`act_jax.ponder` call, rematerialised with ``jax.checkpoint``
under ``remat``. With ``remat`` the forward pass keeps ``O(T * state)``, and
either way the backward pass holds one input step's ponder loop at a time, so
memory never grows as ``T * max_steps * state``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from act_jax import ponder_loop
from act_jax.halting import stand_in  # the argument `halting` (the rule) hides the module
from act_jax.backends import while_loop, while_sequence

PyTree = ponder_loop.PyTree


class SequenceResult(NamedTuple):
  """ACT outputs and statistics for every input step, batch-major.

  Attributes:
    outputs: mean-field outputs ``y_t`` (Eq. 9), leaves ``[batch, time, ...]``;
      zero at masked steps.
    final_state: the mean-field state after the last unmasked step of each
      sequence.
    stats: ``N(t)`` and ``R(t)`` as ``[batch, time]`` (0 at masked steps) and
      ``p_t^n`` as ``[batch, time, max_steps]``.
  """

  outputs: PyTree
  final_state: PyTree
  stats: ponder_loop.PonderStats


def lengths_to_mask(lengths: jax.typing.ArrayLike, max_length: int) -> jax.Array:
  """``mask[b, t] = t < lengths[b]``, bool ``[batch, max_length]``."""
  lengths = jnp.asarray(lengths)
  return jnp.arange(max_length)[None, :] < lengths[:, None]


def ponder_sequence(
    step_fn: ponder_loop.StepFn,
    params: PyTree,
    initial_state: PyTree,
    inputs: PyTree,
    *,
    max_steps: int,
    epsilon: float = 0.01,
    mask: jax.typing.ArrayLike | None = None,
    lengths: jax.typing.ArrayLike | None = None,
    backend: ponder_loop.Backend = "while",
    chunk_steps: int = ponder_loop.DEFAULT_CHUNK_STEPS,
    independent_examples: bool = False,
    first_step_flag_only: bool = False,
    remat: bool = True,
    halting: ponder_loop.HaltingRule = "act",
) -> SequenceResult:
  """Runs ACT over a batch of input sequences (Graves 2016, Eqs. 3-13 per step).

  Args:
    step_fn: as for :func:`act_jax.ponder`; called with the inputs of one
      time step.
    params: a pytree of parameters shared by all steps.
    initial_state: ``s_0``, leaves ``[batch, ...]``.
    inputs: a pytree whose leaves are ``[batch, time, ...]``.
    max_steps: the cap ``M`` (Eq. 13).
    epsilon: the threshold slack (Eq. 7).
    mask: optional bool ``[batch, time]``: steps where it is False are skipped
      (state carried unchanged, zero output and statistics); the step
      function sees a stand-in for their inputs (an unskipped step's), so a
      NaN or inf in padding reaches no gradient.
    lengths: optional int ``[batch]``, the number of valid leading steps of each
      sequence; an alternative to ``mask`` (give at most one).
    backend: the ponder-loop backend, ``"while"`` or ``"scan"``.
    chunk_steps: see :func:`act_jax.ponder`.
    independent_examples: see :func:`act_jax.ponder`: the step function treats
      examples independently, so the ``"while"`` loop compacts the batch as
      examples halt.
    first_step_flag_only: see :func:`act_jax.ponder`: the step function reads
      its step index only as the first-step flag, so the ``"while"`` loop
      computes what depends on the inputs alone once per input step.
    remat: with the ``"while"`` backend over several input steps, recompute
      each input step's first ponder step in the backward pass instead of
      keeping its residuals (``O(T * state)`` instead of a plain RNN's
      ``O(T * first-step residuals)``; without it the backward pass runs no
      forward step again, which on the CPU made an LM at N = 1 cost 0.94x
      instead of 1.34x a plain LSTM's training step, and the input
      projections of every input step are computed before the scan and kept,
      ``O(T * input projection)`` more, so that ponder step 2 costs the cell's
      recurrent part only); otherwise rematerialise each input step's whole
      ponder loop. The default saves memory; turn it off where a plain RNN's
      memory fits.
    halting: the halting rule, ``"act"`` or ``"pondernet"`` (see
      :func:`act_jax.ponder`); the state handed to the next input step is the
      ``p``-weighted sum of the states under either. PonderNet runs one
      :func:`act_jax.ponder` per input step (its weights depend on the halting
      unit even where every example halts at step 1, which the ``"while"``
      backend's whole-sequence VJP treats as ACT's constant ``p^1 = 1``).

  Returns:
    A :class:`SequenceResult`.
  """
  ponder_loop.check_ponder_config(max_steps, epsilon, backend, independent_examples)
  leaves = jax.tree.leaves(inputs)
  if not leaves:
    raise ValueError("inputs must contain at least one array")
  batch_size, time_steps = jnp.shape(leaves[0])[:2]
  for leaf in leaves:
    if jnp.shape(leaf)[:2] != (batch_size, time_steps):
      raise ValueError(
          f"every input leaf must be [batch, time, ...] = [{batch_size}, {time_steps}, ...], "
          f"got {list(jnp.shape(leaf))}")
  if mask is not None and lengths is not None:
    raise ValueError("give mask or lengths, not both")
  padded = mask is not None or lengths is not None
  if lengths is not None:
    if jnp.shape(lengths) != (batch_size,) or not jnp.issubdtype(jnp.result_type(lengths),
                                                                  jnp.integer):
      raise ValueError(f"lengths must be integer [{batch_size}], got "
                       f"{jnp.result_type(lengths)}{list(jnp.shape(lengths))}")
    mask = lengths_to_mask(lengths, time_steps)
  elif mask is None:
    mask = jnp.ones((batch_size, time_steps), bool)
  mask = jnp.asarray(mask)
  if mask.shape != (batch_size, time_steps) or mask.dtype != jnp.bool_:
    raise ValueError(
        f"mask must be bool [{batch_size}, {time_steps}], got {mask.dtype}{list(mask.shape)}")

  if padded:  # the step function runs on skipped steps too: it sees a stand-in there
    inputs = stand_in(inputs, mask)
  time_major = lambda x: jnp.swapaxes(x, 0, 1)
  inputs, mask = jax.tree.map(time_major, inputs), time_major(mask)
  first_inputs = jax.tree.map(lambda x: x[0], inputs)
  threshold, _ = ponder_loop.checked_step_call(
      step_fn, params, initial_state, first_inputs, mask[0], max_steps=max_steps,
      epsilon=epsilon, backend=backend, chunk_steps=chunk_steps,
      independent_examples=independent_examples, first_step_flag_only=first_step_flag_only,
      halting_rule=halting)
  sequence_vjp = backend == "while" and time_steps > 1 and halting == "act"
  if sequence_vjp:
    step, consts = while_sequence.hoist(step_fn, params, initial_state, first_inputs)
    sequence_vjp = not (independent_examples and consts)
  if sequence_vjp:
    if not remat:  # keeping the whole sequence's input projections is keeping, not recomputing
      step_fn, params, inputs = while_sequence.split_invariants(step_fn, params, initial_state,
                                                                inputs)
      step, consts = while_sequence.hoist(step_fn, params, initial_state,
                                          jax.tree.map(lambda x: x[0], inputs))
    with while_loop.forward_mode_is_one_error():
      final_state, per_step = while_sequence.ponder_sequence(
          step, max_steps, threshold, (params, consts), initial_state, inputs, mask,
          chunk_steps=int(chunk_steps), independent_examples=independent_examples,
          first_step_flag_only=first_step_flag_only, remat=remat)
  else:
    # The scan backend; compaction of a step function with closures; or one
    # input step, where act_jax.ponder's VJP records as it runs forward (the
    # sequence VJP would run ponder steps 2, 3, ... again, backward).
    def one_step(state, xs):
      x_t, mask_t = xs
      result = ponder_loop.ponder(step_fn, params, state, x_t, max_steps=max_steps,
                                 epsilon=epsilon, mask=mask_t, backend=backend,
                                 chunk_steps=chunk_steps,
                                 independent_examples=independent_examples,
                                 first_step_flag_only=first_step_flag_only, halting=halting)
      return result.state, (result.output, result.stats)

    final_state, per_step = jax.lax.scan(jax.checkpoint(one_step) if remat else one_step,
                                         initial_state, (inputs, mask))
  outputs, stats = jax.tree.map(time_major, per_step)
  return SequenceResult(outputs, final_state, stats)
