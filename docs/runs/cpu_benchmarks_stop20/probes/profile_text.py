"""Per-kernel times (jax.profiler) of the LM's value-and-grad at halting bias argv[1] (4.4: N = 2)."""
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
config = tl._text(80, halting_bias=float(sys.argv[1]))
task = get_task(config.task)
model = networks.build_model(config, task)
graphdef, params = nnx.split(model)
batch = jax.device_put(jax.device_get(task.source(config).train(0)))
def loss(params, batch):
  return train._loss_fn(nnx.merge(graphdef, params), batch, config.tau, task.metric)[0]
f = jax.jit(jax.value_and_grad(loss))
for _ in range(3): jax.block_until_ready(f(params, batch))
print_kernel_times(f, (params, batch), 5, "/tmp/act_trace_text")
