"""Text LM at N=1: forward-only and value-and-grad, ACT vs none, interleaved."""
import sys, os
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import jax
import train_loop as tl
import paired  # beside this probe

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
fns = {}
for k, config in {"act": tl._text(80, halting_bias=30.0), "none": tl._text(80, mode="none")}.items():
  loss, args = tl.training_loss(config)
  fns[k + "_fwd"] = (jax.jit(loss), args)
  fns[k + "_vg"] = (jax.jit(jax.value_and_grad(loss)), args)
times = paired.samples(fns, rounds)
print(paired.medians_ms(times))
for a, b in (("act_fwd", "none_fwd"), ("act_vg", "none_vg")):
  print(a, "/", b, round(paired.ratio(times, a, b), 3))
