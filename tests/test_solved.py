"""When a run counts as solved (tasks/solved.py), on hand-made evaluations."""

import json

from tasks import solved


def test_first_solved_step_averages_the_last_evaluations():
  evaluations = [(2, 0.5), (4, 0.04), (6, 0.01), (8, 0.01), (10, 0.0)]
  assert solved.first_solved_step(evaluations, 0.02, window=1) == 6
  assert solved.first_solved_step(evaluations, 0.02, window=3) == 8  # (0.04+0.01+0.01)/3
  assert solved.first_solved_step(evaluations, 0.005, window=3) is None
  assert solved.first_solved_step(evaluations, 0.02, window=6) is None  # too few
  assert solved.first_solved_step([(2, float("nan")), (4, 0.0)], 0.5, window=2) is None


def test_tracker_solves_each_network_and_keeps_one_evaluation_per_step():
  tracker = solved.SolvedTracker(0.1, 2, num_networks=2, history=[(10, [0.0, 0.5])])
  assert tracker.solved_steps == [None, None] and not tracker.all_solved
  tracker.add(20, [0.1, 0.1])
  tracker.add(20, [0.9, 0.9])  # the same step again (a resumed final evaluation): ignored
  assert tracker.solved_steps == [20, None]
  tracker.add(30, [0.0, 0.0])
  assert tracker.solved_steps == [20, 30] and tracker.all_solved
  never = solved.SolvedTracker(0.0, 1, num_networks=1, history=[(10, [0.0])])
  assert never.solved_steps == [None] and not never.all_solved


def test_eval_history_reads_the_evaluations_up_to_the_resumed_step(tmp_path):
  assert solved.eval_history(str(tmp_path), "sequence_error", 1, 100) == []
  rows = [{"step": 10, "split": "train", "sequence_error": 0.9},
          {"step": 10, "split": "eval", "sequence_error": 0.5, "sequence_error/0": 0.4,
           "sequence_error/1": 0.6},
          {"step": 20, "split": "eval", "sequence_error": None, "sequence_error/0": 0.2,
           "sequence_error/1": None},
          {"step": 30, "split": "eval", "sequence_error": 0.1, "sequence_error/0": 0.1,
           "sequence_error/1": 0.1}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  single = solved.eval_history(str(tmp_path), "sequence_error", 1, 20)
  assert [step for step, _ in single] == [10, 20] and single[0][1] == [0.5]
  assert single[1][1][0] != single[1][1][0]  # a diverged (null) evaluation reads as NaN
  assert solved.eval_history(str(tmp_path), "sequence_error", 2, 30)[2] == (30, [0.1, 0.1])
