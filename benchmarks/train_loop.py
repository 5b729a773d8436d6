r"""The training loop of ``launch.train`` against the bare computation it runs.

Runs the real loop (``tasks.train.train_and_evaluate``, the function the CLI
calls) with frozen weights (learning rate 1e-9, so that N stays where the
halting bias puts it) and reads its steps/s from ``metrics.jsonl`` (training
calls only: no compiling, evaluation or checkpoints), then reports, measured in
one run, variants interleaved round by round:

* ``parity_loop_over_grad``: parity ``first_k`` (tanh 128, batch 128, 64 bits,
  N ~ 2), the loop's ms per step / the bare jitted value-and-grad of the same
  loss on one batch; ``none_loop_over_grad``: the same for ``mode=none``.
* ``parity_random_over_first_k``: the same loop with the non-zero bits at
  random positions (the paper's parity and the default) / ``first_k``: the
  price of drawing a random subset of positions per example, generated in
  every training step.
* ``parity_act_over_repeat``: ACT at N ~ 2 / Repeat-RNN with 3 repeats (the
  batch maximum of N is about 3), both loops.
* ``parity_cap_act_over_repeat``: ACT with no example halting (halting bias
  -30: N = M = 100) / Repeat-RNN with 100 repeats. ACT records the first
  ``chunk_steps`` = 8 ponder steps for its backward pass and recomputes the
  others from checkpoints (memory O(8 + 100 / 8) states); the Repeat-RNN's
  autodiff keeps all 100. ``parity_cap_full_record_over_repeat``: the same with
  ``chunk_steps`` = M, which records every step as the Repeat-RNN does.
* ``text_act_over_none``: the LM (LSTM 256, 100-byte windows, batch 16) with N
  forced to 1 (halting bias +30) / the no-ACT LM, both at the config's
  defaults (no rematerialisation). ``text_n15_act_over_none``: the same with
  halting bias 4.6, just above logit(1 - epsilon) = 4.595, so that about half
  the bytes take a second ponder step (N ~ 1.5) / the same no-ACT LM.
* ``startup_s``, ``startup_cached_s``: ``python -m launch.train`` from process
  start to its first progress line (after the first training step), with an
  empty and then a warm compilation cache; medians over ``--startup_pairs``
  pairs, each with a cache of its own; ``startup_cached_over_uncached``: the
  median of the pairs' ratios.

Each ratio is the median over rounds of the ratio of its two terms measured
one right after the other (the machine is shared and its load drifts).

  PYTHONPATH=. python benchmarks/train_loop.py --json   # table, then one JSON line
  PYTHONPATH=. python benchmarks/train_loop.py --json --text_only   # the LM's ratios alone

Compare the ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
from flax import nnx

import timing  # benchmarks/timing.py, beside this script
from launch.train import use_compilation_cache
from tasks import networks, train, training_step
from tasks.configs import parity
from tasks.configs import text as text_config
from tasks.registry import get_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FROZEN = 1e-9  # learning rate: the weights do not move, so neither does N


def _parity(num_steps: int, variant: str = "first_k", **overrides):
  config = parity.get_config(variant)
  config.update({"learning_rate": FROZEN, "num_steps": num_steps, "log_every": num_steps // 4,
                 "eval_every": 10 * num_steps, "checkpoint_every": 10 * num_steps,
                 "eval_batches": 1, "eval_batch_size": 128, "figure_examples": 0, "plot": False,
                 **overrides})
  return config


def _text(num_steps: int, **overrides):
  config = text_config.get_config("default")
  config.task_options.window = 100
  config.update({"learning_rate": FROZEN, "num_steps": num_steps, "log_every": num_steps // 4,
                 "eval_every": 10 * num_steps, "checkpoint_every": 10 * num_steps,
                 "eval_batches": 1, "eval_batch_size": 16, "figure_examples": 0, "plot": False,
                 **overrides})
  return config


def loop_seconds_per_step(config) -> tuple[float, float]:
  """The loop's median seconds per step over its progress intervals (the first, which
  may still warm up, left out), and the mean N, of one run in a fresh workdir."""
  with tempfile.TemporaryDirectory() as workdir:
    train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      rows = [json.loads(line) for line in f]
  rows = [r for r in rows if r["split"] == "train"][1:]
  return (statistics.median(1 / r["steps_per_second"] for r in rows),
          statistics.mean(r["mean_steps"] for r in rows))


def training_loss(config, with_metrics: bool = False):
  """The training loss of one network of ``config`` as a function of its parameters and a
  batch (with its metrics if ``with_metrics``), and those parameters and one batch."""
  task = get_task(config.task)
  model = networks.build_model(config, task)
  graphdef, params = nnx.split(model)
  batch = jax.device_put(jax.device_get(task.source(config).train(0)))

  def loss(params, batch):
    value = training_step.loss_fn(nnx.merge(graphdef, params), batch, config.tau,
                           task.metric)
    return value if with_metrics else value[0]

  return loss, (params, batch)


def bare_value_and_grad(config):
  """The jitted value-and-grad of the training loss of one network on one batch, and its args."""
  loss, args = training_loss(config)
  return jax.jit(jax.value_and_grad(loss)), args


def startup_seconds(cache: str, workdir: str) -> float:
  """Seconds from starting ``launch.train`` (parity first_k) to its first progress line."""
  command = [sys.executable, "-m", "launch.train", "--config=tasks/configs/parity.py:first_k",
             f"--workdir={workdir}", f"--compilation_cache={cache}", "--config.num_steps=1",
             "--config.log_every=1", "--config.eval_batches=1", "--config.figure_examples=0",
             "--config.plot=False"]
  start = time.perf_counter()
  proc = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True,
                          stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": REPO})
  for line in proc.stderr:
    if "step 1/1 |" in line:
      seconds = time.perf_counter() - start
      break
  else:
    raise RuntimeError(f"launch.train ended without a progress line (exit {proc.wait()})")
  proc.kill()
  proc.wait()
  return seconds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json", action="store_true", help="end with one JSON line")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--startup_pairs", type=int, default=3,
                      help="start-ups with an empty, then a warm compilation cache")
  parser.add_argument("--text_only", action="store_true",
                      help="only the LM's loops and ratios (a few minutes)")
  args = parser.parse_args()
  cache = tempfile.TemporaryDirectory()
  use_compilation_cache(cache.name)  # the rounds after the first do not compile again

  loops = {
      "parity_act": _parity(2000),
      "parity_random": _parity(2000, "default"),
      "parity_repeat3": _parity(2000, mode="repeat", repeats=3),
      "parity_none": _parity(4000, mode="none"),
      "parity_cap_act": _parity(40, halting_bias=-30.0),
      "parity_cap_repeat": _parity(40, mode="repeat", repeats=100),
      "parity_cap_full_record": _parity(40, halting_bias=-30.0, chunk_steps=100),
      "text_act": _text(80, halting_bias=30.0),
      "text_none": _text(80, mode="none"),
      "text_n15_act": _text(80, halting_bias=4.6),
  }
  if args.text_only:
    loops = {name: config for name, config in loops.items() if name.startswith("text")}
  grads = {f"{name}_grad": bare_value_and_grad(loops[name])
           for name in ("parity_act", "parity_none") if name in loops}
  samples = {name: [] for name in (*loops, *grads)}
  steps = {}
  for _ in range(args.rounds):  # each ratio's two terms are measured one after the other
    for name, config in loops.items():
      seconds, steps[name] = loop_seconds_per_step(config)
      samples[name].append(seconds)
      if f"{name}_grad" in grads:
        fn, fn_args = grads[f"{name}_grad"]
        samples[f"{name}_grad"].append(timing.median_seconds({name: fn}, fn_args, 300)[name])
  ms = {name: 1e3 * statistics.median(times) for name, times in samples.items()}
  ratio = lambda a, b: statistics.median(x / y for x, y in zip(samples[a], samples[b]))

  pairs = []  # (empty cache, warm cache) seconds
  for _ in range(0 if args.text_only else args.startup_pairs):
    with tempfile.TemporaryDirectory() as tmp:
      cache_dir = os.path.join(tmp, "cache")
      pairs.append((startup_seconds(cache_dir, os.path.join(tmp, "a")),
                    startup_seconds(cache_dir, os.path.join(tmp, "b"))))

  print(f"{'variant':>20s} {'ms/step':>9s} {'N':>6s}")
  for name, value in ms.items():
    print(f"{name:>20s} {value:9.3f} {steps.get(name, float('nan')):6.2f}")
  result = {
      "text_act_over_none": ratio("text_act", "text_none"),
      "text_n15_act_over_none": ratio("text_n15_act", "text_none"),
      "text_act_mean_n": steps["text_act"], "text_n15_act_mean_n": steps["text_n15_act"],
      "ms_per_step": ms, "rounds": args.rounds, "backend": jax.default_backend(),
  }
  if not args.text_only:
    result.update({
        "parity_loop_over_grad": ratio("parity_act", "parity_act_grad"),
        "parity_random_over_first_k": ratio("parity_random", "parity_act"),
        "parity_act_over_repeat": ratio("parity_act", "parity_repeat3"),
        "parity_cap_act_over_repeat": ratio("parity_cap_act", "parity_cap_repeat"),
        "parity_cap_full_record_over_repeat": ratio("parity_cap_full_record",
                                                    "parity_cap_repeat"),
        "none_loop_over_grad": ratio("parity_none", "parity_none_grad"),
        "startup_s": statistics.median(p[0] for p in pairs),
        "startup_cached_s": statistics.median(p[1] for p in pairs),
        "startup_cached_over_uncached": statistics.median(p[1] / p[0] for p in pairs),
        "parity_act_steps_per_s": 1e3 / ms["parity_act"],
        "parity_act_mean_n": steps["parity_act"], "parity_cap_mean_n": steps["parity_cap_act"],
    })
  for key, value in result.items():
    if key not in ("ms_per_step",):
      print(f"{key:>28s} {value:.3f}" if isinstance(value, float) else f"{key:>28s} {value}")
  if args.json:
    print(json.dumps(result))


if __name__ == "__main__":
  main()
