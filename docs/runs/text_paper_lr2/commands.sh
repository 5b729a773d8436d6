#!/bin/bash
cd ~/act-runs/code-9e700b8
PY=/work/main/.venv/bin/python
COMMON="--config=tasks/configs/text.py --config.learning_rate=1e-4 --config.eval_every=200 --config.checkpoint_every=100 --config.log_every=50"
taskset -c 1 $PY -m launch.train $COMMON --config.mode=none --config.num_steps=1000 --workdir=$HOME/act-runs/text_paper_lr2/none
taskset -c 1 $PY -m launch.train $COMMON --config.tau=6e-3 --config.num_steps=10000 --config.time_budget_minutes=110 --workdir=$HOME/act-runs/text_paper_lr2/tau=0.006
