"""Per-kernel times (jax.profiler) of the LM's value-and-grad at halting bias argv[1] (4.4: N = 2)."""
import sys, os, glob, gzip, json, collections, re
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import jax
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
n = 5
d = f"/tmp/act_trace_text"
os.system(f"rm -rf {d}")
with jax.profiler.trace(d):
  for _ in range(n): jax.block_until_ready(f(params, batch))
fn = sorted(glob.glob(f"{d}/**/*.trace.json.gz", recursive=True), key=os.path.getmtime)[-1]
ev = json.load(gzip.open(fn))
evs = ev["traceEvents"] if isinstance(ev, dict) else ev
tot = collections.Counter(); cnt = collections.Counter()
for e in evs:
  if e.get("ph") == "X":
    tot[e["name"]] += e.get("dur", 0); cnt[e["name"]] += 1
for name, t in tot.most_common(45):
  if name.startswith("$") or "Execute" in name: continue
  print(f"{t/n:9.1f} us/step  {cnt[name]/n:7.1f}x  {name[:90]}")
groups = collections.Counter()
for name, t in tot.items():
  if name.startswith("$") or "Execute" in name or name.startswith(("Pjit", "while", "cond")): continue
  groups[re.sub(r"[.\d]+$", "", name)] += t
print("GROUPS", {k: round(v / n) for k, v in groups.most_common(14)}, "sum", round(sum(groups.values()) / n))
