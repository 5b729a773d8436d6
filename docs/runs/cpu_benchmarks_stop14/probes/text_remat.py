"""Probe: the LM's training-loop step, ACT at N = 1 with and without remat, against no ACT.

Runs benchmarks/train_loop.py's text loop (LSTM 256, batch 16, 100-byte windows,
frozen weights) with ``AdaptiveComputationTime.ponder_sequence``'s ``remat``
forced to True or False, and the no-ACT LM, interleaved round by round.
"""
import functools
import statistics
import sys

sys.path.insert(0, "benchmarks")
import train_loop  # noqa: E402
from act_jax import nnx as act_nnx  # noqa: E402

original = act_nnx.AdaptiveComputationTime.ponder_sequence
samples = {"act_remat": [], "act_no_remat": [], "none": []}
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
  for name in samples:
    if name != "none":
      remat = name == "act_remat"
      act_nnx.AdaptiveComputationTime.ponder_sequence = functools.partialmethod(
          lambda self, *a, remat_value, **k: original(self, *a, **{**k, "remat": remat_value}),
          remat_value=remat)
      config = train_loop._text(80, halting_bias=30.0)
    else:
      config = train_loop._text(80, mode="none")
    samples[name].append(train_loop.loop_seconds_per_step(config)[0])
  print({k: [round(1e3 * v, 1) for v in s] for k, s in samples.items()}, flush=True)
for a in ("act_remat", "act_no_remat"):
  print(a, "/ none:", [round(x / y, 3) for x, y in zip(samples[a], samples["none"])],
        "median", round(statistics.median(x / y for x, y in zip(samples[a], samples["none"])), 3))
