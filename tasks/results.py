"""A training run's results: ``results.json`` and the summary table the CLI prints.

``results.json`` holds the final held-out evaluation pooled over the networks
(for an ensemble, their means) and per network under ``networks``, and, if
configured, that of the paper's difficulty figure's examples under ``figure``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np
from jax.sharding import Mesh

from tasks import evaluation, networks
from tasks.metric_writer import strict_json
from tasks.registry import BITS_PER_CHARACTER, Task

# The headline metrics' names in progress lines and tables.
SHORT_NAMES = {"sequence_error": "error", BITS_PER_CHARACTER: "bpc"}


def figure_evaluation(config: ml_collections.ConfigDict, graphdefs: networks.GraphDefs,
                      state: networks.TrainState, mesh: Mesh) -> evaluation.Evaluation | None:
  """The networks' evaluation on the paper's difficulty-figure examples, if configured."""
  if not config.figure_examples:
    return None
  return evaluation.evaluate_figure(graphdefs.model, state.model, config, mesh)


def run_results(config: ml_collections.ConfigDict, task: Task, step: int, taus: Sequence[float],
                result: evaluation.Evaluation, figure: evaluation.Evaluation | None,
                solved_steps: Sequence[int | None]) -> dict[str, Any]:
  """``results.json``: the held-out stream's evaluation, pooled and per network, and
  under ``figure`` that of the difficulty figure's examples; ``tau`` (the mean, and
  each network's) for ACT only. With ``config.solved_at``
  set, ``solved_step`` is each network's (``tasks/solved.py``; None: not solved), the
  last of them at the top level (None unless every network was solved)."""
  with_figure = lambda summary, i: (
      {**summary, "figure": (figure.pooled if i is None else figure.networks[i])}
      if figure else summary)
  solved = lambda step: {"solved_step": step} if config.solved_at > 0 else {}
  act = config.mode == "act"
  uses_tau = act and config.halting == "act"  # no tau without ACT, none for PonderNet
  with_tau = lambda tau: {"tau": float(tau)} if uses_tau else {}
  pondernet_prior = ({"beta": config.beta, "lambda_p": config.lambda_p}
                     if config.halting == "pondernet" else {})
  return {"task": config.task, "step": step, **with_tau(np.mean(taus)), "act": act,
          "mode": config.mode, "halting": config.halting, **pondernet_prior,
          "metric": task.metric, "difficulty": task.difficulty,
          **solved(None if None in solved_steps else max(solved_steps)),
          **with_figure(result.pooled, None),
          "networks": [with_figure({"seed": config.seed + i, **with_tau(tau),
                                    **solved(solved_steps[i]), **network}, i)
                       for i, (tau, network) in enumerate(zip(taus, result.networks))]}


def pondernet_line(metrics: Mapping[str, Any]) -> str:
  """PonderNet's evaluation by its other rules (``tasks/evaluation.py``), or "" without them."""
  if "sequence_error_most_likely" in metrics:
    rules = (f"most likely step {metrics['sequence_error_most_likely']:.4f}, mean field "
             f"{metrics['sequence_error_mean_field']:.4f}")
  elif "bits_per_character_most_likely" in metrics:
    rules = (f"most likely step {metrics['bits_per_character_most_likely']:.3f} bpc, mean field "
             f"{metrics['bits_per_character_mean_field']:.3f} bpc")
  else:
    return ""
  return (f"{rules}; expected steps {metrics['expected_steps']:.2f}, sampled "
          f"{metrics['mean_sampled_steps']:.2f}, most likely {metrics['mean_most_likely_steps']:.2f}")


def _metric_line(metrics: Mapping[str, Any], metric: str) -> str:
  """The headline metric, mean N and mean rho of one result (PonderNet: and its other rules')."""
  other_rules = pondernet_line(metrics)
  sampled = " at a sampled step" if other_rules else ""
  if metric == BITS_PER_CHARACTER:
    head = (f"held-out {metrics['bits_per_character']:.3f} bpc{sampled} (train "
            f"{metrics['train_bits_per_character']:.3f}), ")
  else:
    head = f"sequence error{sampled} {metrics['sequence_error']:.4f}, "
  return (head + f"mean N {metrics['mean_steps']:.2f}, mean rho {metrics['mean_ponder']:.2f}"
          + (f"; {other_rules}" if other_rules else ""))


def _tau(results: Mapping[str, Any]) -> str:
  """``tau=...`` of an ACT run's (or network's) results; "" without ACT (no tau)."""
  return f"tau={results['tau']:g}" if "tau" in results else ""


def _listed(*parts: str) -> str:
  """The non-empty ``parts`` in parentheses, comma-separated."""
  return "(" + ", ".join(part for part in parts if part) + ")"


def summary_table(results: Mapping[str, Any]) -> str:
  """A readable multi-line summary of ``results.json``; one line per network of an ensemble.

  The table by difficulty is that of the difficulty figure's examples if the
  run has them (``figure``), else that of the held-out stream.
  """
  metric = results.get("metric", "sequence_error")
  members = results.get("networks", [])
  ensemble = len(members) > 1
  rule = (f"PonderNet, beta={results['beta']:g}, lambda_p={results['lambda_p']:g}"
          if results.get("halting") == "pondernet" else "")
  setting = f"{len(members)} networks, mean" if ensemble else (rule or _tau(results))
  lines = [f"{results['task']} {_listed(results['mode'], setting, rule if ensemble else '')} "
           f"after {results['step']} steps, held-out stream: " + _metric_line(results, metric)]
  if "solved_step" in results:
    solved_step = results["solved_step"]
    lines.append(f"  solved at step {solved_step}" if solved_step is not None else
                 f"  not solved in {results['step']} steps")
  if results.get("unscored_sequences"):
    lines.append(f"  ({results['unscored_sequences']} sequences without a target are not "
                 "counted)")
  if ensemble:
    for i, network in enumerate(members):
      setting = _listed(f"seed {network['seed']}", _tau(network))
      lines.append(f"  network {i} {setting}: {_metric_line(network, metric)}")
  table, difficulty = results, results["difficulty"]
  if "figure" in results:
    table, difficulty = results["figure"], results["figure"]["difficulty"]
    lines.append(f"the paper's difficulty figure, {table['examples_per_level']} examples per "
                 f"level: {_metric_line(table, metric)}")
  width = max(24, len(difficulty))
  lines.append(f"  {difficulty:>{width}s} {'count':>8s} {SHORT_NAMES[metric]:>7s} "
               f"{'N':>6s} {'rho':>6s}")
  rows = table["by_difficulty"].items()
  if metric != BITS_PER_CHARACTER:
    rows = sorted(rows, key=lambda kv: int(kv[0]))
  for d, row in rows:
    lines.append(f"  {d!s:>{width}s} {row['count']:>8d} {row[metric]:>7.3f} "
                 f"{row['mean_steps']:>6.2f} {row['mean_ponder']:>6.2f}")
  return "\n".join(lines)


def write_results(workdir: str, results: Mapping[str, Any]) -> None:
  """Writes ``workdir/results.json`` (strict JSON: a NaN is ``null``)."""
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(strict_json(results), f, indent=2, allow_nan=False)
