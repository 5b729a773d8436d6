"""PonderNet's held-out evaluation (tasks/evaluation.py): at a sampled and at the most likely
halting step, against a plain reference from the network's per-step logits and ``p``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from act_jax import pondernet
from tasks import evaluation, networks
from tasks.configs import addition, parity
from tasks.configs import text as text_config
from tasks.data import addition as addition_data
from tasks.data import batch_stream_key
from tasks.data import parity as parity_data
from tasks.data import text
from tasks.registry import get_task
from tasks.results import summary_table


class _FixedBatches:
  """A source whose held-out stream is the given batches."""

  def __init__(self, batches):
    self.batches = batches

  def held_out(self, max_batches):
    return iter(self.batches[:max_batches])


def _config(halting="pondernet"):
  config = parity.get_config("tiny")
  config.halting, config.seed, config.max_steps = halting, 3, 6
  config.halting_bias = -1.0  # p spread over several steps
  return config


def _per_step(model, bits):
  """The unrolled network, one example per row: every step's output logit and halting
  logit ``[B, M]``, as float64."""
  act = model.act
  carry = act.initialize_carry(bits.shape[:1])
  outputs, halting = [], []
  for n in range(act.max_steps):
    flag = jnp.full(bits.shape[:1] + (1,), 1.0 if n == 0 else 0.0)
    carry, hidden = act.cell(carry, jnp.concatenate([bits, flag], axis=-1))
    halting.append(act.halting(carry)[:, 0])
    outputs.append(act.output(hidden)[:, 0])
  return np.asarray(outputs, np.float64).T, np.asarray(halting, np.float64).T


def _reference(model, batch, key, epsilon):
  """Per example: the sampled, most likely and mean-field mistakes and losses, the
  sampled and most likely steps and ``sum_n n p_n``, from PonderNet's rule by hand."""
  y, halting_logit = _per_step(model, jnp.asarray(batch.inputs[:, 0]))
  size, max_steps = y.shape
  lam = 1.0 / (1.0 + np.exp(-halting_logit))
  lam[:, -1] = 1.0
  p = lam * np.cumprod(np.concatenate([np.ones((size, 1)), 1.0 - lam[:, :-1]], axis=1), axis=1)
  steps = 1 + np.argmax(np.cumsum(p, axis=1) >= 1.0 - epsilon, axis=1)  # N
  n = np.arange(1, max_steps + 1)
  p = np.where(n <= steps[:, None], p, 0.0)
  gumbel = np.asarray(jax.random.gumbel(key, (size, max_steps)), np.float64)
  with np.errstate(divide="ignore"):
    sampled = 1 + np.argmax(np.log(p) + gumbel, axis=1)
  likely = 1 + np.argmax(p, axis=1)
  target = np.asarray(batch.targets[:, 0, 0])
  at = lambda step: y[np.arange(size), step - 1]
  wrong = lambda logit: (logit > 0) != (target == 1)
  loss = lambda logit: np.where(target == 1, np.logaddexp(0, -logit), np.logaddexp(0, logit))
  mean_field = np.sum(p * y, axis=1)
  return {"sequence_error": wrong(at(sampled)), "task_loss": loss(at(sampled)),
          "sequence_error_most_likely": wrong(at(likely)),
          "task_loss_most_likely": loss(at(likely)),
          "sequence_error_mean_field": wrong(mean_field),
          "expected_steps": np.sum(n * p, axis=1), "mean_sampled_steps": sampled,
          "mean_most_likely_steps": likely, "mean_steps": steps}


def test_pondernet_is_scored_at_the_sampled_and_the_most_likely_step():
  config = _config()
  model = networks.build_model(config, get_task("parity"))
  batches = [parity_data.generate(batch_stream_key(0, i, "eval"), config.eval_batch_size,
                                  num_bits=8) for i in range(config.eval_batches)]
  got = evaluation.evaluate(model, config, _FixedBatches(batches))
  parts = [_reference(model, batch, jax.random.fold_in(evaluation.evaluation_key(config.seed, i),
                                                       0), config.epsilon)
           for i, batch in enumerate(batches)]
  expected = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
  for name, values in expected.items():
    np.testing.assert_allclose(got[name], values.mean(), rtol=1e-5, err_msg=name)
  # The rules differ on this network: the test tells them apart.
  assert np.any(expected["mean_sampled_steps"] != expected["mean_most_likely_steps"])
  assert np.any(expected["task_loss"] != expected["task_loss_most_likely"])
  for k, row in got["by_difficulty"].items():
    sel = np.concatenate([np.asarray(b.difficulty) for b in batches]) == int(k)
    np.testing.assert_allclose(row["sequence_error"], expected["sequence_error"][sel].mean())
    np.testing.assert_allclose(row["expected_steps"], expected["expected_steps"][sel].mean(),
                               rtol=1e-5)
  assert evaluation.evaluate(model, config, _FixedBatches(batches)) == got  # the same draws


def test_act_keeps_its_mean_field_evaluation():
  config = _config("act")
  model = networks.build_model(config, get_task("parity"))
  batch = parity_data.generate(batch_stream_key(0, 0, "eval"), config.eval_batch_size, num_bits=8)
  got = evaluation.evaluate(model, config, _FixedBatches([batch]))
  assert not {"task_loss", "sequence_error_most_likely", "expected_steps"} & set(got)
  with pytest.raises(ValueError, match="needs halting='pondernet', got 'act'"):
    model.at_halting_steps(batch.inputs, batch.input_mask, lambda stats, t: stats.steps)


@pytest.mark.parametrize("rule", ["sampled", "most_likely"])
def test_sequences_carry_the_state_of_each_input_steps_halting_step(rule):
  """Addition (several input steps, an LSTM, padded sequences): at each input step the network
  ponders from the state its earlier halting steps left, halts at the chosen step, and carries
  that step's state on, as a plain per-step loop does."""
  config = addition.get_config("tiny")
  config.halting, config.max_steps, config.halting_bias = "pondernet", 4, -1.0
  model = networks.build_model(config, get_task("addition"))
  model.act.halting.kernel[...] *= 8.0  # halting logits that differ between examples
  batch = addition_data.generate(batch_stream_key(0, 0, "eval"), 16, max_length=3, max_digits=2)
  key = jax.random.PRNGKey(7)
  choose = {"sampled": lambda stats, t: pondernet.sampled_steps(stats, jax.random.fold_in(key, t)),
            "most_likely": lambda stats, t: pondernet.most_likely_steps(stats)}[rule]
  got = model.at_halting_steps(batch.inputs, batch.input_mask, choose)

  act, mask = model.act, np.asarray(batch.input_mask)
  size, time_steps = mask.shape
  carry = act.initialize_carry((size,))
  logits, chosen = [], []
  for t in range(time_steps):
    states, outputs, halting = [], [], []
    step_carry = carry
    for n in range(act.max_steps):
      flag = jnp.full((size, 1), 1.0 if n == 0 else 0.0)
      step_carry, hidden = act.cell(step_carry, jnp.concatenate([batch.inputs[:, t], flag], -1))
      states.append(step_carry)
      outputs.append(np.asarray(act.output(hidden), np.float64))
      halting.append(np.asarray(act.halting(jnp.concatenate(jax.tree.leaves(step_carry), -1))[:, 0],
                                np.float64))
    lam = 1.0 / (1.0 + np.exp(-np.asarray(halting).T))
    lam[:, -1] = 1.0
    p = lam * np.cumprod(np.concatenate([np.ones((size, 1)), 1.0 - lam[:, :-1]], 1), 1)
    last = 1 + np.argmax(np.cumsum(p, 1) >= 1.0 - config.epsilon, 1)
    p = np.where(np.arange(1, act.max_steps + 1) <= last[:, None], p, 0.0)
    if rule == "sampled":
      gumbel = np.asarray(jax.random.gumbel(jax.random.fold_in(key, t), p.shape), np.float64)
      with np.errstate(divide="ignore"):
        step = 1 + np.argmax(np.log(p) + gumbel, 1)
    else:
      step = 1 + np.argmax(p, 1)
    step = np.where(mask[:, t], step, 0)
    pick = lambda leaves: np.stack(leaves, 1)[np.arange(size), np.maximum(step, 1) - 1]
    keep = lambda new, old: np.where(mask[:, t, None], new, old)
    carry = jax.tree.map(lambda old, *new: keep(pick(new), np.asarray(old)), carry, *states)
    logits.append(keep(pick(outputs), 0.0))
    chosen.append(step)
  np.testing.assert_array_equal(got.halting_steps, np.stack(chosen, 1))
  assert len(set(np.asarray(got.halting_steps)[mask].tolist())) > 1  # the steps differ
  np.testing.assert_allclose(got.logits, np.stack(logits, 1), rtol=1e-5, atol=1e-6)


def test_text_is_scored_per_byte_at_the_sampled_and_the_most_likely_step(tmp_path):
  """The LM under PonderNet: bits per character and error rate at the sampled step (the
  headline), at the most likely step and of the mean field, and the step counts, each the
  mean over the predicted bytes of a direct computation from the network's logits."""
  rng = np.random.default_rng(0)
  path = tmp_path / "words.txt"
  path.write_bytes(" ".join(rng.choice(["the", "cat", "sat", ",", "42"], 2000)).encode()[:6000])
  config = text_config.get_config("tiny")
  config.task_options.path, config.eval_batches = str(path), 1
  config.halting, config.max_steps, config.halting_bias = "pondernet", 5, -1.0
  task = get_task("text")
  model = networks.build_model(config, task)
  model.act.halting.kernel[...] *= 8.0  # halting logits that differ between bytes
  got = evaluation.evaluate(model, config)

  per_byte = {k: [] for k in ("loss", "loss_most_likely", "loss_mean_field", "wrong",
                              "halting_steps", "halting_steps_most_likely", "expected_steps",
                              "classes")}
  for i, batch in enumerate(task.source(config).held_out(config.eval_batches)):
    key = evaluation.evaluation_key(config.seed, i)
    mask = np.asarray(batch.target_mask)
    targets = np.asarray(batch.targets)[..., 0]
    nats = lambda logits: -np.take_along_axis(
        jax.nn.log_softmax(np.asarray(logits, np.float64)), targets[..., None], -1)[..., 0]
    sampled = model.at_halting_steps(
        batch.inputs, batch.input_mask,
        lambda stats, t: pondernet.sampled_steps(stats, jax.random.fold_in(key, t)))
    likely = model.at_halting_steps(batch.inputs, batch.input_mask,
                                    lambda stats, t: pondernet.most_likely_steps(stats))
    mean_field = model(batch.inputs, batch.input_mask).logits
    per_byte["loss"].append(nats(sampled.logits)[mask])
    per_byte["loss_most_likely"].append(nats(likely.logits)[mask])
    per_byte["loss_mean_field"].append(nats(mean_field)[mask])
    per_byte["wrong"].append((np.argmax(sampled.logits, -1) != targets)[mask])
    per_byte["halting_steps"].append(np.asarray(sampled.halting_steps)[mask])
    per_byte["halting_steps_most_likely"].append(np.asarray(likely.halting_steps)[mask])
    p = np.asarray(sampled.stats.halting_probs, np.float64)
    per_byte["expected_steps"].append((p * np.arange(1, p.shape[-1] + 1)).sum(-1)[mask])
    per_byte["classes"].append(text.character_class(np.asarray(batch.inputs)[mask]))
  ref = {k: np.concatenate(v) for k, v in per_byte.items()}
  bits = lambda nats: nats.mean() / np.log(2)
  np.testing.assert_allclose(got["bits_per_character"], bits(ref["loss"]), rtol=1e-5)
  np.testing.assert_allclose(got["bits_per_character_most_likely"],
                             bits(ref["loss_most_likely"]), rtol=1e-5)
  np.testing.assert_allclose(got["bits_per_character_mean_field"], bits(ref["loss_mean_field"]),
                             rtol=1e-5)
  np.testing.assert_allclose(got["error_rate"], ref["wrong"].mean(), rtol=1e-6)
  for name, k in (("mean_sampled_steps", "halting_steps"),
                  ("mean_most_likely_steps", "halting_steps_most_likely"),
                  ("expected_steps", "expected_steps")):
    np.testing.assert_allclose(got[name], ref[k].mean(), rtol=1e-5, err_msg=name)
  # The rules differ on this network: the test tells them apart.
  assert len({round(got[k], 6) for k in ("bits_per_character", "bits_per_character_most_likely",
                                         "bits_per_character_mean_field")}) == 3
  assert np.any(ref["halting_steps"] != ref["halting_steps_most_likely"])
  space = ref["classes"] == text.CHARACTER_CLASSES.index("space")
  np.testing.assert_allclose(got["by_difficulty"]["space"]["bits_per_character"],
                             bits(ref["loss"][space]), rtol=1e-5)
  line = summary_table({"task": "text", "mode": "act", "halting": "pondernet", "beta": 0.01,
                        "lambda_p": 0.2, "step": 0, "metric": task.metric,
                        "difficulty": task.difficulty,
                        "train_bits_per_character": 8.0, **got})
  assert (f"held-out {got['bits_per_character']:.3f} bpc at a sampled step" in line
          and f"mean field {got['bits_per_character_mean_field']:.3f} bpc" in line)
