"""What the halting unit of an ACT network is told: each loss term's gradient on it.

On batches of the training distribution (:func:`probe`): the two terms of the
loss (:func:`tasks.training_step.loss_terms`: the task loss and the halting term,
``tau * P`` for ACT), the first ponder step's weight p^1 (= h^1 where N > 1, 1
where N = 1), the share of input steps read in one step, the halting unit's
bias, and each term's gradient on the halting unit: on its bias (signed: a
negative value raises h, fewer steps; the task term's spread between batches)
and the norm on its kernel; and ``bias_step``, the share of a full Adam step
the bias takes per update on average. Once every example halts at its first step
(h^1 >= 1 - epsilon: N = 1, R = 1, Eq. 7), the output no longer depends on h and
both gradients are exactly 0. ``launch/halting_probe.py`` runs it over a run's
checkpoints.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tasks import evaluation, training_step
from tasks.data import Batch

COLUMNS = ("step", "task_loss", "halting_loss", "error", "mean_steps", "one_step_share",
           "first_weight", "halting_bias", "task_grad_bias", "task_grad_bias_std",
           "halting_grad_bias", "bias_step", "task_grad_kernel", "halting_grad_kernel")


def _halting_unit(grads: nnx.State) -> tuple[jax.Array, jax.Array]:
  """The halting unit's bias (a scalar) and kernel norm in a model-shaped tree (the
  parameters, or their gradient)."""
  unit = nnx.to_pure_dict(grads)["act"]["halting"]
  return unit["bias"][0], jnp.linalg.norm(unit["kernel"])


@functools.partial(jax.jit, static_argnums=0)
def probe_batch(graphdef: nnx.GraphDef, state: nnx.State, batch: Batch,
                 tau: jax.Array) -> dict[str, jax.Array]:
  """The probe's numbers on one batch (see the module docstring): one forward pass, each
  loss term's gradient from its own pullback."""
  def loss_terms(state):
    terms = training_step.loss_terms(nnx.merge(graphdef, state), batch, tau)
    return (terms.task, terms.halting), terms

  (task, halting), pullback, terms = jax.vjp(loss_terms, state, has_aux=True)
  one, zero = jnp.ones_like(task), jnp.zeros_like(task)
  (task_grads,), (halting_grads,) = pullback((one, zero)), pullback((zero, one))
  stats = terms.output.stats
  steps = evaluation.ponder_mean(stats.steps.astype(jnp.float32), batch)
  one_step = evaluation.ponder_mean((stats.steps == 1).astype(jnp.float32), batch)
  first = evaluation.ponder_mean(stats.halting_probs[..., 0].astype(jnp.float32), batch)
  bias, _ = _halting_unit(state)
  task_bias, task_kernel = _halting_unit(task_grads)
  halting_bias, halting_kernel = _halting_unit(halting_grads)
  return {"task_loss": task, "halting_loss": halting,
          "error": evaluation.sequence_error(terms.wrong, batch),
          "mean_steps": jnp.mean(steps), "one_step_share": jnp.mean(one_step),
          "first_weight": jnp.mean(first), "halting_bias": bias,
          "task_grad_bias": task_bias, "halting_grad_bias": halting_bias,
          "task_grad_kernel": task_kernel, "halting_grad_kernel": halting_kernel}


def probe(model: Any, config: Any, batches: list[Batch]) -> dict[str, float]:
  """The probe's numbers for ``model`` (an ACT :class:`~tasks.models.TaskModel` of
  ``config``) over ``batches``.

  Each number of :func:`probe_batch` is the mean over the batches (the gradients:
  the full-data gradient's estimate, signed); ``task_grad_bias_std`` is the task
  gradient's spread from batch to batch, and ``bias_step`` the mean of the bias's
  whole gradient over its root mean square, ``E[g] / sqrt(E[g^2])`` in [-1, 1]:
  Adam moves the bias by about ``-learning_rate * bias_step`` per update, a
  consistent gradient at full speed, one that only batch noise moves hardly at all.
  """
  graphdef, state = nnx.split(model)
  rows = jax.device_get([probe_batch(graphdef, state, batch, jnp.float32(config.tau))
                         for batch in batches])
  column = lambda k: np.asarray([row[k] for row in rows], np.float64)
  out = {k: float(np.mean(column(k))) for k in rows[0]}
  whole = column("task_grad_bias") + column("halting_grad_bias")
  out["task_grad_bias_std"] = float(np.std(column("task_grad_bias")))
  out["bias_step"] = float(np.mean(whole) / max(np.sqrt(np.mean(whole**2)), 1e-30))
  return out


def table(rows: list[dict[str, float]]) -> str:
  header = "| " + " | ".join(COLUMNS) + " |"
  lines = [header, "|---" * len(COLUMNS) + "|"]
  for row in rows:
    lines.append("| " + " | ".join(f"{row[k]:.4g}" if k != "step" else str(row[k])
                                   for k in COLUMNS) + " |")
  return "\n".join(lines)


def plot(rows: list[dict[str, float]], path: str) -> None:
  """``halting_probe.png``: N and p^1 over training, and the halting bias's gradients: the
  halting term's mean against the task term's mean and its spread between batches."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  step = [row["step"] for row in rows]
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
  top.plot(step, [row["mean_steps"] for row in rows], "k-", label="N (mean ponder steps)")
  top.set_ylabel("N")
  share = top.twinx()
  share.plot(step, [row["first_weight"] for row in rows], "b--", label="p^1")
  share.plot(step, [row["one_step_share"] for row in rows], "b:", label="share with N = 1")
  share.set_ylim(0, 1.02)
  top.legend(loc="lower left")
  share.legend(loc="center right")
  for key, style, label in (("halting_grad_bias", "r-", "|dL_halting/db| (mean)"),
                            ("task_grad_bias", "g-", "|dL_task/db| (mean)"),
                            ("task_grad_bias_std", "g:", "dL_task/db: spread between batches")):
    bottom.semilogy(step, [max(abs(row[key]), 1e-12) for row in rows], style, label=label)
  bottom.set_xlabel("update")
  bottom.set_ylabel("gradient on the halting bias")
  bottom.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
