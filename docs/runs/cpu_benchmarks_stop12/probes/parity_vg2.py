import sys, time
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")  # run from the repository root
import jax, numpy as np
import train_loop as tl, timing
variants = {
  "act": tl._parity(2000),
  "act_nocompact": tl._parity(2000, independent_examples=False),
  "repeat3": tl._parity(2000, mode="repeat", repeats=3),
}
fns = {k: tl.bare_value_and_grad(c) for k, c in variants.items()}
# all take (params, batch) of their own; wrap to share the call signature
calls = {k: (lambda f, a: (lambda *_: f(*a)))(*fns[k]) for k in fns}
for r in range(3):
  res = timing.median_seconds(calls, (), 100)
  print({k: round(v*1e3,3) for k,v in res.items()}, "act/repeat", round(res["act"]/res["repeat3"],2), "nocompact/repeat", round(res["act_nocompact"]/res["repeat3"],2), flush=True)
