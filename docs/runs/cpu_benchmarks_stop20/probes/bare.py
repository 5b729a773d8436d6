"""Bare jitted value-and-grad of the benchmark's loss pairs, interleaved: text ACT (N=1) vs none,
parity cap ACT (N=M=100) vs Repeat-100."""
import sys, os, statistics, time
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import jax
import train_loop as tl
import timing

which = sys.argv[1] if len(sys.argv) > 1 else "text"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
if which == "text":
  pair = {"act": tl._text(80, halting_bias=30.0), "none": tl._text(80, mode="none")}
else:
  pair = {"act": tl._parity(40, halting_bias=-30.0),
          "repeat": tl._parity(40, mode="repeat", repeats=100)}
fns = {k: tl.bare_value_and_grad(c) for k, c in pair.items()}
for k, (fn, args) in fns.items():
  jax.block_until_ready(fn(*args))
samples = {k: [] for k in fns}
for _ in range(rounds):
  for k, (fn, args) in fns.items():
    jax.block_until_ready(fn(*args))
    t = time.perf_counter(); jax.block_until_ready(fn(*args)); samples[k].append(time.perf_counter() - t)
names = list(fns)
ratios = [a / b for a, b in zip(samples[names[0]], samples[names[1]])]
print({k: round(1e3 * statistics.median(v), 3) for k, v in samples.items()},
      "ratio median", round(statistics.median(ratios), 3),
      "q25-q75", [round(x, 3) for x in statistics.quantiles(ratios, n=4)])
