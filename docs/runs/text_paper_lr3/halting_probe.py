"""Probe: what the halting unit of a text run does, and which way its gradient pulls, per checkpoint.

For each saved checkpoint of a text run, on the first ``--windows`` held-out
windows of the valid split (500 bytes each, state reset per window):

* N: mean, the share of bytes with N = 1 and with N = M;
* h^n for the ponder steps before the last (n < N, where p^n = h^n, Eq. 6):
  median and 10th / 90th percentiles, and the mean of h^n (1 - h^n), the
  sigmoid's slope, through which every gradient reaches the halting unit;
* the gradient with respect to the halting unit's bias of the task loss and
  of the ponder penalty tau * P (Eq. 12; the two terms of the training loss,
  as ``tasks/training_step.py`` sums them), and the norms of their gradients with
  respect to its kernel. A positive bias gradient pulls the bias down (more
  steps); the ponder penalty's is never positive.

  PYTHONPATH=. python docs/runs/text_paper_lr3/halting_probe.py --workdir=DIR [--windows=16] [--watch]

One JSON line per checkpoint. A training run keeps only its last two
checkpoints: ``--watch`` probes each new one as the run saves it, until the
run writes ``results.json`` or stops saving for ``--patience`` seconds.
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import act_jax
from tasks import config_checks, evaluation
from tasks.checkpoints import load_trained_model
from tasks.registry import get_task


def probe(workdir: str, step: int, windows: int) -> dict:
  model, config, step = load_trained_model(workdir, step=step)
  config.eval_batch_size = windows
  batch = next(get_task("text").source(config).held_out(1))
  graphdef, params = nnx.split(model)

  def terms(params):
    out = nnx.merge(graphdef, params)(batch.inputs, batch.input_mask)
    losses, _ = evaluation.target_terms(out.logits, batch)
    task = jnp.mean(jnp.sum(losses, axis=(1, 2)))
    ponder = act_jax.ponder_penalty(out.stats.ponder_cost, config.tau, batch.input_mask)
    return (task, ponder), out.stats

  (task, ponder), vjp, stats = jax.vjp(terms, params, has_aux=True)
  (d_task,), (d_ponder,) = vjp((1.0, 0.0)), vjp((0.0, 1.0))
  halting = lambda tree: tree["act"]["halting"]
  mask = np.asarray(batch.input_mask)
  steps = np.asarray(stats.steps)[mask]
  probs = np.asarray(stats.halting_probs)[mask]  # [bytes, M]
  before_last = np.arange(probs.shape[1])[None, :] < (steps[:, None] - 1)
  h = probs[before_last]
  quantiles = np.quantile(h, [0.1, 0.5, 0.9]).tolist() if h.size else [None] * 3
  return {
      "step": step, "bytes": int(mask.sum()), "task_loss": float(task),
      "ponder_penalty": float(ponder), "mean_n": float(steps.mean()),
      "share_n_1": float(np.mean(steps == 1)),
      "share_n_max": float(np.mean(steps == config.max_steps)),
      "h_before_last_q10_q50_q90": quantiles,
      "mean_h_slope": float(np.mean(h * (1 - h))) if h.size else None,
      "d_bias_task": float(halting(d_task)["bias"][...][0]),
      "d_bias_ponder": float(halting(d_ponder)["bias"][...][0]),
      "d_kernel_norm_task": float(jnp.linalg.norm(halting(d_task)["kernel"][...])),
      "d_kernel_norm_ponder": float(jnp.linalg.norm(halting(d_ponder)["kernel"][...])),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--windows", type=int, default=16)
  parser.add_argument("--steps", default="", help="comma-separated checkpoint steps only")
  parser.add_argument("--watch", action="store_true", help="probe checkpoints as they come")
  parser.add_argument("--patience", type=float, default=1800.0)
  args = parser.parse_args()
  workdir = os.path.abspath(args.workdir)
  if args.steps:
    for step in (int(s) for s in args.steps.split(",")):
      print(json.dumps(probe(workdir, step, args.windows)), flush=True)
    return
  probed, last_new = set(), time.time()
  while True:
    saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))
                   if s.isdigit())
    for step in (s for s in saved if s not in probed):
      try:
        print(json.dumps(probe(workdir, step, args.windows)), flush=True)
      except config_checks.ConfigError:  # still being written (tried again), or already deleted
        continue
      probed.add(step)
      last_new = time.time()
    finished = os.path.exists(os.path.join(workdir, "results.json"))
    if not args.watch or finished or time.time() - last_new > args.patience:
      return
    time.sleep(10)


if __name__ == "__main__":
  main()
