#!/bin/bash
# Issue 13 item 5: the Wikipedia LM at the paper's learning rate, tau = 1e-3 (stop 18).
# The code of 4a609e7 as a git worktree (its .venv linked to the main one); the workdir outside
# the repository. One core for the run, the other for the probe and benchmarks.
cd ~/act-runs/code-4a609e7
taskset -c 1 .venv/bin/python -m launch.train --config=tasks/configs/text.py --config.learning_rate=1e-4 \
    --config.eval_every=100 --config.checkpoint_every=50 --config.log_every=50 --config.tau=1e-3 \
    --config.num_steps=10000 --config.time_budget_minutes=110 --workdir=$HOME/act-runs/text_paper_lr3/tau=0.001
# Alongside it, on the other core: the halting unit and the two gradients on its bias at every
# checkpoint as it is saved (training keeps only the last two): probe_halting.jsonl (steps 500 and
# 549 probed after the run with --steps: the watcher then marked a checkpoint it failed to read,
# likely one still being written, as done; it now tries such a checkpoint again). This script
# and plot_probe.py are in this folder; run from /work/main (the code of 77fe190, which adds
# load_trained_model(step=...); the model is the same).
cd /work/main
taskset -c 0 env PYTHONPATH=. .venv/bin/python docs/runs/text_paper_lr3/halting_probe.py \
    --workdir=$HOME/act-runs/text_paper_lr3/tau=0.001 --watch > docs/runs/text_paper_lr3/probe_halting.jsonl
python docs/runs/text_paper_lr3/plot_probe.py docs/runs/text_paper_lr3/probe_halting.jsonl docs/figures/text_paper_lr3/halting_probe.png \
    "LM, Adam 1e-4, tau = 1e-3: the halting unit over training"
# Where it ponders, at the last checkpoint: analysis.json, and the Figs. 23/24 plot.
.venv/bin/python -m launch.analyze_ponder --workdir=$HOME/act-runs/text_paper_lr3/tau=0.001 --length=5000
