import sys, glob, gzip, json, collections
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")
import jax, jax.numpy as jnp
import ponder_loop as pl
from absl import flags
flags.FLAGS(["x"])
params = pl._params(jax.random.PRNGKey(0), "tanh", 64, 128, -0.4)
x = jax.random.choice(jax.random.PRNGKey(1), jnp.array([-1.0, 0.0, 1.0]), (128, 64))
targets = jax.random.bernoulli(jax.random.PRNGKey(2), 0.5, (128, 1)).astype(jnp.float32)
state = jnp.zeros((128, 128))
step, _, _ = pl._act_train_step(pl._tanh_cell, "while", 100, sequence=False)
plain, _ = pl._plain_train_step(pl._tanh_cell, [4], sequence=False)
which = sys.argv[1]
f = step if which == "while" else plain
for _ in range(50): jax.block_until_ready(f(params, state, x, targets))
d = f"/tmp/act_trace_{which}"
with jax.profiler.trace(d, create_perfetto_trace=True):
  for _ in range(200): jax.block_until_ready(f(params, state, x, targets))
fn = glob.glob(f"{d}/**/*.trace.json.gz", recursive=True)[-1]
ev = json.load(gzip.open(fn))
evs = ev["traceEvents"] if isinstance(ev, dict) else ev
tot = collections.Counter(); cnt = collections.Counter()
for e in evs:
  if e.get("ph") == "X":
    tot[e["name"]] += e.get("dur", 0); cnt[e["name"]] += 1
for name, t in tot.most_common(45):
  print(f"{t/200:9.1f} us/step  {cnt[name]/200:6.1f}x  {name[:90]}")
