"""Evaluation on the paper's difficulty axes, and sequence error over sequences with a target."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from launch import sweep_results
from tasks import config_checks, evaluation, train
from tasks.results import summary_table
from tasks.configs import parity, text
from tasks.data import addition as addition_data
from tasks.data import batch_stream_key


def test_figure_examples_give_the_same_count_at_every_level(tmp_path):
  config = parity.get_config("tiny")
  config.figure_examples = 5  # 8 levels x 5 = 40 examples: one full batch of 32, one padded
  config.num_networks = 2
  config.plot = True  # plots.png: its by-difficulty panel is the figure's
  results = train.train_and_evaluate(config, str(tmp_path))
  assert (tmp_path / "plots.png").exists()
  saved = json.loads((tmp_path / "results.json").read_text())
  for figure in (saved["figure"], *(n["figure"] for n in saved["networks"])):
    assert figure["difficulty"] == "non-zero bits" and figure["examples_per_level"] == 5
    assert {int(k): row["count"] for k, row in figure["by_difficulty"].items()} == {
        k: 10 if figure is saved["figure"] else 5 for k in range(1, 9)}
  table = summary_table(results)
  assert "the paper's difficulty figure, 5 examples per level" in table
  rows, difficulty_rows = sweep_results.network_rows("trial", saved, {})
  assert len(rows) == 2 and len(difficulty_rows) == 16
  assert {r["count"] for r in difficulty_rows} == {5}


def test_addition_sequence_error_counts_only_sequences_with_a_target():
  batch = addition_data.generate(batch_stream_key(0, 0, "eval"), 256, max_length=3)
  no_target = ~np.asarray(batch.target_mask).any(axis=1)
  assert no_target.any()  # length-1 sequences
  always_wrong = jnp.full(batch.targets.shape + (addition_data.NUM_CLASSES,), -1.0)
  always_wrong = always_wrong.at[..., 0].set(1.0)  # predicts class 0 everywhere
  always_wrong = jnp.where(jax.nn.one_hot(batch.targets, addition_data.NUM_CLASSES) > 0, -5.0,
                           always_wrong)
  _, wrong = evaluation.target_terms(always_wrong, batch)
  assert float(evaluation.sequence_error(wrong, batch)) == 1.0


def test_summary_says_how_many_sequences_had_no_target():
  # A real run's counts are checked in test_train.py (counted + unscored = evaluated).
  results = {"task": "addition", "mode": "act", "tau": 0.01, "step": 10,
             "metric": "sequence_error", "sequence_error": 0.5, "mean_steps": 2.0,
             "mean_ponder": 2.5, "unscored_sequences": 7, "difficulty": "digits",
             "by_difficulty": {}, "networks": [{}]}
  assert "(7 sequences without a target are not counted)" in summary_table(results)


def test_figure_examples_are_refused_for_text():
  config = text.get_config("tiny")
  config.figure_examples = 5
  with pytest.raises(config_checks.ConfigError, match="figure_examples must be 0 for task 'text'"):
    config_checks.validate(config)


def test_halting_summary_on_hand_made_sequences():
  per_example = {"wrong": np.array([False, True, False, False]),
                 "scored": np.array([True, True, True, False]),
                 "steps": np.array([1.0, 2.5, 1.0, 0.0]), "ponder": np.array([2.0, 3.0, 2.0, 0.0]),
                 "max_steps": np.array([1, 4, 1, 0]),
                 "first_weight": np.array([1.0, 0.4, 1.0, 0.0]),
                 "difficulty": np.array([1, 2, 1, 1])}
  summary = evaluation._sequence_summary(per_example)
  assert summary["one_step_share"] == pytest.approx(2 / 3)  # the unscored one is left out
  assert summary["max_steps_max"] == 4.0
  assert summary["max_steps_p90"] == pytest.approx(np.percentile([1, 4, 1], 90))
  assert summary["mean_first_weight"] == pytest.approx(0.8)
  assert summary["sequence_error"] == pytest.approx(1 / 3)
