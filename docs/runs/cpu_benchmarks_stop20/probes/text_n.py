"""The LM's bare value-and-grad (LSTM 256, 100-byte windows, batch 16) at N = 1 and where a
few bytes take a second ponder step (halting bias near logit(0.99) = 4.6), against no ACT;
also the loss alone ("_fwd"). LSTM=optimized: flax's fused-gate cell in place of nnx.LSTMCell."""
import sys, os
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import jax
from flax import nnx
import train_loop as tl
import paired  # beside this probe

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
if os.environ.get("LSTM") == "optimized":
  from tasks import models
  models.CELLS["lstm"] = nnx.OptimizedLSTMCell
biases = [float(b) for b in (sys.argv[2] if len(sys.argv) > 2 else "30,4.7,4.6,4.5").split(",")]
configs = {f"act_b{b:g}": tl._text(80, halting_bias=b) for b in biases}
configs["none"] = tl._text(80, mode="none")
fns, n = {}, {}
for k, config in configs.items():
  loss, args = tl.training_loss(config, with_metrics=True)
  fns[k] = (jax.jit(jax.value_and_grad(loss, has_aux=True)), args)
  fns[k + "_fwd"] = (jax.jit(loss), args)
  n[k] = float(jax.jit(loss)(*args)[1]["mean_steps"])
times = paired.samples(fns, rounds)
ms = paired.medians_ms(times)
for k in fns:
  none = "none_fwd" if k.endswith("_fwd") else "none"
  print(f"{k:>14s} N {n[k.removesuffix('_fwd')]:.3f}  {ms[k]:8.2f} ms  /none "
        f"{paired.ratio(times, k, none):.2f}")
