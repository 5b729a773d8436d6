#!/bin/bash
# Start-up (process start to the first progress line) and the loop's compile time, parity first_k,
# no compilation cache: the code before (shrink 4, ~/act-runs/code-66243bd) and after (shrink 16).
for round in 1 2; do
for side in before after; do
  if [ $side = before ]; then dir=$HOME/act-runs/code-66243bd; else dir=/work/main; fi
  w=$(mktemp -d); start=$(date +%s.%N)
  (cd $dir && taskset -c 0 .venv/bin/python -m launch.train --config=tasks/configs/parity.py:first_k --workdir=$w --compilation_cache= --config.num_steps=20 --config.log_every=10 --config.eval_every=1000 --config.checkpoint_every=1000 --config.figure_examples=0 --config.plot=False --config.eval_batches=1 > $w/log 2>&1)
  end=$(date +%s.%N)
  echo "$side round $round: whole run $(python3 -c "print(round($end-$start,1))") s; $(grep -o 'compiled the training loop in [0-9.]* s' $w/log)"
  rm -rf $w
done; done
