"""Text LM at N=1: forward-only and value-and-grad, ACT vs none, interleaved."""
import sys, os, statistics, time
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import jax, jax.numpy as jnp
from flax import nnx
import train_loop as tl
from tasks import networks, train
from tasks.registry import get_task

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
pair = {"act": tl._text(80, halting_bias=30.0), "none": tl._text(80, mode="none")}
fns = {}
for k, config in pair.items():
  task = get_task(config.task)
  model = networks.build_model(config, task)
  graphdef, params = nnx.split(model)
  batch = jax.device_put(jax.device_get(task.source(config).train(0)))
  def loss(params, batch, graphdef=graphdef, config=config, task=task):
    return train._loss_fn(nnx.merge(graphdef, params), batch, config.tau, task.metric)[0]
  fns[k + "_fwd"] = (jax.jit(loss), (params, batch))
  fns[k + "_vg"] = (jax.jit(jax.value_and_grad(loss)), (params, batch))
for k, (fn, args) in fns.items():
  jax.block_until_ready(fn(*args))
samples = {k: [] for k in fns}
for _ in range(rounds):
  for k, (fn, args) in fns.items():
    jax.block_until_ready(fn(*args))
    t = time.perf_counter(); jax.block_until_ready(fn(*args)); samples[k].append(time.perf_counter() - t)
print({k: round(1e3 * statistics.median(v), 3) for k, v in samples.items()})
for a, b in (("act_fwd", "none_fwd"), ("act_vg", "none_vg")):
  print(a, "/", b, round(statistics.median(x / y for x, y in zip(samples[a], samples[b])), 3))
