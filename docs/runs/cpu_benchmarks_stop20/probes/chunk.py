"""Parity bare value-and-grad: ACT at N~2 and at the cap with chunk_steps 8 vs M, against Repeat."""
import sys, os, statistics, time
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import jax
from flax import nnx
import train_loop as tl
from tasks import networks, train
from tasks.registry import get_task

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
chunks = [int(c) for c in (sys.argv[2] if len(sys.argv) > 2 else "8,100").split(",")]
def make(config, chunk=None):
  task = get_task(config.task)
  model = networks.build_model(config, task)
  if chunk is not None:
    model.act.chunk_steps = chunk
  graphdef, params = nnx.split(model)
  batch = jax.device_put(jax.device_get(task.source(config).train(0)))
  def loss(params, batch):
    return train._loss_fn(nnx.merge(graphdef, params), batch, config.tau, task.metric)[0]
  return jax.jit(jax.value_and_grad(loss)), (params, batch)
fns = {}
for c in chunks:
  fns[f"act2_c{c}"] = make(tl._parity(40), c)
fns["repeat3"] = make(tl._parity(40, mode="repeat", repeats=3))
for c in chunks:
  fns[f"cap_c{c}"] = make(tl._parity(40, halting_bias=-30.0), c)
fns["repeat100"] = make(tl._parity(40, mode="repeat", repeats=100))
for k, (fn, args) in fns.items():
  jax.block_until_ready(fn(*args))
samples = {k: [] for k in fns}
for _ in range(rounds):
  for k, (fn, args) in fns.items():
    jax.block_until_ready(fn(*args))
    t = time.perf_counter(); jax.block_until_ready(fn(*args)); samples[k].append(time.perf_counter() - t)
print({k: round(1e3 * statistics.median(v), 3) for k, v in samples.items()})
r = lambda a, b: round(statistics.median(x / y for x, y in zip(samples[a], samples[b])), 3)
for c in chunks:
  print(c, "act2/repeat3", r(f"act2_c{c}", "repeat3"), "cap/repeat100", r(f"cap_c{c}", "repeat100"))
