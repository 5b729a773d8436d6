# Stop 19, 2 cores (no taskset; the hypervisor reported steal time during some
# runs, so absolute times drift; the ratios are interleaved in one process).
for i in 1 2 3; do PYTHONPATH=. .venv/bin/python benchmarks/ponder_loop.py --json > ponder_loop_run$i.txt; done
for i in 1 2 3; do PYTHONPATH=. .venv/bin/python benchmarks/train_loop.py --json --rounds=2 > train_loop_run$i.txt; done
# Compaction before / after this stop, interleaved (mixed-N setting, counter schedule):
.venv/bin/python docs/runs/cpu_benchmarks_stop19/probes/ab.py > probes/ab.txt
# Per-step cost of the ponder loop at batch 8 and 4 (all N = 90) against a bare scanned cell:
.venv/bin/python docs/runs/cpu_benchmarks_stop19/probes/tail.py 8; .venv/bin/python docs/runs/cpu_benchmarks_stop19/probes/tail.py 4
# Runs 1-3 (rows_variant/) were on the code with a gather-only row mover, dropped after;
# the final code, two runs:
for i in 1 2; do PYTHONPATH=. .venv/bin/python benchmarks/ponder_loop.py --json > ponder_loop_final_run$i.txt; done
# XLA:CPU flags, one process each (run at the start of the stop, on 4a609e7's code and benchmark):
docs/runs/cpu_benchmarks_stop19/probes/xla_flags.sh < docs/runs/cpu_benchmarks_stop19/probes/xla_flags_list.txt  # -> xla_flags_out.txt
# Per-kernel times of the parity training step (jax.profiler, perfetto trace):
.venv/bin/python docs/runs/cpu_benchmarks_stop19/probes/profile_parity.py while
