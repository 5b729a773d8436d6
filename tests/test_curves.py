"""Several runs' held-out curves side by side (tasks/plots.py, launch/curves.py)."""

import json
import pathlib
import subprocess
import sys

import pytest

from launch import curves
from tasks import plots

REPO = pathlib.Path(__file__).resolve().parents[1]


def _record(path, config, evaluations, grad_norms=()):
  path.mkdir(parents=True)
  (path / "config.json").write_text(json.dumps(config))
  rows = [{"step": 100, "split": "train", "sequence_error": 0.4, "mean_steps": 2.0}]
  rows += [{"step": 100 * (i + 2), "split": "train", "grad_norm": norm}
           for i, norm in enumerate(grad_norms)]
  rows += [{"step": 1000 * (i + 1), "split": "eval", **row} for i, row in enumerate(evaluations)]
  (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


@pytest.mark.parametrize("config,label", [
    ({"mode": "act", "halting": "pondernet", "lambda_p": 0.2, "beta": 0.01, "tau": 0.01},
     "PonderNet (lambda_p = 0.2, beta = 0.01)"),
    ({"mode": "act", "halting": "act", "tau": 0.001}, "ACT (tau = 0.001)"),
    ({"mode": "act", "tau": 0.01}, "ACT (tau = 0.01)"),  # saved before PonderNet existed
    ({"mode": "repeat", "repeats": 3}, "Repeat-RNN x3"),
    ({"mode": "none", "tau": 0.01}, "no ACT"),
    ({"mode": "act", "halting": "act", "tau": 0.002, "grad_clip_norm": 1.0},
     "ACT (tau = 0.002, clipped to 1)"),
    ({"mode": "act", "halting": "act", "tau": 0.002, "grad_clip_norm": 0.0}, "ACT (tau = 0.002)"),
    ({"mode": "act", "tau": 0.001, "grad_clip_norm": 1.0, "seed": 2},
     "ACT (tau = 0.001, clipped to 1, seed 2)"),
    ({"mode": "none", "seed": 1}, "no ACT, seed 1"),
    ({"mode": "act", "tau": 0.001, "seed": 0}, "ACT (tau = 0.001)"),
])
def test_runs_are_labelled_by_their_halting_rule(config, label):
  assert plots.run_label(config) == label


def test_the_cli_draws_every_run(tmp_path):
  pondernet = _record(tmp_path / "pn", {"mode": "act", "halting": "pondernet", "lambda_p": 0.2,
                                        "beta": 0.01},
                      [{"sequence_error": 0.5, "mean_steps": 19.9, "expected_steps": 5.4},
                       {"sequence_error": 0.1, "mean_steps": 12.0, "expected_steps": 4.0}])
  act = _record(tmp_path / "act", {"mode": "act", "halting": "act", "tau": 1e-3},
                [{"sequence_error": 0.5, "mean_steps": 1.0}])
  out = tmp_path / "figures" / "curves.png"
  result = subprocess.run([sys.executable, "-m", "launch.curves", f"--out={out}",
                           "--title=parity", pondernet, act], cwd=REPO, capture_output=True,
                          text=True, check=True)
  assert result.stdout.strip() == str(out)
  assert out.read_bytes()[:4] == b"\x89PNG"


def test_a_run_without_an_evaluation_is_a_clear_error(tmp_path):
  empty = _record(tmp_path / "empty", {"mode": "act", "tau": 0.01}, [])
  with pytest.raises(ValueError, match="'.*empty' has no held-out evaluation"):
    plots.load_record(empty)


def test_the_cli_names_a_directory_that_is_not_a_run(tmp_path):
  result = subprocess.run([sys.executable, "-m", "launch.curves", f"--out={tmp_path}/x.png",
                           str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "'" + str(tmp_path / "nowhere") + "' is not a run: it needs config.json" in result.stderr


_CLIPPED = {"mode": "act", "halting": "act", "tau": 2e-4, "grad_clip_norm": 1.0}


@pytest.mark.parametrize("config,norms,summary", [
    (_CLIPPED, [0.5, 2.0, 0.8, 3.5],
     "ACT (tau = 0.0002, clipped to 1): gradient norm above the clip 1 in 2 of 4 training rows; "
     "from the first, at update 300: 2 of 3; largest 3.5"),
    (_CLIPPED, [0.25, 0.5], "ACT (tau = 0.0002, clipped to 1): gradient norm at most the clip 1 "
                            "in all 2 training rows (largest 0.5)"),
    ({**_CLIPPED, "grad_clip_norm": 0.0}, [0.5, 2.0], None),
    (_CLIPPED, [], None),  # recorded before the norm was logged
])
def test_the_clipping_summary_counts_the_training_rows_above_the_clip(tmp_path, config, norms,
                                                                       summary):
  run = _record(tmp_path / "run", config, [{"sequence_error": 0.5, "mean_steps": 2.0}], norms)
  assert curves.clipping_summary(*plots.load_record(run)) == summary


def test_a_norm_panel_is_drawn_where_a_run_logged_the_gradient_norm(tmp_path, monkeypatch):
  panels = []
  subplots = plots.plt.subplots

  def counting(rows, cols, **kwargs):
    panels.append(cols)
    return subplots(rows, cols, **kwargs)

  monkeypatch.setattr(plots.plt, "subplots", counting)
  evaluations = [{"sequence_error": 0.5, "mean_steps": 2.0}]
  plain = _record(tmp_path / "plain", {"mode": "act", "tau": 1e-3}, evaluations)
  clipped = _record(tmp_path / "clipped", _CLIPPED, evaluations, [0.5, 2.0])
  plain, clipped = plots.load_record(plain), plots.load_record(clipped)
  plots.plot_runs([plain], str(tmp_path / "a.png"))
  plots.plot_runs([plain, clipped], str(tmp_path / "b.png"))
  assert panels == [2, 3]


def test_the_cli_prints_how_often_the_clip_acted(tmp_path):
  run = _record(tmp_path / "clipped", _CLIPPED, [{"sequence_error": 0.5, "mean_steps": 2.0}],
                [0.5, 2.0])
  result = subprocess.run([sys.executable, "-m", "launch.curves", f"--out={tmp_path}/x.png", run],
                          cwd=REPO, capture_output=True, text=True, check=True)
  assert result.stdout.splitlines()[1] == (
      "ACT (tau = 0.0002, clipped to 1): gradient norm above the clip 1 in 1 of 2 training rows; "
      "from the first, at update 300: 1 of 1; largest 2")
