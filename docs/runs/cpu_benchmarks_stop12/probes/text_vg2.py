import sys
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")  # run from the repository root
import jax, numpy as np
import train_loop as tl, timing
import act_jax.nnx as anx
orig = anx.AdaptiveComputationTime.ponder_sequence
state = {"remat": True}
def patched(self, *a, remat=True, **k):
  return orig(self, *a, remat=state["remat"], **k)
anx.AdaptiveComputationTime.ponder_sequence = patched
fns = {}
state["remat"] = True; f, a = tl.bare_value_and_grad(tl._text(80, halting_bias=30.0)); jax.block_until_ready(f(*a)); fns["act_remat"] = (f, a)
state["remat"] = False; f, a = tl.bare_value_and_grad(tl._text(80, halting_bias=30.0)); jax.block_until_ready(f(*a)); fns["act_keep"] = (f, a)
fns["none"] = tl.bare_value_and_grad(tl._text(80, mode="none"))
calls = {k: (lambda f, a: (lambda *_: f(*a)))(*v) for k, v in fns.items()}
for r in range(3):
  res = timing.median_seconds(calls, (), 15)
  print({k: round(v*1e3, 1) for k, v in res.items()}, "remat/none", round(res["act_remat"]/res["none"], 3), "keep/none", round(res["act_keep"]/res["none"], 3), flush=True)
