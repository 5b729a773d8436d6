"""Parity bare value-and-grad: ACT at N~2 and at the cap with chunk_steps 8 vs M, against Repeat."""
import sys, os
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
os.chdir(REPO)
import train_loop as tl
import paired  # beside this probe

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
chunks = [int(c) for c in (sys.argv[2] if len(sys.argv) > 2 else "8,100").split(",")]
configs = {f"act2_c{c}": tl._parity(40, chunk_steps=c) for c in chunks}
configs["repeat3"] = tl._parity(40, mode="repeat", repeats=3)
configs.update({f"cap_c{c}": tl._parity(40, halting_bias=-30.0, chunk_steps=c) for c in chunks})
configs["repeat100"] = tl._parity(40, mode="repeat", repeats=100)
times = paired.samples({k: tl.bare_value_and_grad(c) for k, c in configs.items()}, rounds)
print(paired.medians_ms(times))
r = lambda a, b: round(paired.ratio(times, a, b), 3)
for c in chunks:
  print(c, "act2/repeat3", r(f"act2_c{c}", "repeat3"), "cap/repeat100", r(f"cap_c{c}", "repeat100"))
