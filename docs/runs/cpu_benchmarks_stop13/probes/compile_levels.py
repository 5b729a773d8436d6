import sys, time
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")
import jax
import train_loop as tl
from act_jax.backends import compact
for shrink in (4, 16, 4, 16):
  compact.SHRINK = shrink
  f, a = tl.bare_value_and_grad(tl._parity(2000))
  t = time.perf_counter(); c = f.lower(*a).compile(); dt = time.perf_counter() - t
  print(shrink, compact.level_sizes(128), f"compile {dt:.2f} s", len(c.as_text()), flush=True)
