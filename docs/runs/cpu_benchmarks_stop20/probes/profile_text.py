"""Per-kernel times (jax.profiler) of the LM's value-and-grad at halting bias argv[1] (4.4: N = 2)."""
import sys, os
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import jax
import train_loop as tl
from kernel_times import print_kernel_times  # beside this probe

f, args = tl.bare_value_and_grad(tl._text(80, halting_bias=float(sys.argv[1])))
for _ in range(3):
  jax.block_until_ready(f(*args))
print_kernel_times(f, args, 5, "/tmp/act_trace_text")
