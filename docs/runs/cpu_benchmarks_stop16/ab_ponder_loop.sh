#!/bin/bash
# alternate old/new ponder_loop benchmark runs on core 0
for i in 1 2 3; do
  for v in base new; do
    if [ $v = base ]; then d=$HOME/act-runs/code-07a8e90; else d=/work/main; fi
    (cd $d && taskset -c 0 env PYTHONPATH=. .venv/bin/python benchmarks/ponder_loop.py --json --lstm=false --long_seq=false 2>/dev/null | tail -1 > /tmp/probe/ab_${v}_$i.json)
  done
done
echo done > /tmp/probe/ab_done
