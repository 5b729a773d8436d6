"""Plots of a training run: learning curves and error / ponder by difficulty."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position


_LABELS = {"sequence_error": "sequence error", "bits_per_character": "bits per character"}


def plot_run(workdir: str) -> str:
  """Writes ``workdir/plots.png`` from ``metrics.jsonl`` and ``results.json``.

  Panels: the task metric (sequence error, or bits per character for text)
  over training, N and rho over training, and the metric and N by difficulty:
  on the paper's difficulty-figure examples if the run has them
  (``config.figure_examples``), else on the held-out stream (for text: by
  input character class); and for the sequence tasks, what the halting unit did
  over training (:func:`_plot_halting`).
  """
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  metric = results.get("metric", "sequence_error")
  label = _LABELS[metric]
  halting = [r for r in rows if r["split"] == "eval" and "one_step_share" in r]
  fig, axes = plt.subplots(1, 4 if halting else 3, figsize=(20 if halting else 15, 4))
  for split, style in (("train", "-"), ("eval", "o-")):
    points = [r for r in rows if r["split"] == split and metric in r]
    steps = [r["step"] for r in points]
    axes[0].plot(steps, [r[metric] for r in points], style, label=f"{split} {label}")
    axes[1].plot(steps, [r["mean_steps"] for r in points], style, label=f"{split} N")
    axes[1].plot(steps, [r["mean_ponder"] for r in points], style, label=f"{split} rho")
  seen = [r for r in rows if "train_bits_per_character" in r]  # text: eval on train bytes
  if seen:
    axes[0].plot([r["step"] for r in seen], [r["train_bits_per_character"] for r in seen], "s--",
                 label="eval on train bytes")
  axes[0].set(xlabel="step", ylabel=label, ylim=(0, None))
  axes[1].set(xlabel="step", ylabel="per input step")
  by_difficulty = results.get("figure", results)  # the figure's examples, if the run has them
  table = list(by_difficulty["by_difficulty"].items())
  numeric = metric == "sequence_error"  # text: character classes, drawn as categories
  if numeric:
    table.sort(key=lambda kv: int(kv[0]))
  x = [int(d) for d, _ in table] if numeric else list(range(len(table)))
  axes[2].plot(x, [row[metric] for _, row in table], "o-", color="C3", label=label)
  twin = axes[2].twinx()
  twin.plot(x, [row["mean_steps"] for _, row in table], "s-", color="C0", label="mean N")
  if not numeric:
    axes[2].set_xticks(x, [d for d, _ in table])
  axes[2].set(xlabel=by_difficulty["difficulty"], ylabel=label, ylim=(0, None))
  twin.set_ylabel("mean N (updates per input)")
  axes[2].legend(loc="upper left")
  twin.legend(loc="upper right")
  for ax in axes[:2]:
    ax.legend()
  if halting:
    _plot_halting(axes[3], halting)
  setting = f", tau={results['tau']:g}" if "tau" in results else ""  # ACT's time penalty only
  fig.suptitle(f"{results['task']} ({results['mode']}{setting}): "
               f"eval {label} {results[metric]:.3f} at step {results['step']}")
  fig.tight_layout()
  path = os.path.join(workdir, "plots.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def _plot_halting(ax, evaluations: list[dict]) -> None:
  """The held-out share of one-step sequences and mean first weight p^1, with the 90th
  percentile and maximum of the sequences' largest N on a second axis."""
  steps = [r["step"] for r in evaluations]
  ax.plot(steps, [r["one_step_share"] for r in evaluations], "o-", label="share with N = 1")
  ax.plot(steps, [r["mean_first_weight"] for r in evaluations], "o-", label="mean p^1 (h^1)")
  ax.set(xlabel="step", ylabel="share / weight", ylim=(0, 1.05), title="halting unit (eval)")
  twin = ax.twinx()
  twin.plot(steps, [r["max_steps_p90"] for r in evaluations], "s--", color="C3",
            label="largest N, 90th pct")
  twin.plot(steps, [r["max_steps_max"] for r in evaluations], "^:", color="C4",
            label="largest N, max")
  twin.set(ylabel="N", ylim=(0, None))
  ax.legend(loc="upper left", fontsize=8)
  twin.legend(loc="upper right", fontsize=8)


def run_label(config: dict) -> str:
  """A run's halting rule and its setting, from its ``config.json``: ``PonderNet (lambda_p =
  0.2, beta = 0.01)``, ``ACT (tau = 0.001)`` or ``no ACT``; ``, clipped to 1`` added where the
  gradient's norm was clipped, and ``, seed 1`` for a seed other than 0."""
  clip = config.get("grad_clip_norm", 0.0)
  suffix = (f", clipped to {clip:g}" if clip else "") + (
      f", seed {config['seed']}" if config.get("seed", 0) else "")
  if config["mode"] == "none":
    return f"no ACT{suffix}"
  if config["mode"] == "repeat":
    return f"Repeat-RNN x{config['repeats']}{suffix}"
  if config.get("halting") == "pondernet":
    return f"PonderNet (lambda_p = {config['lambda_p']:g}, beta = {config['beta']:g}{suffix})"
  return f"ACT (tau = {config['tau']:g}{suffix})"


def load_record(workdir: str) -> tuple[dict, list[dict]]:
  """A run's ``config.json`` and the rows of its ``metrics.jsonl``.

  Raises:
    ValueError: ``workdir`` lacks either file, or its metrics have no held-out evaluation.
  """
  if not all(os.path.isfile(os.path.join(workdir, name))
             for name in ("config.json", "metrics.jsonl")):
    raise ValueError(f"{workdir!r} is not a run: it needs config.json and metrics.jsonl")
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    logged = [json.loads(line) for line in f]
  if not any(r["split"] == "eval" for r in logged):
    raise ValueError(f"{workdir!r} has no held-out evaluation in metrics.jsonl")
  return config, logged


def plot_runs(records: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
              path: str, title: str = "") -> str:
  """Writes ``path``: the held-out curves of several runs of one task, side by side.

  ``records`` are the runs' ``(config, metrics rows)``, as :func:`load_record` gives them.

  Left, the task metric of each held-out evaluation in ``metrics.jsonl``: a
  PonderNet run's at its sampled halting step where it was scored so
  (``tasks/evaluation.py``), else of the mean field; and, thin, that of the
  training batches (the mean field's, on the training distribution). Middle, the steps per input
  step: ``N`` (solid; PonderNet's training unroll) and, for PonderNet,
  ``sum_n n p_n`` (dashed). Right, where any run logged it, the gradient's global norm before
  clipping (each training row's mean over its updates), log scale, with each clip norm of the
  runs dotted. Each run is labelled by :func:`run_label`.
  """
  norms = any("grad_norm" in r for _, logged in records for r in logged)
  fig, axes = plt.subplots(1, 3 if norms else 2, figsize=(19 if norms else 13, 4.5))
  metric = "sequence_error"
  for i, (config, logged) in enumerate(records):
    rows = [r for r in logged if r["split"] == "eval"]
    metric = next(m for m in _LABELS if m in rows[0])
    steps = [r["step"] for r in rows]
    label, color = run_label(config), f"C{i}"
    axes[0].plot(steps, [r[metric] for r in rows], "o-", ms=3, color=color, label=label)
    train = [(r["step"], r[metric]) for r in logged if r["split"] == "train" and metric in r]
    if train:
      axes[0].plot(*zip(*train), "-", lw=0.8, alpha=0.5, color=color,
                   label=f"{label}: training batches")
    axes[1].plot(steps, [r["mean_steps"] for r in rows], "-", color=color, label=f"{label}: N")
    expected = [(r["step"], r["expected_steps"]) for r in rows if "expected_steps" in r]
    if expected:
      axes[1].plot(*zip(*expected), "s--", ms=3, color=color, label=f"{label}: sum_n n p_n")
    grad_norms = [(r["step"], r["grad_norm"]) for r in logged if "grad_norm" in r]
    if grad_norms:
      axes[2].plot(*zip(*grad_norms), "-", lw=0.8, color=color, label=label)
  axes[0].set(xlabel="update", ylabel=f"{_LABELS[metric]}: held-out (dots), training (thin)",
              ylim=(0, None))
  axes[1].set(xlabel="update", ylabel="steps per input step", ylim=(0, None))
  if norms:
    for clip in sorted({c["grad_clip_norm"] for c, _ in records if c.get("grad_clip_norm")}):
      axes[2].axhline(clip, ls=":", color="gray", label=f"clip norm {clip:g}")
    axes[2].set(xlabel="update", ylabel="gradient norm before clipping (row mean)", yscale="log")
  for ax in axes:
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
