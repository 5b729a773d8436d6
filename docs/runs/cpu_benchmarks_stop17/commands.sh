#!/bin/bash
# Stop 17: base = cb8ac65 (stop 16), new = dd7b338 (loop-invariant hoisting), each a git
# worktree under ~/act-runs/code-<sha>; one core (taskset -c 0) while core 1 trained the LM.
# ponder_loop: three rounds, base and new interleaved (ponder_loop_{base,new}_{1,2,3}.txt)
for r in 1 2 3; do
  for v in cb8ac65 dd7b338; do
    (cd ~/act-runs/code-$v && taskset -c 0 env PYTHONPATH=. .venv/bin/python benchmarks/ponder_loop.py --json)
  done
done
# train_loop: three rounds, base and new interleaved (train_loop_{base,new}_{1,2,3}.txt)
for r in 1 2 3; do
  for v in cb8ac65 dd7b338; do
    (cd ~/act-runs/code-$v && taskset -c 0 env PYTHONPATH=. .venv/bin/python benchmarks/train_loop.py --json --rounds=2)
  done
done
# per-while-body op counts of the parity training step's optimized HLO: hlo_ops.py (this folder)
# the LM at the cap, base then new, two rounds each: text_cap.txt
for v in dd7b338 cb8ac65; do
  (cd ~/act-runs/code-$v && taskset -c 0 env PYTHONPATH=.:benchmarks .venv/bin/python /work/main/docs/runs/cpu_benchmarks_stop17/text_cap.py $v)
done
