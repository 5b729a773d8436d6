"""Bare jitted value-and-grad of the benchmark's loss pairs, interleaved: text ACT (N=1) vs none,
parity cap ACT (N=M=100) vs Repeat-100."""
import sys, os, statistics
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import train_loop as tl
import paired  # beside this probe

which = sys.argv[1] if len(sys.argv) > 1 else "text"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
if which == "text":
  pair = {"act": tl._text(80, halting_bias=30.0), "none": tl._text(80, mode="none")}
else:
  pair = {"act": tl._parity(40, halting_bias=-30.0),
          "repeat": tl._parity(40, mode="repeat", repeats=100)}
times = paired.samples({k: tl.bare_value_and_grad(c) for k, c in pair.items()}, rounds)
a, b = pair
ratios = [x / y for x, y in zip(times[a], times[b])]
print(paired.medians_ms(times), "ratio median", round(statistics.median(ratios), 3),
      "q25-q75", [round(x, 3) for x in statistics.quantiles(ratios, n=4)])
