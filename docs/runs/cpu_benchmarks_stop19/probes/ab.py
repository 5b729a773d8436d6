"""Compaction before (4a609e7's compact.py) and after this stop (the per-level
record budget), interleaved, on the benchmark's mixed-N setting (counter
schedule); "short": the same batch with the stragglers cut to N = 8 (the fixed
cost of compaction alone).

ab_rows_run*.txt: an earlier form of this probe, where "new" also moved rows
between levels with gathers instead of scatters (tried, not kept) and "budget"
was the record budget alone.

Run from the repository root: .venv/bin/python docs/runs/cpu_benchmarks_stop19/probes/ab.py
"""
import importlib.util, subprocess, sys, tempfile
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")
import jax, jax.numpy as jnp
import act_jax
import act_jax.ponder_loop as plp
from act_jax.backends import compact
import ponder_loop as pl, timing

old_source = subprocess.run(["git", "show", "4a609e7:act_jax/backends/compact.py"],
                            capture_output=True, text=True, check=True).stdout


def load(name, source):
  with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
    f.write(source)
  spec = importlib.util.spec_from_file_location(name, f.name)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


batch = 128
params, h, x, targets = pl._parity_args(batch, 0.0)
key_n, key_tail, key_perm = jax.random.split(jax.random.PRNGKey(3), 3)
s = round(0.02 * batch)
halt_at = jax.random.permutation(key_perm, jnp.concatenate([
    jax.random.randint(key_n, (batch - s,), 2, 9), jax.random.randint(key_tail, (s,), 50, 101)]))
step_fn = pl._scheduled_step_fn(pl._tanh_cell)
modules = {"old": load("compact_old", old_source), "new": compact}


def train_step(module):
  def loss(params, state, inputs, targets):
    plp.compact = module  # read when the loss is traced
    r = act_jax.ponder(step_fn, params, state, inputs, max_steps=100, backend="while",
                       first_step_flag_only=True, independent_examples=True)
    return (pl._bce(r.state[1] @ params["w_y"], targets)
            + act_jax.ponder_penalty(r.stats.ponder_cost, 1e-3))
  return jax.jit(jax.value_and_grad(loss))


variants = {}
for case, n in (("tail", halt_at), ("short", jnp.minimum(halt_at, 8))):
  args = (params, (jnp.zeros(batch), h), (x, n), targets)
  for name, module in modules.items():
    fn = train_step(module)
    jax.block_until_ready(fn(*args))  # traced and compiled with its module
    variants[f"{case}_{name}"] = (lambda fn, args: lambda: fn(*args))(fn, args)
plain, _ = pl._plain_train_step(pl._tanh_cell, [7], sequence=False)
variants["plain7"] = lambda: plain(params, h, x, targets)
for _ in range(3):
  seconds = timing.median_seconds(variants, (), 25)
  print(" | ".join(f"{k} {v * 1e3:.3f}" for k, v in seconds.items()), "ms")
