import sys, time
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")  # run from the repository root
import tempfile
import train_loop as tl
from act_jax.backends import compact
from launch.train import use_compilation_cache
cache = tempfile.TemporaryDirectory(); use_compilation_cache(cache.name)
# The training loop (real launch.train loop, frozen weights, N about 2) with the
# compacting loop shrinking by 4 and by 16 per level, against Repeat-RNN x3.
for r in range(3):
  res = {}
  for name, shrink in (("act_shrink4", 4), ("act_shrink16", 16)):
    compact.SHRINK = shrink
    res[name] = tl.loop_seconds_per_step(tl._parity(2000))[0] * 1e3
  res["repeat3"] = tl.loop_seconds_per_step(tl._parity(2000, mode="repeat", repeats=3))[0] * 1e3
  print({k: round(v, 3) for k, v in res.items()}, "shrink4/repeat", round(res["act_shrink4"] / res["repeat3"], 2),
        "shrink16/repeat", round(res["act_shrink16"] / res["repeat3"], 2), flush=True)
