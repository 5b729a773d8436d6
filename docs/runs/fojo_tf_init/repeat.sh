#!/bin/bash
# Repeat-RNN x2 in Fojo's setting with TensorFlow 1's initialisation, seeds 0-2 (one after another).
cd ~/act-runs/code-7245dca
for seed in 0 1 2; do
  .venv/bin/python -m launch.train --config=tasks/configs/parity.py:first_k \
    --workdir=$HOME/act-runs/fojo_tf_init/mode=repeat-repeats=2-seed=$seed --config.mode=repeat --config.repeats=2 \
    --config.seed=$seed --config.weight_init=tf_glorot --config.num_steps=400000 --config.eval_every=2000 \
    --config.eval_batches=2 --config.solved_at=0.02 --config.solved_evals=3 --config.checkpoint_every=10000 \
    --config.log_every=1000 > $HOME/act-runs/fojo_tf_init/repeat2_s$seed.out 2>&1
done
