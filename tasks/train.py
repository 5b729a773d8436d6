"""One training loop for every task: ``train_and_evaluate(config, workdir)``.

Adam on the task loss plus ``tau * P`` (spec section 9 item 4: the task loss
summed over a sequence's target steps and slots, the ponder cost summed over
its input steps, both averaged over the batch), a jit-compiled step, periodic
evaluation on a held-out stream, progress lines, metrics as JSONL and
TensorBoard events, orbax checkpoints that a rerun of the same command resumes
from, and ``results.json`` at the end.
"""

from __future__ import annotations

import json
import os
import signal
import threading
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
from tasks.data import Batch, text
from tasks.registry import BITS_PER_CHARACTER, BatchSource, Task, get_task

# Fields a resumed run may change; every other field must match the checkpoint's.
RESUMABLE_CHANGES = frozenset(
    {"num_steps", "time_budget_minutes", "log_every", "eval_every", "eval_batches",
     "checkpoint_every", "plot"})


_SHORT_NAMES = {"sequence_error": "error", BITS_PER_CHARACTER: "bpc"}


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
  try:
    task.check_options(config.task_options.to_dict())
  except (ValueError, OSError) as e:  # OSError: a missing or unreadable data file
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


def _target_terms(logits: jax.Array, batch: Batch):
  """Per-target losses (nats) and mistakes ``[B, T, slots]``, zero off target."""
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
  return jnp.where(on_target, losses, 0.0), on_target & (predictions != batch.targets)


def _per_step_ponder(stats: act_jax.PonderStats):
  return stats.steps.astype(jnp.float32), stats.ponder_cost


def _ponder_terms(stats: act_jax.PonderStats, batch: Batch):
  """Per-example mean N and mean rho over the valid input steps."""
  length = jnp.maximum(jnp.sum(batch.input_mask, axis=1), 1)
  mean = lambda x: jnp.sum(jnp.where(batch.input_mask, x, 0.0), axis=1) / length
  return tuple(mean(x) for x in _per_step_ponder(stats))


def _loss_fn(model: models.TaskModel, batch: Batch, tau: float, metric: str):
  out = model(batch.inputs, batch.input_mask)
  losses, wrong = _target_terms(out.logits, batch)
  task_loss = jnp.sum(losses, axis=(1, 2))
  loss = jnp.mean(task_loss)
  if model.mode == "act":
    loss = loss + act_jax.ponder_penalty(out.stats.ponder_cost, tau, batch.input_mask)
  steps, ponder = _ponder_terms(out.stats, batch)
  metrics = {"task_loss": jnp.mean(task_loss), "mean_steps": jnp.mean(steps),
             "mean_ponder": jnp.mean(ponder)}
  if metric == BITS_PER_CHARACTER:
    metrics[metric] = jnp.sum(losses) / jnp.sum(batch.target_mask) / jnp.log(2.0)
  else:
    metrics[metric] = jnp.mean(jnp.any(wrong, axis=(1, 2)))
  return loss, metrics


@nnx.jit(static_argnames=("tau", "metric"))
def _train_step(model, optimizer, batch, tau, metric):
  grad_fn = nnx.value_and_grad(_loss_fn, has_aux=True)
  (loss, metrics), grads = grad_fn(model, batch, tau, metric)
  optimizer.update(model, grads)
  return {"loss": loss, **metrics}


@nnx.jit
def _sequence_eval_step(model, batch):
  out = model(batch.inputs, batch.input_mask)
  _, wrong = _target_terms(out.logits, batch)
  steps, ponder = _ponder_terms(out.stats, batch)
  return {"wrong": jnp.any(wrong, axis=(1, 2)), "steps": steps, "ponder": ponder,
          "difficulty": batch.difficulty}


@nnx.jit
def _text_eval_step(model, batch):
  out = model(batch.inputs, batch.input_mask)
  losses, wrong = _target_terms(out.logits, batch)
  steps, ponder = _per_step_ponder(out.stats)
  return {"loss": losses[..., 0], "wrong": wrong[..., 0], "steps": steps, "ponder": ponder}


def _evaluate_sequences(model, batches) -> dict[str, Any]:
  """Sequence error, mean N and mean rho per example, and by difficulty."""
  parts = [jax.device_get(_sequence_eval_step(model, batch)) for batch in batches]
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


def _evaluate_characters(model, batches) -> dict[str, Any]:
  """Bits per character, error rate, N and rho per predicted byte, and by class.

  Each row of ``by_difficulty`` holds the bytes whose *input* character is of
  that class (the step that reads a space, say, predicts the byte after it).
  """
  parts = []
  for batch in batches:
    out = jax.device_get(_text_eval_step(model, batch))
    mask = np.asarray(batch.target_mask)
    parts.append({**{k: v[mask] for k, v in out.items()},
                  "class": text.character_class(np.asarray(batch.inputs)[mask])})
  per_char = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  summary = lambda sel: {
      "count": int(sel.sum()),
      "bits_per_character": float(per_char["loss"][sel].mean() / np.log(2)),
      "error_rate": float(per_char["wrong"][sel].mean()),
      "mean_steps": float(per_char["steps"][sel].mean()),
      "mean_ponder": float(per_char["ponder"][sel].mean())}
  by_class = {name: summary(per_char["class"] == i)
              for i, name in enumerate(text.CHARACTER_CLASSES) if np.any(per_char["class"] == i)}
  return {**summary(np.ones(per_char["loss"].shape, bool)), "by_difficulty": by_class}


def evaluate(model, config: ml_collections.ConfigDict,
             source: BatchSource | None = None) -> dict[str, Any]:
  """Evaluates ``model`` on up to ``config.eval_batches`` held-out batches.

  Synthetic tasks: sequence error, mean N and mean rho, and by difficulty.
  Text: bits per character, error rate, mean N and rho per byte, by input
  character class, and ``train_bits_per_character`` on as many bytes from the
  start of the train split. ``count`` (text) is the number of bytes scored.
  """
  task = get_task(config.task)
  source = source or task.source(config)
  if task.metric == BITS_PER_CHARACTER:
    held_out = _evaluate_characters(model, source.held_out(config.eval_batches))
    seen = _evaluate_characters(model, source.held_out(config.eval_batches, split="train"))
    return {**held_out, "train_bits_per_character": seen["bits_per_character"]}
  return _evaluate_sequences(model, source.held_out(config.eval_batches))


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


def _initial_state(config: ml_collections.ConfigDict, task: Task):
  """A freshly initialised model and its Adam optimizer."""
  model = build_model(config, task)
  return model, nnx.Optimizer(model, optax.adam(config.learning_rate), wrt=nnx.Param)


def load_trained_model(workdir: str) -> tuple[models.TaskModel, ml_collections.ConfigDict, int]:
  """The model of a training run's latest checkpoint, with its config and step.

  Raises:
    ConfigError: if ``workdir`` holds no run or no checkpoint, or the
      checkpoint is unreadable.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ConfigError(f"{workdir!r} holds no training run (no config.json)")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  model, optimizer = _initial_state(config, validate(config))
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  step = _restore(manager, model, optimizer, workdir)
  manager.close()
  if not step:
    raise ConfigError(f"{workdir!r} holds no checkpoint yet")
  return model, config, step


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


class _StopRequests:
  """SIGINT and SIGTERM as a request that the training loop reads between steps.

  The loop then stops after the current step, saves a checkpoint and raises
  KeyboardInterrupt, so that no signal lands inside a checkpoint save. A
  second SIGINT interrupts at once. Handlers are installed only in the main
  thread (the only one that receives signals) and restored on exit.
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.requested: str | None = None  # the name of the first signal received
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = signal.Signals(signum).name

  def __enter__(self) -> "_StopRequests":
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc_info) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)


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
    KeyboardInterrupt: after SIGINT (Ctrl-C) or SIGTERM (e.g. a cluster's
      preemption notice): training stops after the current step and saves a
      checkpoint first, so the same call resumes from there.
  """
  task = validate(config)
  workdir = os.path.abspath(workdir)
  _check_workdir(workdir)
  _check_same_config(config, workdir)

  model, optimizer = _initial_state(config, task)
  manager = ocp.CheckpointManager(
      os.path.join(workdir, "checkpoints"),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
  step = _restore(manager, model, optimizer, workdir)
  if step:
    logging.info("resumed from the checkpoint at step %d", step)
  writer = _MetricWriter(workdir)
  source = task.source(config)
  tau = float(config.tau)

  def save(step: int) -> None:
    manager.save(step, args=ocp.args.StandardSave(_checkpoint_state(model, optimizer)))

  start_step, start_time, window = step, time.time(), []
  out_of_time = lambda: (config.time_budget_minutes > 0
                         and time.time() - start_time > 60 * config.time_budget_minutes)
  with _StopRequests() as stop:
    while step < config.num_steps and not out_of_time() and not stop.requested:
      metrics = _train_step(model, optimizer, source.train(step), tau, task.metric)
      step += 1
      window.append(metrics)
      if step % config.log_every == 0 or step == config.num_steps or out_of_time():
        averaged = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
        window = []
        rate = (step - start_step) / max(time.time() - start_time, 1e-9)
        writer.write(step, "train", {**averaged, "steps_per_second": rate})
        logging.info(
            "step %d/%d | %.1f steps/s | loss %.4f | %s %.3f | N %.2f | rho %.2f | ETA %s",
            step, config.num_steps, rate, averaged["loss"], _SHORT_NAMES[task.metric],
            averaged[task.metric], averaged["mean_steps"], averaged["mean_ponder"],
            _format_seconds((config.num_steps - step) / rate))
      if step % config.eval_every == 0 and step < config.num_steps:
        result = evaluate(model, config, source)
        writer.write(step, "eval", result)
        logging.info("eval at step %d | %s %.4f | N %.2f | rho %.2f", step,
                     _SHORT_NAMES[task.metric], result[task.metric], result["mean_steps"],
                     result["mean_ponder"])
      if step % config.checkpoint_every == 0:
        save(step)
    save(step)
    manager.wait_until_finished()
    manager.close()
  if stop.requested:
    writer.close()
    logging.info("%s: stopped with a checkpoint at step %d", stop.requested, step)
    raise KeyboardInterrupt(stop.requested)

  result = evaluate(model, config, source)
  writer.write(step, "eval", result)
  writer.close()
  results = {"task": config.task, "step": step, "tau": tau, "act": config.mode == "act",
             "mode": config.mode, "metric": task.metric, "difficulty": task.difficulty,
             **result}
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  if config.plot:
    from tasks import plots  # pylint: disable=g-import-not-at-top
    plots.plot_run(workdir)
  return results


def summary_table(results: Mapping[str, Any]) -> str:
  """A readable multi-line summary of ``results.json``."""
  metric = results.get("metric", "sequence_error")
  head = (f"{results['task']} ({results['mode']}, tau={results['tau']:g}) after "
          f"{results['step']} steps: ")
  if metric == BITS_PER_CHARACTER:
    head += (f"held-out {results['bits_per_character']:.3f} bpc (train "
             f"{results['train_bits_per_character']:.3f}), ")
  else:
    head += f"sequence error {results['sequence_error']:.4f}, "
  lines = [head + f"mean N {results['mean_steps']:.2f}, mean rho {results['mean_ponder']:.2f}",
           f"  {results['difficulty']:>24s} {'count':>8s} {_SHORT_NAMES[metric]:>7s} "
           f"{'N':>6s} {'rho':>6s}"]
  rows = results["by_difficulty"].items()
  if metric != BITS_PER_CHARACTER:
    rows = sorted(rows, key=lambda kv: int(kv[0]))
  for d, row in rows:
    lines.append(f"  {d!s:>24s} {row['count']:>8d} {row[metric]:>7.3f} "
                 f"{row['mean_steps']:>6.2f} {row['mean_ponder']:>6.2f}")
  return "\n".join(lines)
