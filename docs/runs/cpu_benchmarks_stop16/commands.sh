#!/bin/bash
# Stop 16 benchmarks, one core (core 0) while core 1 trained (issue 13's addition run).
# BASE: a worktree of 07a8e90 (before the residual plan); NEW: a worktree of the commit
# that adds act_jax/backends/step_pullback.py. Outputs are the JSON last lines.
BASE=$HOME/act-runs/code-07a8e90
NEW=$HOME/act-runs/code-5bff7bf
run_ponder_loop() {  # $1: code dir, $2: output file
  (cd $1 && taskset -c 0 env PYTHONPATH=. .venv/bin/python benchmarks/ponder_loop.py --json \
     --lstm=false --long_seq=false 2>/dev/null | tail -1 > $2)
}
run_train_loop() {
  (cd $1 && taskset -c 0 env PYTHONPATH=. .venv/bin/python benchmarks/train_loop.py --json \
     2>/dev/null | tail -1 > $2)
}
# 1. ponder_loop, base and new interleaved, three rounds (ponder_loop_{base,new}_N.json).
#    "new" here ran from the uncommitted working tree holding the plan's first version,
#    whose residual values came from a second jax.vjp trace (its residual order can differ
#    from the plan's: CI's LSTM test caught it; for the tanh cell the plan stores nothing,
#    so these numbers are unaffected). NEW=/work/main at that time.
for i in 1 2 3; do
  run_ponder_loop $BASE $PWD/ponder_loop_base_$i.json
  run_ponder_loop /work/main $PWD/ponder_loop_new_$i.json
done
# 2. ponder_loop on the committed code, three runs (ponder_loop_final_N.json), then
#    train_loop base and new interleaved, two rounds (train_loop_{base,new}_N.json).
for i in 1 2 3; do run_ponder_loop $NEW $PWD/ponder_loop_final_$i.json; done
for i in 1 2; do
  run_train_loop $BASE $PWD/train_loop_base_$i.json
  run_train_loop $NEW $PWD/train_loop_new_$i.json
done
