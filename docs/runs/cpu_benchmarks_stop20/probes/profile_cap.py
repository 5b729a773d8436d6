"""Per-kernel times (jax.profiler) of the parity value-and-grad: ACT at the cap ("act"), ACT at
N ~ 2 ("act2"), with chunk_steps argv[2], or Repeat-100 ("repeat")."""
import sys, os
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import jax
import train_loop as tl
from kernel_times import print_kernel_times  # beside this probe

which = sys.argv[1]
chunk = {"chunk_steps": int(sys.argv[2])} if which.startswith("act") and len(sys.argv) > 2 else {}
config = {"act": lambda: tl._parity(40, halting_bias=-30.0, **chunk),
          "act2": lambda: tl._parity(40, **chunk),
          "repeat": lambda: tl._parity(40, mode="repeat", repeats=100)}[which]()
f, args = tl.bare_value_and_grad(config)
for _ in range(5):
  jax.block_until_ready(f(*args))
print_kernel_times(f, args, 20, f"/tmp/act_trace_cap_{which}")
