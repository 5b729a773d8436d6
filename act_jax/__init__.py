"""act_jax: Adaptive Computation Time (Graves 2016) in JAX.

The functional core needs only JAX:

* :func:`ponder` runs ACT for one input step over a batch, with a
  ``"while"`` backend (early exit, custom VJP over the steps taken) and a
  ``"scan"`` backend (fixed ``max_steps``, plain autodiff);
  ``independent_examples=True`` lets the while loop shrink the batch as
  examples halt.
* :func:`ponder_sequence` runs it over a sequence of input steps.
* :func:`ponder_penalty` is the ``tau * P`` term of the loss.
* ``halting="pondernet"`` on :func:`ponder` and :func:`ponder_sequence`
  selects PonderNet's halting rule (Banino et al. 2021) under the same loops;
  its loss terms and evaluation rules are in :mod:`act_jax.pondernet`.

Flax wrappers live in :mod:`act_jax.nnx` (NNX) and :mod:`act_jax.linen`;
ACT over depth (Universal Transformer style) in :mod:`act_jax.depth`.
"""

from act_jax.losses import check_time_penalty, ponder_penalty
from act_jax.ponder_loop import (
    BACKENDS,
    PonderResult,
    PonderStats,
    PonderStep,
    StepFn,
    check_ponder_config,
    ponder,
    with_first_step_flag,
)
from act_jax.sequence import SequenceResult, lengths_to_mask, ponder_sequence

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "PonderResult",
    "PonderStats",
    "PonderStep",
    "SequenceResult",
    "StepFn",
    "check_ponder_config",
    "check_time_penalty",
    "lengths_to_mask",
    "ponder",
    "ponder_penalty",
    "ponder_sequence",
    "with_first_step_flag",
]
