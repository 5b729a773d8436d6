# Stop 20, 2 cores (no taskset; shared machine, absolute times drift; ratios are interleaved in one process).
# Before (e781d99), one run:
PYTHONPATH=. .venv/bin/python benchmarks/train_loop.py --json --rounds=2 > train_loop_before.txt
# Where the two unmet targets lost their time (bare jitted value-and-grad, interleaved):
.venv/bin/python docs/runs/cpu_benchmarks_stop20/probes/text_parts.py 15     # LM at N = 1: forward and value-and-grad, ACT vs none (before: remat; after)
.venv/bin/python docs/runs/cpu_benchmarks_stop20/probes/bare.py cap 20       # parity at the cap, ACT vs Repeat-100
.venv/bin/python docs/runs/cpu_benchmarks_stop20/probes/chunk.py 20 8,32,100 # chunk_steps 8 / 32 / 100 at N ~ 2 and at the cap
.venv/bin/python docs/runs/cpu_benchmarks_stop20/probes/profile_cap.py act 8 # per-kernel times (jax.profiler); also `repeat`, `act 100`, `act2 8`
.venv/bin/python docs/runs/cpu_benchmarks_stop20/probes/fill.py              # a zero-filled [n,128,128] buffer on XLA:CPU
# The LM's real training run, remat True / False alternately, twice (150 steps, text default):
docs/runs/cpu_benchmarks_stop20/probes/lm_ab.sh     # -> lm_ab/*.log, */metrics.jsonl
# The LM where some bytes ponder twice (halting bias near logit(0.99)); LSTM=optimized: flax's fused-gate cell:
.venv/bin/python docs/runs/cpu_benchmarks_stop20/probes/text_n.py 6 30,4.6,4.4
# After (this stop's code), rounds=2, the cap also with every step recorded:
for i in 1 2 3; do PYTHONPATH=. .venv/bin/python benchmarks/train_loop.py --json --rounds=2 > train_loop_rounds2_run$i.txt; done
# After, the benchmark's defaults (3 rounds, 3 start-up pairs):
for i in 1 2 3; do PYTHONPATH=. .venv/bin/python benchmarks/train_loop.py --json > train_loop_run$i.txt; done
# Per-kernel times of the LM's value-and-grad where every byte ponders twice (halting bias 4.4):
.venv/bin/python docs/runs/cpu_benchmarks_stop20/probes/profile_text.py 4.4
# The timing probes were rewritten after these runs on shared helpers (benchmarks/train_loop.py's
# training_loss, benchmarks/timing.py's interleaved_seconds, probes/paired.py); they time the same
# functions the same way. probe_outputs.txt holds what the first versions printed.
# The ponder-loop benchmark on the final code (the library's loop is unchanged this stop), two runs:
for i in 1 2; do PYTHONPATH=. .venv/bin/python benchmarks/ponder_loop.py --json > ponder_loop_run$i.txt; done
