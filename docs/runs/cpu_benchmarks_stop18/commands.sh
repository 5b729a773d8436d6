#!/bin/bash
# Stop 18, one core (taskset -c 0) while core 1 trained the LM (issue 13 item 5, tau = 1e-3).
# Each code version is a git worktree under ~/act-runs/code-<sha> (.venv linked to the main one).
#
# A/B of the loop_invariant change (2d594a3: a step whose invariant part only lays out values is
# left whole), the short benchmark, base (4a609e7) and new interleaved: ab_short_{base,new}_{1,2,3}.txt
# (new was run from /work/main's working tree with that change uncommitted; committed unchanged as 2d594a3)
for r in 1 2 3; do
  for v in 4a609e7 2d594a3; do
    (cd ~/act-runs/code-$v && taskset -c 0 env PYTHONPATH=. .venv/bin/python benchmarks/ponder_loop.py --json --lstm=false --long_seq=false)
  done
done
# Both benchmarks on the code of 77fe190, three runs each: ponder_loop_{1,2,3}.txt, train_loop_{1,2,3}.txt.
# ponder_loop_1_disturbed_by_probe.txt: the first try of run 1, during which the LM's halting probe
# (docs/runs/text_paper_lr3/halting_probe.py) ran on the same core; run 1 was repeated after the others.
cd ~/act-runs/code-77fe190
for r in 1 2 3; do
  taskset -c 0 env PYTHONPATH=. .venv/bin/python benchmarks/ponder_loop.py --json
done
for r in 1 2 3; do
  taskset -c 0 env PYTHONPATH=. .venv/bin/python benchmarks/train_loop.py --json --rounds=2
done
# The LM's step with and without remat against no ACT (the stop-14 probe, rerun on 77fe190): text_remat.txt
taskset -c 0 env PYTHONPATH=. .venv/bin/python /work/main/docs/runs/cpu_benchmarks_stop14/probes/text_remat.py 3
