"""launch/report.py: the summary table of docs/results.md is what the committed records give."""

import json
import os
import re

import pytest

from launch import report

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def test_committed_table_is_what_the_records_give():
  published = report.read_json(os.path.join(ROOT, "docs", "published", "paper_numbers.json"))
  table = report.markdown(report.summary_rows(os.path.join(ROOT, "docs", "runs"), published))
  with open(os.path.join(ROOT, "docs", "results.md")) as f:
    committed = report.committed_table(f.read())
  assert committed == table, "rerun `python -m launch.report` and paste its output into docs/results.md"


def test_every_published_experiment_has_a_rule():
  published = report.read_json(os.path.join(ROOT, "docs", "published", "paper_numbers.json"))
  for paper in published["experiments"]:
    assert paper["id"] in report.RULES
    tags = re.findall(r"\[([A-Z]+)\]", paper["published"])
    assert tags and set(tags) <= set(published["sources"]), paper["published"]


def _write_run(folder, config, results=None, evals=()):
  os.makedirs(folder)
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(config, f)
  with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
    for row in evals:
      f.write(json.dumps({"split": "train", "step": row["step"], "sequence_error": 0.9}) + "\n")
      f.write(json.dumps({"split": "eval", **row}) + "\n")
  if results is not None:
    with open(os.path.join(folder, "results.json"), "w") as f:
      json.dump(results, f)


def test_a_run_without_results_reads_its_last_evaluation(tmp_path):
  _write_run(str(tmp_path / "exp" / "a"), {"mode": "act", "tau": 0.01},
             evals=[{"step": 10, "sequence_error": 0.4}, {"step": 20, "sequence_error": 0.3}])
  _write_run(str(tmp_path / "exp" / "b"), {"mode": "none"}, results={"step": 5, "sequence_error": 0.2})
  runs = report.load_runs(str(tmp_path), "exp")
  assert [(r.name, r.finished, r.final["step"], r.final["sequence_error"]) for r in runs] == [
      ("a", False, 20, 0.3), ("b", True, 5, 0.2)]


def test_an_experiment_without_records_is_not_run(tmp_path):
  published = {"experiments": [{"id": "logic", "title": "Logic", "runs": "logic",
                                "published": "about 0 [P]"}]}
  assert report.summary_rows(str(tmp_path), published) == [
      report.Row("Logic", "about 0 [P]", "no record", "not run")]


def _run(name, config, **final):
  return report.Run(name, config, final, True, {})


SORT = {"act_error": 0.114, "none_error": 0.121, "paper_act_over_none": 0.5,
        "paper_gain": "12 % -> 6 %", "updates": 16_000_000}


@pytest.mark.parametrize("act_errors, none_errors, verdict", [
    ((0.05, 0.07), (0.14, 0.12), "reproduced"),       # mean 0.06 <= 0.5 * 0.13
    ((0.16, 0.15), (0.188, 0.149), "partly"),         # ahead, not halved
    ((0.20, 0.18), (0.188, 0.149), "not reproduced"),  # behind
])
def test_act_against_none_verdicts(act_errors, none_errors, verdict):
  config = {"hidden_size": 128, "max_steps": 10}
  runs = ([_run(f"act{i}", {"mode": "act", **config}, step=250_000, sequence_error=e)
           for i, e in enumerate(act_errors)] +
          [_run(f"none{i}", {"mode": "none", **config}, step=250_000, sequence_error=e)
           for i, e in enumerate(none_errors)])
  ours, got = report.act_against_none(runs, SORT)
  assert got.split(":")[0] == verdict
  assert ours.startswith(f"ACT {100 * act_errors[0]:.1f} %")
  assert "1/64 of the paper's updates" in got


def test_parity_first_k_counts_models_solved_as_theirs():
  paper = {"headline": "act tau=0.01", "table1": {
      "none": {"solved": False, "steps": None},
      "act tau=0.01": {"solved": True, "steps": 50_000}}}
  runs = [_run("a0", {"mode": "act", "tau": 0.01, "num_steps": 400_000}, solved_step=100_000),
          _run("a1", {"mode": "act", "tau": 0.01, "num_steps": 400_000}, solved_step=None),
          _run("n0", {"mode": "none", "num_steps": 400_000}, solved_step=None)]
  ours, verdict = report.parity_first_k(runs, paper)
  assert "1/2 seeds solved, median 100k (100k-100k)" in ours
  assert verdict.startswith("reproduced: 2 of 2 models") and "2.0x their steps" in verdict
  runs[2] = _run("n0", {"mode": "none", "num_steps": 400_000}, solved_step=300_000)
  assert report.parity_first_k(runs, paper)[1].startswith("partly: 1 of 2 models")


PONDERNET = {"interpolation": "64 bits", "extrapolation": "96 bits, 1-48 -> 49-96 non-zero",
             "target_error": 0.05, "chance_error": 0.4}
EXTRAPOLATION = {"num_bits": 96, "train_nonzero": [1, 48], "eval_nonzero": [49, 96]}


def _parity_run(name, options, halting, error, n, **final):
  config = {"mode": "act", "halting": halting, "task_options": options, "lambda_p": 0.2,
            "tau": 0.01, "max_steps": 20}
  return _run(name, config, step=100_000, sequence_error=error, mean_steps=n, **final)


@pytest.mark.parametrize("pondernet_64, pondernet_96, verdict", [
    ((0.01, 4.0), (0.02, 5.0), "reproduced: the claim holds in 2 of 2 settings run with ACT"),
    ((0.01, 4.0), (0.30, 5.0), "partly: the claim holds in 1 of 2"),
    ((0.01, 9.0), (0.30, 5.0), "not reproduced: the claim holds in 0 of 2"),  # more steps
    ((0.20, 4.0), None, "not reproduced: the claim holds in 0 of 1 settings run with ACT; not run "
                        "against ACT: 96 bits, 1-48 -> 49-96 non-zero"),
    ((0.01, 4.0), None, "partly: the claim holds in 1 of 1"),
])
def test_pondernet_parity_verdicts(pondernet_64, pondernet_96, verdict):
  runs = [_parity_run("act64", {"num_bits": 64}, "act", 0.10, 6.0),
          _parity_run("pn64", {"num_bits": 64}, "pondernet", pondernet_64[0], 12.0,
                      expected_steps=pondernet_64[1], sequence_error_most_likely=0.0),
          _parity_run("pn8", {"num_bits": 8}, "pondernet", 0.0, 12.0)]
  if pondernet_96:
    runs += [_parity_run("act96", EXTRAPOLATION, "act", 0.5, 3.0),
             _parity_run("pn96", EXTRAPOLATION, "pondernet", pondernet_96[0], 12.0,
                         expected_steps=pondernet_96[1], sequence_error_most_likely=0.0)]
  ours, got = report.pondernet_parity(runs, PONDERNET)
  assert got.startswith(verdict)
  assert ("64 bits: PonderNet 1.0 % (at a sampled halting step), expected steps 4.0" in ours) == (
      pondernet_64 == (0.01, 4.0))
  assert "8 bits: PonderNet 0.0 % (of the p-weighted mean logits), N 12.0" in ours


def test_pondernet_parity_with_both_rules_at_chance_is_not_comparable():
  runs = [_parity_run("act64", {"num_bits": 64}, "act", 0.506, 1.0),
          _parity_run("pn64", {"num_bits": 64}, "pondernet", 0.490, 19.9, expected_steps=5.4,
                      sequence_error_most_likely=0.48)]
  ours, got = report.pondernet_parity(runs, PONDERNET)
  assert got == ("not comparable: the claim holds in 0 of 0 settings run with ACT; both rules at "
                 "chance in: 64 bits; not run against ACT: 96 bits, 1-48 -> 49-96 non-zero")
  assert "64 bits: PonderNet 49.0 % (at a sampled halting step), expected steps 5.4" in ours
  runs[1] = _parity_run("pn64", {"num_bits": 64}, "pondernet", 0.30, 19.9, expected_steps=5.4,
                        sequence_error_most_likely=0.3)  # PonderNet learns, ACT does not
  assert report.pondernet_parity(runs, PONDERNET)[1].startswith("not reproduced: the claim "
                                                                "holds in 0 of 1")


def test_pondernet_parity_is_held_against_act_trained_as_long():
  """A PonderNet record trained longer than every ACT record of its setting tests nothing;
  a record still training says so."""
  pondernet = _parity_run("pn64", {"num_bits": 64}, "pondernet", 0.01, 19.9, expected_steps=4.0,
                          sequence_error_most_likely=0.01)
  longer = pondernet._replace(final={**pondernet.final, "step": 2_000_000}, finished=False)
  act = _parity_run("act64", {"num_bits": 64}, "act", 0.10, 6.0)
  ours, verdict = report.pondernet_parity([longer, act], PONDERNET)
  assert verdict == ("not comparable: the claim holds in 0 of 0 settings run with ACT; ACT trained "
                     "for fewer updates than PonderNet in: 64 bits; not run against ACT: 96 bits, "
                     "1-48 -> 49-96 non-zero")
  assert "(lambda_p = 0.2, M = 20, 2.0M steps, record ends); ACT 10.0 %, N 6.0 (tau = 0.01, 100k" in ours
  act_as_long = act._replace(final={**act.final, "step": 2_000_000})
  assert report.pondernet_parity([longer, act_as_long], PONDERNET)[1].startswith(
      "partly: the claim holds in 1 of 1")
  # Against the shorter ACT record, the PonderNet record of the same budget is the test.
  assert report.pondernet_parity([pondernet, act], PONDERNET)[1].startswith("partly")
  ours = report.pondernet_parity([pondernet, act, act_as_long], PONDERNET)[0]
  assert "ACT 10.0 %, N 6.0 (tau = 0.01, 2 runs, 100k-2.0M steps)" in ours


def test_pondernet_parity_without_the_papers_settings_is_not_comparable():
  runs = [_parity_run("pn8", {"num_bits": 8}, "pondernet", 0.0, 12.7),
          _parity_run("act8", {"num_bits": 8}, "act", 0.001, 2.5)]
  ours, verdict = report.pondernet_parity(runs, PONDERNET)
  assert ours.endswith("; ACT 0.1 %, N 2.5 (tau = 0.01, 100k steps)")
  assert verdict == ("not comparable: no record in the paper's settings (64 bits; 96 bits, 1-48 "
                     "-> 49-96 non-zero), only 8 bits")
  assert report.parity_setting({"task_options": EXTRAPOLATION}) == PONDERNET["extrapolation"]


def test_records_of_a_setting_are_summed_up_per_prior_and_per_tau():
  def pondernet(name, error, expected, lambda_p, finished=True):
    run = _parity_run(name, {"num_bits": 16}, "pondernet", error, 20.0, expected_steps=expected,
                      sequence_error_most_likely=error)
    return run._replace(config={**run.config, "lambda_p": lambda_p}, finished=finished)
  clipped = pondernet("d", 0.01, 6.0, 0.2)
  runs = [pondernet("a", 0.005, 7.2, 0.2), pondernet("b", 0.001, 6.9, 0.2),
          pondernet("c", 0.45, 18.0, 0.1, finished=False),
          clipped._replace(config={**clipped.config, "grad_clip_norm": 1.0})]
  act = _parity_run("act", {"num_bits": 16}, "act", 0.01, 3.0)
  runs += [act, act._replace(config={**act.config, "tau": 0.002}),
           act._replace(final={**act.final, "sequence_error": 0.4, "mean_steps": 2.0})]
  ours = report.pondernet_parity(runs, PONDERNET)[0]
  assert ours == ("16 bits: PonderNet 45.0 % (at a sampled halting step), expected steps 18.0 "
                  "(lambda_p = 0.1, M = 20, 100k steps, record ends); PonderNet 0.1 %-0.5 % (at a "
                  "sampled halting step), expected steps 6.9-7.2 (lambda_p = 0.2, M = 20, 2 runs, "
                  "100k steps); PonderNet 1.0 % (at a sampled halting step), expected steps 6.0 "
                  "(lambda_p = 0.2, M = 20, gradient clipped to norm 1, 100k steps); ACT 1.0 %, N "
                  "3.0 (tau = 0.002, 100k steps); ACT 1.0 %-40.0 %, N 2.0-3.0 (tau = 0.01, 2 runs, "
                  "100k steps)")


def test_parity_random_names_a_clipped_run_and_a_seed():
  paper = {"target_error": 0.05, "updates": 16_000_000}
  runs = [_run("a", {"mode": "act", "tau": 1e-3, "seed": 0}, step=2_000_000,
               sequence_error=0.341),
          _run("b", {"mode": "act", "tau": 1e-3, "grad_clip_norm": 1.0}, step=480_000,
               sequence_error=0.49),
          _run("c", {"mode": "act", "tau": 1e-3, "seed": 1}, step=300_000, sequence_error=0.5)]
  ours, verdict = report.parity_random(runs, paper)
  assert ours == ("tau = 0.001: 34.1 % at 2.0M steps; tau = 0.001, gradient clipped to norm 1: "
                  "49.0 % at 480k steps; tau = 0.001, seed 1: 50.0 % at 300k steps (one network "
                  "each, Adam 1e-4)")
  assert verdict == ("partly: best 34.1 % (tau = 0.001) against the paper's < 5 %, on 1/8 of the "
                     "paper's updates")


@pytest.mark.parametrize("errors, verdict", [
    ({1e-3: 0.04, 1e-2: 0.03}, "reproduced: best 3.0 % (tau = 0.01) against the paper's < 5 %, "
                               "on 1/8 of the paper's updates"),
    ({1e-3: 0.04, 1e-2: 0.48}, "partly: best 4.0 % (tau = 0.001) against the paper's < 5 %, on "
                               "1/8 of the paper's updates; not reached at tau = 0.01"),
    ({1e-3: 0.46, 1e-2: 0.48}, "not reproduced: best 46.0 % (tau = 0.001) against the paper's "
                               "< 5 %, on 1/8 of the paper's updates"),
])
def test_parity_random_is_reproduced_only_where_every_tau_reaches_the_target(errors, verdict):
  paper = {"target_error": 0.05, "updates": 16_000_000}
  runs = [_run(f"tau={tau}", {"mode": "act", "tau": tau}, step=2_000_000, sequence_error=error)
          for tau, error in errors.items()]
  assert report.parity_random(runs, paper)[1] == verdict
