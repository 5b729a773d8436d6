"""The Wikipedia language-model task end to end, on small synthetic byte files."""

import json

import jax
import numpy as np
import pytest

from tasks import config_checks, evaluation, networks, train
from tasks.checkpoints import load_trained_model
from tasks.results import summary_table
from tasks.configs import text as text_config
from tasks.data import text
from tasks.registry import get_task


@pytest.fixture(name="byte_file", scope="module")
def _byte_file(tmp_path_factory):
  """A 20,000-byte file of words, spaces, commas and tags (held-out split: 1,000 bytes)."""
  rng = np.random.default_rng(0)
  words = ["the", "cat", "sat", "on", "a", "mat", ",", ".", "<b>", "42"]
  data = " ".join(rng.choice(words, 6000)).encode()[:20_000]
  path = tmp_path_factory.mktemp("data") / "words.txt"
  path.write_bytes(data)
  return str(path)


def _tiny(byte_file, **overrides):
  config = text_config.get_config("tiny")
  config.task_options.path = byte_file
  config.update(overrides)
  return config


def test_text_trains_and_reports_bits_per_character(byte_file, tmp_path):
  results = train.train_and_evaluate(_tiny(byte_file, num_steps=60, learning_rate=1e-2, plot=True), str(tmp_path))
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["task"] == "text" and saved["metric"] == "bits_per_character"
  # 60 steps (lr 1e-2) of 4 windows of 20 bytes on a 10-word vocabulary: well under the
  # 8 bits of a uniform guess on both splits.
  assert 0.0 < saved["bits_per_character"] < 5.0
  assert 0.0 < saved["train_bits_per_character"] < 5.0
  classes = saved["by_difficulty"]
  assert set(classes) <= set(text.CHARACTER_CLASSES) and {"space", "letter"} <= set(classes)
  # eval_batches (2) x eval_batch_size (8) windows of 20 bytes, all inside the split.
  assert sum(row["count"] for row in classes.values()) == saved["count"] == 2 * 8 * 20
  assert saved["mean_ponder"] > saved["mean_steps"] >= 1.0
  assert results["bits_per_character"] == saved["bits_per_character"]
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert all(np.isfinite(r["bits_per_character"]) for r in rows if r["split"] == "train")
  assert (tmp_path / "plots.png").read_bytes()[:4] == b"\x89PNG"
  assert "held-out" in summary_table(saved) and "space" in summary_table(saved)


def test_held_out_bits_per_character_match_a_direct_computation(byte_file):
  config = _tiny(byte_file, eval_batches=1000)  # the whole held-out split
  task = get_task("text")
  model = networks.build_model(config, task)
  result = evaluation.evaluate(model, config)
  valid = text.split_bytes(text.load_bytes(byte_file), "valid")
  total_bits, count = 0.0, 0
  for batch in task.source(config).held_out(1000):
    logits = np.asarray(model(batch.inputs, batch.input_mask).logits, np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, batch.targets, axis=-1)[..., 0]
    total_bits -= picked[batch.target_mask].sum() / np.log(2)
    count += int(batch.target_mask.sum())
  assert count == result["count"] == len(valid) - 1  # every held-out byte after the first
  np.testing.assert_allclose(result["bits_per_character"], total_bits / count, rtol=1e-5)
  assert jax.tree.leaves(result["by_difficulty"])  # classes present


@pytest.mark.parametrize("options,message", [
    ({"path": "/no/such/enwik8"}, "'/no/such/enwik8' does not exist"),
    ({"window": 0}, "window.*got 0"),
    ({"window": 5000}, "valid split .* fewer than window"),
])
def test_bad_text_options_are_clear_errors(byte_file, options, message, tmp_path):
  config = _tiny(byte_file)
  config.task_options.update(options)
  with pytest.raises(config_checks.ConfigError, match=message):
    train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()


def test_load_trained_model_restores_the_last_or_a_given_checkpoint(byte_file, tmp_path):
  config = _tiny(byte_file)
  results = train.train_and_evaluate(config, str(tmp_path))
  model, loaded_config, step = load_trained_model(str(tmp_path))
  assert step == config.num_steps and loaded_config.task_options.path == byte_file
  again = evaluation.evaluate(model, loaded_config)
  np.testing.assert_allclose(again["bits_per_character"], results["bits_per_character"],
                             rtol=1e-6)
  with pytest.raises(config_checks.ConfigError, match="no training run"):
    load_trained_model(str(tmp_path / "empty"))
  earlier, _, earlier_step = load_trained_model(str(tmp_path), step=10)  # the last two are kept
  assert earlier_step == 10
  assert not np.array_equal(earlier.act.halting.kernel[...], model.act.halting.kernel[...])
  with pytest.raises(config_checks.ConfigError, match=r"step=7 is not a checkpoint .* steps \[10, 20\]"):
    load_trained_model(str(tmp_path), step=7)
