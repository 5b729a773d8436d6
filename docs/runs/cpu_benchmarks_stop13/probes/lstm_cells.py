import sys
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")
import jax
from flax import nnx
import train_loop as tl, timing
from tasks import models
fns = {}
for cell_name, cell in [("lstm", nnx.LSTMCell), ("opt", nnx.OptimizedLSTMCell)]:
  models.CELLS["lstm"] = cell
  for mode, cfg in [("act", tl._text(80, halting_bias=30.0)), ("none", tl._text(80, mode="none"))]:
    f, a = tl.bare_value_and_grad(cfg)
    jax.block_until_ready(f(*a))
    fns[f"{mode}_{cell_name}"] = (f, a)
calls = {k: (lambda f, a: (lambda *_: f(*a)))(*v) for k, v in fns.items()}
for r in range(4):
  res = timing.median_seconds(calls, (), 10)
  print({k: round(v*1e3, 1) for k, v in res.items()},
        "act/none lstm", round(res["act_lstm"]/res["none_lstm"], 3),
        "opt", round(res["act_opt"]/res["none_opt"], 3),
        "none opt/lstm", round(res["none_opt"]/res["none_lstm"], 3), flush=True)
