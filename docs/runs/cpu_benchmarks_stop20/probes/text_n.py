"""The LM's bare value-and-grad (LSTM 256, 100-byte windows, batch 16) at N = 1 and where a
few bytes take a second ponder step (halting bias near logit(0.99) = 4.6), against no ACT."""
import sys, os, statistics, time
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import jax, jax.numpy as jnp
from flax import nnx
import train_loop as tl
from tasks import networks, train
from tasks.registry import get_task

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
if os.environ.get("LSTM") == "optimized":  # the fused-gate cell in place of nnx.LSTMCell
  from tasks import models
  models.CELLS["lstm"] = nnx.OptimizedLSTMCell
biases = [float(b) for b in (sys.argv[2] if len(sys.argv) > 2 else "30,4.7,4.6,4.5").split(",")]
configs = {f"act_b{b:g}": tl._text(80, halting_bias=b) for b in biases}
configs["none"] = tl._text(80, mode="none")
fns, n = {}, {}
for k, config in configs.items():
  task = get_task(config.task)
  model = networks.build_model(config, task)
  graphdef, params = nnx.split(model)
  batch = jax.device_put(jax.device_get(task.source(config).train(0)))
  def loss(params, batch, graphdef=graphdef, config=config, task=task):
    return train._loss_fn(nnx.merge(graphdef, params), batch, config.tau, task.metric)
  fns[k] = (jax.jit(jax.value_and_grad(loss, has_aux=True)), (params, batch))
  fns[k + "_fwd"] = (jax.jit(loss), (params, batch))
  n[k] = float(jax.jit(loss)(params, batch)[1]["mean_steps"])
for fn, args in fns.values():
  jax.block_until_ready(fn(*args))
samples = {k: [] for k in fns}
for _ in range(rounds):
  for k, (fn, args) in fns.items():
    jax.block_until_ready(fn(*args))
    t = time.perf_counter(); jax.block_until_ready(fn(*args)); samples[k].append(time.perf_counter() - t)
for k in fns:
  none = "none_fwd" if k.endswith("_fwd") else "none"
  print(f"{k:>14s} N {n[k.removesuffix('_fwd')]:.3f}  {1e3 * statistics.median(samples[k]):8.2f} ms  /none "
        f"{statistics.median(a / b for a, b in zip(samples[k], samples[none])):.2f}")
