import sys
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")  # run from the repository root
import tempfile
import train_loop as tl
from launch.train import use_compilation_cache
cache = tempfile.TemporaryDirectory(); use_compilation_cache(cache.name)
loops = {"act": tl._parity(2000), "act_nocompact": tl._parity(2000, independent_examples=False),
         "repeat3": tl._parity(2000, mode="repeat", repeats=3)}
for r in range(3):
  res = {k: tl.loop_seconds_per_step(c)[0]*1e3 for k, c in loops.items()}
  print({k: round(v,3) for k,v in res.items()}, "act/repeat", round(res["act"]/res["repeat3"],2), "nocompact/repeat", round(res["act_nocompact"]/res["repeat3"],2), flush=True)
