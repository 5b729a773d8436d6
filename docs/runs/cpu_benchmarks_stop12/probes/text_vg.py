import sys, time, os
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")
import jax, numpy as np
import train_loop as tl
import act_jax.nnx as anx
orig = anx.AdaptiveComputationTime.ponder_sequence
def patched(self, *a, remat=True, **k):
  return orig(self, *a, remat=REMAT, **k)
anx.AdaptiveComputationTime.ponder_sequence = patched
fns = {}
for name, over in [("act", dict(halting_bias=30.0)), ("none", dict(mode="none"))]:
  fns[name] = tl.bare_value_and_grad(tl._text(80, **over))
def t(name):
  f, args = fns[name]
  jax.block_until_ready(f(*args))
  ts = []
  for _ in range(15):
    s = time.perf_counter(); jax.block_until_ready(f(*args)); ts.append(time.perf_counter() - s)
  return np.median(ts) * 1e3
for REMAT in [True, False, True, False]:
  fns["act"] = tl.bare_value_and_grad(tl._text(80, halting_bias=30.0))
  a, n = t("act"), t("none")
  print(f"remat={REMAT} act {a:.1f} none {n:.1f} ratio {a/n:.3f}", flush=True)
