"""Per-kernel times (jax.profiler) of the parity cap value-and-grad: ACT (chunk argv[2]) or Repeat-100."""
import sys, os
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import jax
from kernel_times import print_kernel_times  # beside this probe
from flax import nnx
import train_loop as tl
from tasks import networks, train
from tasks.registry import get_task
which = sys.argv[1]
config = {"act": tl._parity(40, halting_bias=-30.0), "act2": tl._parity(40), "repeat": tl._parity(40, mode="repeat", repeats=100)}[which]
task = get_task(config.task)
model = networks.build_model(config, task)
if which.startswith("act") and len(sys.argv) > 2:
  model.act.chunk_steps = int(sys.argv[2])
graphdef, params = nnx.split(model)
batch = jax.device_put(jax.device_get(task.source(config).train(0)))
def loss(params, batch):
  return train._loss_fn(nnx.merge(graphdef, params), batch, config.tau, task.metric)[0]
f = jax.jit(jax.value_and_grad(loss))
for _ in range(5): jax.block_until_ready(f(params, batch))
print_kernel_times(f, (params, batch), 20, f"/tmp/act_trace_cap_{which}")
