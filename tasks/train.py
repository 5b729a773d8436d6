"""One training loop for every task: ``train_and_evaluate(config, workdir)``.

Adam on the task loss plus ``tau * P`` (spec section 9 item 4: the task loss
summed over a sequence's target steps and slots, the ponder cost summed over
its input steps, both averaged over the batch), a jit-compiled step, periodic
evaluation on a held-out stream, progress lines, metrics as JSONL and
TensorBoard events, orbax checkpoints that a rerun of the same command resumes
from, and ``results.json`` at the end.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

import act_jax
from tasks import models
from tasks.data import Batch, batch_stream_key
from tasks.registry import Task, get_task

# Fields a resumed run may change; every other field must match the checkpoint's.
RESUMABLE_CHANGES = frozenset(
    {"num_steps", "time_budget_minutes", "log_every", "eval_every", "eval_batches",
     "checkpoint_every", "plot"})


class ConfigError(ValueError):
  """The config, or its match with a workdir's checkpoint, is invalid."""


def _positive_int(config: ml_collections.ConfigDict, name: str) -> None:
  value = config[name]
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"config.{name} must be a positive integer, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> Task:
  """Checks ``config`` before anything is compiled; returns its task."""
  try:
    task = get_task(config.task)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  for name in ("num_steps", "batch_size", "eval_batch_size", "eval_batches", "log_every",
               "eval_every", "checkpoint_every", "hidden_size"):
    _positive_int(config, name)
  budget = config.time_budget_minutes
  if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
    raise ConfigError(f"config.time_budget_minutes must be >= 0 (0: none), got {budget!r}")
  if not isinstance(config.learning_rate, (int, float)) or not config.learning_rate > 0:
    raise ConfigError(f"config.learning_rate must be > 0, got {config.learning_rate!r}")
  try:
    act_jax.check_time_penalty(config.tau)
    act_jax.check_ponder_config(config.max_steps, config.epsilon, config.backend)
  except ValueError as e:
    raise ConfigError(f"config: {e}") from e
  if config.mode not in models.MODES:
    raise ConfigError(f"config.mode must be one of {models.MODES}, got {config.mode!r}")
  if config.cell not in models.CELLS:
    raise ConfigError(f"config.cell must be one of {sorted(models.CELLS)}, got {config.cell!r}")
  if config.mode == "repeat":
    _positive_int(config, "repeats")
  try:  # the generator checks its own options, on a one-example batch
    jax.eval_shape(lambda k: task.batch(k, 1, config.task_options), jax.random.PRNGKey(0))
  except ValueError as e:
    raise ConfigError(f"config.task_options: {e}") from e
  return task


def _check_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, ".write_test")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"workdir {workdir!r} is not writable: {e}") from e


def _check_same_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Raises ConfigError if ``workdir`` holds a run of a different config."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json())
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    changed = sorted(k for k in set(saved) | set(current)
                     if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k))
    if changed:
      detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
      raise ConfigError(
          f"workdir {workdir!r} holds a run with another config ({detail}); "
          "use a new workdir or the same config")
  with open(path, "w") as f:
    json.dump(current, f, indent=2, sort_keys=True)


def build_model(config: ml_collections.ConfigDict, task: Task) -> models.TaskModel:
  num_classes = task.num_classes(config.task_options)
  per_slot = 1 if num_classes == 2 else num_classes  # binary: one sigmoid unit
  return models.TaskModel(
      input_size=task.input_size(config.task_options), hidden_size=config.hidden_size,
      output_size=task.target_slots * per_slot, cell=config.cell, mode=config.mode,
      repeats=config.repeats, max_steps=config.max_steps, epsilon=config.epsilon,
      halting_bias=config.halting_bias, backend=config.backend,
      rngs=nnx.Rngs(config.seed))


def _task_terms(logits: jax.Array, batch: Batch):
  """Per-example task loss (summed over target steps and slots) and errors."""
  b, t, slots = batch.targets.shape
  logits = logits.reshape(b, t, slots, -1)
  if logits.shape[-1] == 1:  # binary: sigmoid unit, binary cross-entropy
    logit = logits[..., 0]
    losses = optax.sigmoid_binary_cross_entropy(logit, batch.targets.astype(jnp.float32))
    predictions = (logit > 0).astype(jnp.int32)
  else:
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch.targets)
    predictions = jnp.argmax(logits, axis=-1)
  on_target = batch.target_mask[..., None]
  loss = jnp.sum(jnp.where(on_target, losses, 0.0), axis=(1, 2))
  wrong = jnp.any(on_target & (predictions != batch.targets), axis=(1, 2))
  return loss, wrong


def _ponder_terms(stats: act_jax.PonderStats, batch: Batch):
  """Per-example mean N and mean rho over the valid input steps."""
  length = jnp.maximum(jnp.sum(batch.input_mask, axis=1), 1)
  mean = lambda x: jnp.sum(jnp.where(batch.input_mask, x, 0.0), axis=1) / length
  return mean(stats.steps.astype(jnp.float32)), mean(stats.ponder_cost)


def _loss_fn(model: models.TaskModel, batch: Batch, tau: float):
  out = model(batch.inputs, batch.input_mask)
  task_loss, wrong = _task_terms(out.logits, batch)
  loss = jnp.mean(task_loss)
  if model.mode == "act":
    loss = loss + act_jax.ponder_penalty(out.stats.ponder_cost, tau, batch.input_mask)
  steps, ponder = _ponder_terms(out.stats, batch)
  return loss, {"task_loss": jnp.mean(task_loss), "sequence_error": jnp.mean(wrong),
                "mean_steps": jnp.mean(steps), "mean_ponder": jnp.mean(ponder)}


@nnx.jit(static_argnames=("tau",))
def _train_step(model, optimizer, batch, tau):
  (loss, metrics), grads = nnx.value_and_grad(_loss_fn, has_aux=True)(model, batch, tau)
  optimizer.update(model, grads)
  return {"loss": loss, **metrics}


@nnx.jit
def _eval_step(model, batch):
  out = model(batch.inputs, batch.input_mask)
  _, wrong = _task_terms(out.logits, batch)
  steps, ponder = _ponder_terms(out.stats, batch)
  return {"wrong": wrong, "steps": steps, "ponder": ponder, "difficulty": batch.difficulty}


@functools.lru_cache(maxsize=None)
def _batch_fn(task_name: str, batch_size: int, options: tuple[tuple[str, Any], ...]):
  """The jitted ``key -> Batch`` of a task, built once per task, size and options."""
  task = get_task(task_name)
  return jax.jit(lambda key: task.batch(key, batch_size, dict(options)))


def _batches(config: ml_collections.ConfigDict, batch_size: int):
  return _batch_fn(config.task, batch_size, tuple(sorted(config.task_options.items())))


def evaluate(model, config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Sequence error, mean N and mean rho on held-out batches, and by difficulty."""
  generate = _batches(config, config.eval_batch_size)
  parts = [jax.device_get(_eval_step(model, generate(batch_stream_key(config.seed, i, "eval"))))
           for i in range(config.eval_batches)]
  per_example = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  by_difficulty = {}
  for d in np.unique(per_example["difficulty"]):
    sel = per_example["difficulty"] == d
    by_difficulty[int(d)] = {
        "count": int(sel.sum()),
        "sequence_error": float(per_example["wrong"][sel].mean()),
        "mean_steps": float(per_example["steps"][sel].mean()),
        "mean_ponder": float(per_example["ponder"][sel].mean()),
    }
  return {"sequence_error": float(per_example["wrong"].mean()),
          "mean_steps": float(per_example["steps"].mean()),
          "mean_ponder": float(per_example["ponder"].mean()),
          "by_difficulty": by_difficulty}


class _MetricWriter:
  """Appends metrics to ``metrics.jsonl`` and TensorBoard event files."""

  def __init__(self, workdir: str):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
    scalars = {k: float(v) for k, v in metrics.items() if not isinstance(v, Mapping)}
    self._jsonl.write(json.dumps({"step": step, "split": split, **scalars}) + "\n")
    self._jsonl.flush()
    for k, v in scalars.items():
      self._tb.add_scalar(f"{split}/{k}", v, step)
    self._tb.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._tb.close()


def _checkpoint_state(model, optimizer) -> dict[str, Any]:
  return {"model": nnx.to_pure_dict(nnx.state(model)),
          "optimizer": nnx.to_pure_dict(nnx.state(optimizer))}


def _restore(manager: ocp.CheckpointManager, model, optimizer, workdir: str) -> int:
  """Restores the latest checkpoint into model and optimizer; returns its step."""
  step = manager.latest_step()
  if step is None:
    return 0
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _checkpoint_state(model, optimizer))
  try:
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as e:  # orbax raises many types for unreadable or mismatched files
    raise ConfigError(
        f"the checkpoint at step {step} in {workdir!r} is corrupt or does not match the "
        f"config: {type(e).__name__}: {e}") from e
  for name, obj in (("model", model), ("optimizer", optimizer)):
    state = nnx.state(obj)
    nnx.replace_by_pure_dict(state, restored[name])
    nnx.update(obj, state)
  return step


def _format_seconds(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains ``config``'s task model in ``workdir``, resuming from its checkpoint.

  Args:
    config: a config from ``tasks/configs`` (see ``tasks/configs/common.py``).
    workdir: where checkpoints, ``metrics.jsonl``, TensorBoard events,
      ``config.json`` and ``results.json`` go.

  Returns:
    The final results (also written to ``workdir/results.json``).

  Raises:
    ConfigError: for an invalid config, an unwritable workdir, or a workdir
      whose checkpoint is of another config or unreadable.
  """
  task = validate(config)
  workdir = os.path.abspath(workdir)
  _check_workdir(workdir)
  _check_same_config(config, workdir)

  model = build_model(config, task)
  optimizer = nnx.Optimizer(model, optax.adam(config.learning_rate), wrt=nnx.Param)
  manager = ocp.CheckpointManager(
      os.path.join(workdir, "checkpoints"),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
  step = _restore(manager, model, optimizer, workdir)
  if step:
    logging.info("resumed from the checkpoint at step %d", step)
  writer = _MetricWriter(workdir)
  generate = _batches(config, config.batch_size)
  tau = float(config.tau)

  def save(step: int) -> None:
    manager.save(step, args=ocp.args.StandardSave(_checkpoint_state(model, optimizer)))

  start_step, start_time, window = step, time.time(), []
  out_of_time = lambda: (config.time_budget_minutes > 0
                         and time.time() - start_time > 60 * config.time_budget_minutes)
  try:
    while step < config.num_steps and not out_of_time():
      metrics = _train_step(model, optimizer, generate(
          batch_stream_key(config.seed, step, "train")), tau)
      step += 1
      window.append(metrics)
      if step % config.log_every == 0 or step == config.num_steps or out_of_time():
        averaged = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
        window = []
        rate = (step - start_step) / max(time.time() - start_time, 1e-9)
        writer.write(step, "train", {**averaged, "steps_per_second": rate})
        logging.info(
            "step %d/%d | %.1f steps/s | loss %.4f | error %.3f | N %.2f | rho %.2f | ETA %s",
            step, config.num_steps, rate, averaged["loss"], averaged["sequence_error"],
            averaged["mean_steps"], averaged["mean_ponder"],
            _format_seconds((config.num_steps - step) / rate))
      if step % config.eval_every == 0 and step < config.num_steps:
        result = evaluate(model, config)
        writer.write(step, "eval", result)
        logging.info("eval at step %d | sequence error %.4f | N %.2f | rho %.2f", step,
                     result["sequence_error"], result["mean_steps"], result["mean_ponder"])
      if step % config.checkpoint_every == 0:
        save(step)
  except KeyboardInterrupt:
    logging.info("interrupted: saving a checkpoint at step %d", step)
    save(step)
    manager.wait_until_finished()
    raise
  save(step)
  manager.wait_until_finished()
  manager.close()

  result = evaluate(model, config)
  writer.write(step, "eval", result)
  writer.close()
  results = {"task": config.task, "step": step, "tau": tau, "act": config.mode == "act",
             "mode": config.mode, "difficulty": task.difficulty, **result}
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  if config.plot:
    from tasks import plots  # pylint: disable=g-import-not-at-top
    plots.plot_run(workdir)
  return results


def summary_table(results: Mapping[str, Any]) -> str:
  """A readable multi-line summary of ``results.json``."""
  lines = [f"{results['task']} ({results['mode']}, tau={results['tau']:g}) after "
           f"{results['step']} steps: sequence error {results['sequence_error']:.4f}, "
           f"mean N {results['mean_steps']:.2f}, mean rho {results['mean_ponder']:.2f}",
           f"  {results['difficulty']:>24s} {'count':>6s} {'error':>7s} {'N':>6s} {'rho':>6s}"]
  for d, row in sorted(results["by_difficulty"].items(), key=lambda kv: int(kv[0])):
    lines.append(f"  {int(d):>24d} {row['count']:>6d} {row['sequence_error']:>7.3f} "
                 f"{row['mean_steps']:>6.2f} {row['mean_ponder']:>6.2f}")
  return "\n".join(lines)
