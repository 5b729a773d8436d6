"""Ponder analysis of a language model: signals, tables, boundary scores, CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tasks import text_analysis, train
from tasks.checkpoints import load_trained_model
from tasks.configs import text as text_config
from tasks.data import text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(name="run", scope="module")
def _run(tmp_path_factory):
  """A tiny text run trained for 20 steps on a file of words and tags."""
  rng = np.random.default_rng(1)
  words = ["the", "cat", "sat", "on", "a", "mat,", "mat.", "<b>", "1742", "\n"]
  path = tmp_path_factory.mktemp("data") / "words.txt"
  path.write_bytes(" ".join(rng.choice(words, 4000)).encode()[:16_000])
  config = text_config.get_config("tiny")
  config.task_options.path = str(path)
  config.eval_batches = 100  # the whole held-out split
  workdir = tmp_path_factory.mktemp("run")
  results = train.train_and_evaluate(config, str(workdir))
  model, config, _ = load_trained_model(str(workdir))
  return workdir, model, config, results


def test_peaks_are_local_maxima_above_the_mean():
  signal = np.array([1.0, 3.0, 1.0, 1.0, 2.0, 2.0, 1.0, 5.0])
  # 3.0 and 5.0 are local maxima above the mean 2.0; the 2.0 plateau is not above it.
  np.testing.assert_array_equal(np.flatnonzero(text_analysis.peaks(signal)), [1, 7])
  assert not text_analysis.peaks(np.full(6, 2.0)).any()  # flat: no peaks


def test_window_position_table_splits_first_bytes_from_the_rest():
  ponder = np.array([9.0, 2.0, 2.0, 7.0, 2.0, 4.0, 5.0])  # windows of 3: positions 0, 3, 6 first
  signals = text_analysis.CharacterSignals(np.zeros(7, np.uint8), ponder, ponder - 1.0,
                                           np.zeros(7), np.zeros(7))
  table = text_analysis.window_position_table(signals, 3)
  assert table["first byte of a window"] == {"count": 3, "mean_ponder": 7.0, "mean_steps": 6.0}
  assert table["other bytes"] == {"count": 4, "mean_ponder": 2.5, "mean_steps": 1.5}


def test_detection_scores_by_hand():
  predicted = np.array([1, 1, 0, 0, 1, 0], bool)
  actual = np.array([1, 0, 0, 1, 1, 0], bool)
  scores = text_analysis.detection_scores(predicted, actual)
  assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
  assert scores["f1"] == pytest.approx(2 / 3)
  empty = text_analysis.detection_scores(np.zeros(6, bool), actual)
  assert empty["precision"] == empty["recall"] == empty["f1"] == 0.0


def test_signals_agree_with_the_training_loop_evaluation(run):
  _, model, config, results = run
  valid = text.split_bytes(text.load_bytes(config.task_options.path), "valid")
  signals = text_analysis.character_signals(model, np.asarray(valid), config.task_options.window,
                                            batch_size=3)  # other batching, same windows
  assert len(signals.characters) == len(valid) - 1 == results["count"]
  np.testing.assert_array_equal(signals.characters, np.asarray(valid[:-1]))
  np.testing.assert_allclose(signals.loss.mean(), results["bits_per_character"], rtol=1e-5)
  np.testing.assert_allclose(signals.ponder.mean(), results["mean_ponder"], rtol=1e-5)
  assert np.all(signals.ponder > signals.steps) and np.all(signals.steps >= 1)
  assert np.all((signals.entropy >= 0) & (signals.entropy <= 8 + 1e-4))  # 256 classes
  table = text_analysis.class_table(signals)
  assert sum(row["count"] for row in table.values()) == len(signals.characters)
  for name, row in results["by_difficulty"].items():
    assert table[name]["count"] == row["count"]
    np.testing.assert_allclose(table[name]["mean_ponder"], row["mean_ponder"], rtol=1e-5)
  boundaries = text_analysis.boundary_table(signals)
  assert set(boundaries) == {"ponder", "loss", "entropy"}
  assert all(b["actual"] == int(np.sum(signals.characters == ord(" "))) for b in boundaries.values())


def test_cli_writes_plot_html_and_tables(run, tmp_path):
  workdir = run[0]
  out = tmp_path / "analysis"
  result = subprocess.run(  # a relative workdir, as users type it
      [sys.executable, "-m", "launch.analyze_ponder",
       f"--workdir={os.path.relpath(workdir, REPO)}", "--show_chars=150", f"--out_dir={out}"],
      cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "orbax" not in result.stderr and "checkpoint.py" not in result.stderr  # no INFO noise
  assert "by character class" in result.stdout and "| space |" in result.stdout
  saved = json.loads((out / "analysis.json").read_text())
  assert {"space", "letter"} <= set(saved["by character class"])
  assert set(saved["by position in the window"]) == {"first byte of a window", "other bytes"}
  assert set(saved["word boundaries (spaces) found by peaks"]) == {"ponder", "loss", "entropy"}
  assert (out / "ponder.png").read_bytes()[:4] == b"\x89PNG"
  assert (out / "ponder.html").read_text().count("<span style=") == 150

  bad = subprocess.run(
      [sys.executable, "-m", "launch.analyze_ponder", f"--workdir={workdir}", "--offset=1000000000"],
      cwd=REPO, capture_output=True, text=True)
  assert bad.returncode != 0 and "offset 1000000000" in bad.stderr
