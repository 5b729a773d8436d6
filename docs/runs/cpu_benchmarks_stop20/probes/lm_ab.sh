# The LM (text default: LSTM 256, 500-byte windows, batch 16) with and without remat, alternately.
cd "$(dirname "$0")/../../../.."
for r in 1 2; do for remat in True False; do
  PYTHONPATH=. .venv/bin/python -m launch.train --config=tasks/configs/text.py --workdir=$HOME/act-runs/stop20/lm_remat_${remat}_$r \
    --config.remat=$remat --config.num_steps=150 --config.log_every=25 --config.eval_every=150 --config.checkpoint_every=150 \
    --config.eval_batches=1 --config.plot=False > $HOME/act-runs/stop20/lm_remat_${remat}_$r.log 2>&1
done; done
