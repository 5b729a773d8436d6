"""Ops per while-loop body in the optimized HLO of ponder_loop.py's parity training step.

  cd <repo> && PYTHONPATH=.:benchmarks python docs/runs/cpu_benchmarks_stop17/hlo_ops.py
"""
import re

import jax
import jax.numpy as jnp
from absl import flags

import ponder_loop as pl

flags.FLAGS(["hlo_ops"])
step, _, _ = pl._act_train_step(pl._tanh_cell, "while", 100, False)  # pylint: disable=protected-access
params = pl._params(jax.random.PRNGKey(0), "tanh", 64, 128, 0.0)  # pylint: disable=protected-access
args = (params, jnp.zeros((128, 128)), jnp.ones((128, 64)), jnp.ones((128, 1)))
text = step.lower(*args).compile().as_text()
computations, name = {}, None
for line in text.splitlines():
  header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
  if header:
    name = header.group(1)
    computations[name] = []
  elif name and line.strip() == "}":
    name = None
  elif name:
    computations[name].append(line)
for body in sorted(set(re.findall(r"body=%?([\w.\-]+)", text))):
  lines = computations.get(body, [])
  count = lambda op: sum(1 for l in lines if re.search(r"= \S+ " + op + r"\(", l))  # pylint: disable=cell-var-from-loop
  print(f"{body:60s} fusions {count('fusion'):3d}  dots {count('dot'):2d}  copies {count('copy'):2d}")
