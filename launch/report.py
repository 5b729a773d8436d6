"""The summary table of ``docs/results.md``, made from the run records alone.

  python -m launch.report [--runs_dir=docs/runs] [--published=docs/published/paper_numbers.json]

prints one Markdown row per experiment: the published number with its source, ours (read from
``docs/runs/<experiment>/<run>/``: ``config.json``, ``results.json``, or the last evaluation in
``metrics.jsonl`` where a run has no ``results.json``) with its seeds and budget, and a verdict.
Published numbers, each tagged with its source, come only from the one data file; an experiment
without records is "not run", so no number of ours reaches the table without a record. Each
verdict is a rule over the records, written out in the function that makes that row (``RULES``),
and states the budget gap.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from absl import app, flags

BEGIN = "<!-- begin: python -m launch.report -->"
END = "<!-- end: python -m launch.report -->"
COLUMNS = ("experiment", "published [source]", "ours (seeds, budget)", "verdict")


class Run(NamedTuple):
  """One training run's record: its config and its final evaluation (``results.json``, or the last
  ``eval`` row of ``metrics.jsonl`` with ``final`` False where the run has no ``results.json``)."""
  name: str
  config: Mapping[str, Any]
  final: Mapping[str, Any]
  finished: bool
  extra: Mapping[str, Any]


class Row(NamedTuple):
  experiment: str
  published: str
  ours: str
  verdict: str


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def last_eval(metrics_path: str) -> dict[str, Any]:
  """The last ``eval`` row of a ``metrics.jsonl`` (an empty dict if it has none)."""
  last = {}
  with open(metrics_path) as f:
    for line in f:
      row = json.loads(line)
      if row.get("split") == "eval":
        last = row
  return last


def load_run(path: str) -> Run | None:
  """The record in folder ``path``, or None when the folder holds no ``config.json``."""
  if not os.path.isfile(os.path.join(path, "config.json")):
    return None
  config = read_json(os.path.join(path, "config.json"))
  results_path = os.path.join(path, "results.json")
  finished = os.path.isfile(results_path)
  final = read_json(results_path) if finished else last_eval(os.path.join(path, "metrics.jsonl"))
  analysis_path = os.path.join(path, "analysis.json")
  extra = {"analysis": read_json(analysis_path)} if os.path.isfile(analysis_path) else {}
  return Run(os.path.basename(path), config, final, finished, extra)


def load_runs(runs_dir: str, experiment: str) -> list[Run]:
  """The runs of ``runs_dir/experiment``: that folder itself if it is one run, else its sub-folders."""
  folder = os.path.join(runs_dir, experiment)
  if not os.path.isdir(folder):
    return []
  run = load_run(folder)
  if run is not None:
    return [run]
  runs = (load_run(os.path.join(folder, name)) for name in sorted(os.listdir(folder)))
  return [run for run in runs if run is not None]


def pct(x: float) -> str:
  return f"{100 * x:.1f} %"


def steps(n: float) -> str:
  """``124k``, ``2.0M``, or the plain count below 10,000."""
  if n >= 1_000_000:
    return f"{n / 1e6:.1f}M"
  return f"{n / 1000:.0f}k" if n >= 10_000 else f"{n:,.0f}"


def budget_share(ours: float, theirs: float) -> str:
  """Our updates as a share of the paper's: ``1/8 of the paper's updates``."""
  ratio = theirs / ours
  share = f"{1 / ratio:.1f}x" if ratio < 1 else f"1/{ratio:.0f}"
  return f"{share} of the paper's updates"


def model_key(config: Mapping[str, Any]) -> str:
  """``none``, ``act tau=0.01`` or ``repeat 3``: the key of Fojo et al.'s Table 1 rows."""
  if config["mode"] == "act":
    return f"act tau={config['tau']:g}"
  if config["mode"] == "repeat":
    return f"repeat {config['repeats']}"
  return "none"


def networks(run: Run) -> list[Mapping[str, Any]]:
  """The per-network final evaluations of a run (one entry for a run of one network)."""
  return list(run.final.get("networks", [run.final]))


def parity_first_k(runs: Sequence[Run], paper: Mapping[str, Any]) -> tuple[str, str]:
  """Reproduced when every model of Table 1 is solved (by at least one seed) or not as theirs is."""
  by_model: dict[str, list[Run]] = {}
  for run in runs:
    by_model.setdefault(model_key(run.config), []).append(run)
  table = paper["table1"]
  matches = sum((any(r.final.get("solved_step") for r in by_model.get(m, [])) == row["solved"])
                for m, row in table.items() if m in by_model)
  head = by_model[paper["headline"]]
  solved = sorted(r.final["solved_step"] for r in head if r.final.get("solved_step"))
  cap = max(r.config["num_steps"] for r in runs)
  median = statistics.median(solved)
  ours = (f"{paper['headline'].replace('act ', 'ACT ')}: {len(solved)}/{len(head)} seeds solved, median "
          f"{steps(median)} ({steps(solved[0])}-{steps(solved[-1])}) steps; {len(runs)} trials, "
          f"{len(by_model)} models x 3 seeds, cap {steps(cap)} steps")
  ratio = median / table[paper["headline"]]["steps"]
  verdict = "reproduced" if matches == len(table) else "partly"
  return ours, (f"{verdict}: {matches} of {len(table)} models solved or not as theirs; "
                f"{ratio:.1f}x their steps (their one run against our median)")


def _clipped(clip: float, before: str = "", after: str = "") -> str:
  """``before + f"gradient clipped to norm {clip:g}" + after`` for a run whose gradient was
  clipped to global norm ``clip`` (a config's ``grad_clip_norm``), else empty for ``clip`` 0."""
  return f"{before}gradient clipped to norm {clip:g}{after}" if clip else ""


def parity_random(runs: Sequence[Run], paper: Mapping[str, Any]) -> tuple[str, str]:
  """Reproduced when every tau run has a run at error <= the paper's 5 % (its claim is for every
  tau <= 0.03); partly when some run is, or the best is clearly below chance (<= 45 %); else not
  reproduced. A run whose gradient was clipped (the paper is silent on clipping) says so, and
  one of a seed other than 0 names it."""
  act = [r for r in runs if r.config["mode"] == "act"]
  seed = lambda r: f", seed {r.config['seed']}" if r.config.get("seed", 0) else ""
  parts = [f"tau = {r.config['tau']:g}{seed(r)}"
           f"{_clipped(r.config.get('grad_clip_norm', 0.0), before=', ')}: "
           f"{pct(r.final['sequence_error'])} at {steps(r.final['step'])} steps"
           + ("" if r.finished else " (record ends)")
           for r in sorted(act, key=lambda r: r.config["tau"])]
  best = min(act, key=lambda r: r.final["sequence_error"])
  error = best.final["sequence_error"]
  taus = sorted({r.config["tau"] for r in act})
  met = [t for t in taus if any(r.final["sequence_error"] <= paper["target_error"]
                                for r in act if r.config["tau"] == t)]
  verdict = ("reproduced" if met == taus else
             "partly" if met or error <= 0.45 else "not reproduced")
  share = budget_share(best.final["step"], paper["updates"])
  missed = ", ".join(f"{t:g}" for t in taus if t not in met)
  return ("; ".join(parts) + " (one network each, Adam 1e-4)",
          f"{verdict}: best {pct(error)} (tau = {best.config['tau']:g}) against the paper's "
          f"< 5 %, on {share}" + (f"; not reached at tau = {missed}" if met and missed else ""))


def ponder_vs_tau(runs: Sequence[Run], paper: Mapping[str, Any]) -> tuple[str, str]:
  """Reproduced when mean N at the lowest tau exceeds that at the highest and some network with
  tau <= 0.03 reaches the paper's error; partly when only the ponder trend holds."""
  per_tau: dict[float, list[Mapping[str, Any]]] = {}
  for run in runs:
    if run.config["mode"] == "act":
      for net in networks(run):
        per_tau.setdefault(net["tau"], []).append(net)
  taus = sorted(per_tau)
  mean_n = {t: statistics.fmean(n["mean_steps"] for n in per_tau[t]) for t in taus}
  errors = [n["sequence_error"] for t in taus for n in per_tau[t]]
  solved = any(n["sequence_error"] <= paper["target_error"] for t in taus if t <= 0.03
               for n in per_tau[t])
  trend = mean_n[taus[0]] > mean_n[taus[-1]]
  most = max(r.final["step"] for r in runs if r.config["mode"] == "act")
  seeds = len(per_tau[taus[0]])
  verdict = ("reproduced" if trend and solved else "partly" if trend else "not reproduced")
  return (f"mean N {mean_n[taus[0]]:.1f} at tau = {taus[0]:g} to {mean_n[taus[-1]]:.2f} at "
          f"{taus[-1]:g}; error {pct(min(errors))}-{pct(max(errors))} ({len(taus)} taus x {seeds} "
          f"seeds, at most {steps(most)} steps)",
          f"{verdict}: ponder {'falls' if trend else 'does not fall'} with tau; "
          f"{'an' if solved else 'no'} error below 5 % at tau <= 0.03, at "
          f"{budget_share(most, paper['updates'])}")


def ponder_vs_difficulty(runs: Sequence[Run], paper: Mapping[str, Any]) -> tuple[str, str]:
  """Over the figure's levels (non-zero bits k): reproduced when every level is solved and N
  at the hardest exceeds N at k = 1; partly when N rises over the levels it solves."""
  run = runs[0]
  levels = run.final["figure"]["by_difficulty"]
  ks = sorted(levels, key=int)
  solved = []
  for k in ks:  # the levels up to the first one it fails
    if levels[k]["sequence_error"] > paper["target_error"]:
      break
    solved.append(k)
  peak = max(solved, key=lambda k: levels[k]["mean_steps"])
  rises = levels[peak]["mean_steps"] > levels[ks[0]]["mean_steps"]
  verdict = ("reproduced" if rises and len(solved) == len(ks) else
             "partly" if rises else "not reproduced")
  return (f"random positions, tau = {run.config['tau']:g}, {steps(run.final['step'])} steps: "
          f"N {levels[ks[0]]['mean_steps']:.1f} at k = {ks[0]} to {levels[peak]['mean_steps']:.1f} at "
          f"k = {peak}; error <= 5 % for k = 1-{solved[-1]} of {ks[-1]}",
          f"{verdict}: ponder {'rises' if rises else 'does not rise'} with k where it solves, "
          f"on {budget_share(run.final['step'], paper['updates'])}")


def logic(runs: Sequence[Run], paper: Mapping[str, Any]) -> tuple[str, str]:
  """Reproduced when the ACT runs' mean error is at most the target (1 %); partly when it is
  below the no-ACT runs' mean; else not reproduced."""
  by_mode = {m: [r for r in runs if r.config["mode"] == m] for m in ("act", "none")}
  mean = {m: statistics.fmean(r.final["sequence_error"] for r in rs) for m, rs in by_mode.items()}
  parts = [f"{'ACT tau = ' + format(r.config['tau'], 'g') if m == 'act' else 'no ACT'}: "
           f"{pct(r.final['sequence_error'])} at {steps(r.final['step'])} steps"
           for m, rs in by_mode.items() for r in rs]
  verdict = ("reproduced" if mean["act"] <= paper["target_error"] else
             "partly" if mean["act"] < mean["none"] else "not reproduced")
  most = max(r.final["step"] for r in by_mode["act"])
  return "; ".join(parts) + " (1 seed each)", (
      f"{verdict} for ACT, on {budget_share(most, paper['updates'])}; "
      "no ACT not trained to the paper's length")


def act_against_none(runs: Sequence[Run], paper: Mapping[str, Any]) -> tuple[str, str]:
  """Reproduced when the ACT seeds' mean error is at most the paper's ratio of ACT's error to no
  ACT's (``paper_act_over_none``: sort 6 / 12, addition 0: solved) times the no-ACT seeds' mean;
  partly when it is below the no-ACT seeds' mean; else not reproduced."""
  by_mode = {m: [r for r in runs if r.config["mode"] == m] for m in ("act", "none")}
  errors = {m: [r.final["sequence_error"] for r in rs] for m, rs in by_mode.items()}
  mean = {m: statistics.fmean(e) for m, e in errors.items()}
  act = by_mode["act"][0]
  ours = (f"ACT {' / '.join(pct(e) for e in errors['act'])} vs no ACT "
          f"{' / '.join(pct(e) for e in errors['none'])} (seeds {len(errors['act'])} + "
          f"{len(errors['none'])}, {steps(act.final['step'])} steps, LSTM "
          f"{act.config['hidden_size']}, M = {act.config['max_steps']})")
  gap = 100 * (mean["none"] - mean["act"])
  verdict = ("reproduced" if mean["act"] <= paper["paper_act_over_none"] * mean["none"] else
             "partly" if gap > 0 else "not reproduced")
  return ours, (f"{verdict}: ACT {gap:.1f} points ahead on the seeds' mean ([AK] "
                f"{100 * (paper['none_error'] - paper['act_error']):.1f}); not the paper's "
                f"{paper['paper_gain']}; LSTM {act.config['hidden_size']} against 512, "
                f"{budget_share(act.final['step'], paper['updates'])}")


def text_lm(runs: Sequence[Run], paper: Mapping[str, Any]) -> tuple[str, str]:
  """At the paper's learning rate: reproduced when, in every ACT run, ponder finds word
  boundaries at least as well as the entropy does (peak F1 against spaces) and N stays below
  half of M; partly when some runs do; else not reproduced."""
  runs = [r for r in runs if math.isclose(r.config["learning_rate"], paper["learning_rate"])]
  parts, verdicts, reasons = [], [], set()
  for run in sorted(runs, key=lambda r: (r.config["mode"], -r.config["tau"])):
    bpc = f"{run.final['bits_per_character']:.3f} bpc at {steps(run.final['step'])} steps"
    window = run.config["task_options"]["window"]
    bpc += "" if window == 500 else f" ({window}-byte windows)"  # the paper's: 500
    if run.config["mode"] != "act":
      parts.append(f"no ACT {bpc}")
      continue
    f1 = run.extra["analysis"]["word boundaries (spaces) found by peaks"]
    finds_boundaries = f1["ponder"]["f1"] >= f1["entropy"]["f1"]
    stays_low = run.final["mean_steps"] < run.config["max_steps"] / 2
    verdicts.append(finds_boundaries and stays_low)
    if not stays_low:
      reasons.add("ponder runs away toward the cap")
    if not finds_boundaries:
      reasons.add("its peaks miss word boundaries")
    parts.append(f"tau = {run.config['tau']:g}: {bpc}, N {run.final['mean_steps']:.1f} of "
                 f"{run.config['max_steps']}, ponder F1 {f1['ponder']['f1']:.3f}")
  most = max(r.final["step"] for r in runs if r.config["mode"] == "act")
  verdict = "reproduced" if all(verdicts) else "partly" if any(verdicts) else "not reproduced"
  why = ", ".join(sorted(reasons, reverse=True)) or "ponder marks word boundaries"
  return ("; ".join(parts) + " (LSTM 256, 1 seed each)",
          f"{verdict}: {why}, at {budget_share(most, paper['updates'])}")


def depth_ut(runs: Sequence[Run], paper: Mapping[str, Any]) -> tuple[str, str]:
  """Reproduced when ACT's sequence accuracy is at least every fixed depth's."""
  act = next(r for r in runs if not r.config.get("fixed_depth"))
  fixed = sorted((r for r in runs if r.config.get("fixed_depth")),
                 key=lambda r: r.config["fixed_depth"])
  accuracy = act.final["sequence_accuracy"]
  ours = (f"ACT: {pct(accuracy)} of sequences right at mean depth "
          f"{act.final['mean_depth']:.2f} (M = {act.config['max_steps']})" +
          "".join(f"; fixed depth {r.config['fixed_depth']}: {pct(r.final['sequence_accuracy'])}"
                  for r in fixed) + f" (1 seed, {steps(act.config['train_steps'])} steps)")
  verdict = ("reproduced" if all(accuracy >= r.final["sequence_accuracy"] for r in fixed)
             else "not reproduced")
  return ours, f"{verdict} in kind (a small binary-addition task, not bAbI)"


def parity_setting(config: Mapping[str, Any]) -> str:
  """``64 bits``, or ``96 bits, 1-48 -> 49-96 non-zero`` for an extrapolation split."""
  options = config["task_options"]
  setting = f"{options['num_bits']} bits"
  if options.get("eval_nonzero"):
    train, held_out = (options.get(f"{split}_nonzero") or (1, options["num_bits"])
                       for split in ("train", "eval"))
    setting += f", {train[0]}-{train[1]} -> {held_out[0]}-{held_out[1]} non-zero"
  return setting


def span(values: Sequence[str]) -> str:
  """``low-high`` of formatted numbers (in their numeric order), or the one value."""
  ordered = sorted(set(values), key=lambda v: float(v.rstrip(" %")))
  return ordered[0] if len(ordered) == 1 else f"{ordered[0]}-{ordered[-1]}"


def _halting(config: Mapping[str, Any]) -> str:
  return config.get("halting", "act") if config["mode"] == "act" else config["mode"]


def _rule_runs(runs: Sequence[Run]) -> str:
  """The records of one halting rule in one setting, grouped by its setting (PonderNet: prior;
  ACT: tau), M, gradient clipping and, for PonderNet, the rule its error was scored by: the error
  and steps over each group's records, and their updates."""
  groups: dict[tuple[str, float, int, float, bool], list[Run]] = {}
  for run in runs:
    config = run.config
    pondernet = _halting(config) == "pondernet"
    key = ("lambda_p" if pondernet else "tau", config["lambda_p" if pondernet else "tau"],
           config["max_steps"], config.get("grad_clip_norm", 0.0),
           "sequence_error_most_likely" in run.final)
    groups.setdefault(key, []).append(run)
  parts = []
  for (name, value, max_steps, clip, sampled), group in sorted(groups.items()):
    if name == "lambda_p":
      rule = f" ({'at a sampled halting step' if sampled else 'of the p-weighted mean logits'})"
      steps_name, key = ("expected steps", "expected_steps") if sampled else ("N", "mean_steps")
      who, setting = "PonderNet", f"lambda_p = {value:g}, M = {max_steps}"
    else:
      rule, steps_name, key, who, setting = "", "N", "mean_steps", "ACT", f"tau = {value:g}"
    taken = span([format(r.final[key], ".1f") for r in group])
    count = f"{len(group)} runs, " if len(group) > 1 else ""
    clipped = _clipped(clip, after=", ")
    ends = "" if all(r.finished for r in group) else ", record ends"
    parts.append(f"{who} {span([pct(r.final['sequence_error']) for r in group])}{rule}, "
                 f"{steps_name} {taken} ({setting}, {clipped}{count}{_step_span(group)} "
                 f"steps{ends})")
  return "; ".join(parts)


def _pondernet_steps(run: Run) -> float:
  return run.final.get("expected_steps", run.final["mean_steps"])


def _step_span(runs: Sequence[Run]) -> str:
  """``low-high`` of the runs' updates, or the one count."""
  low, high = (f(r.final["step"] for r in runs) for f in (min, max))
  return steps(low) if low == high else f"{steps(low)}-{steps(high)}"


# Why PonderNet's claim is untested in a setting, by :func:`_claim`'s answer.
_UNTESTED = {"at chance": "both rules at chance in",
             "shorter": "ACT trained for fewer updates than PonderNet in",
             "no ACT": "not run against ACT"}


def _claim(setting: str, pondernet: Sequence[Run], act: Sequence[Run],
           paper: Mapping[str, Any]) -> str:
  """Whether PonderNet's claim in one of its paper's settings holds for the records: "holds"
  or "fails"; untested (:data:`_UNTESTED`) with no ACT record ("no ACT"), with none trained
  for at least the best PonderNet record's updates ("shorter"), or with every record of both
  rules still at chance, where accuracy and steps say nothing about the claim ("at
  chance")."""
  if not act:
    return "no ACT"
  best = min(pondernet, key=lambda r: r.final["sequence_error"])
  act = [r for r in act if r.final["step"] >= best.final["step"]]
  if not act:
    return "shorter"
  if all(r.final["sequence_error"] >= paper["chance_error"] for r in (best, *act)):
    return "at chance"
  if setting == paper["extrapolation"]:
    holds = (best.final["sequence_error"] <= paper["target_error"] and
             all(r.final["sequence_error"] >= paper["chance_error"] for r in act))
  else:
    best_act = min(act, key=lambda r: r.final["sequence_error"])
    holds = (best.final["sequence_error"] <= best_act.final["sequence_error"] and
             _pondernet_steps(best) < best_act.final["mean_steps"])
  return "holds" if holds else "fails"


def pondernet_parity(runs: Sequence[Run], paper: Mapping[str, Any]) -> tuple[str, str]:
  """PonderNet's parity claims are figures, so the rule is qualitative. In each setting of its
  paper with a PonderNet record (``interpolation``: 64 bits; ``extrapolation``: 96 bits, trained
  on 1-48 non-zero bits and evaluated on 49-96) the claim holds when, against the ACT records of
  that setting trained for at least as many updates, the best PonderNet record has at most the
  best ACT error and takes fewer steps (its expected steps where recorded, else N; ACT's N)
  (interpolation), or has an error of at most ``target_error`` while every ACT record stays at
  ``chance_error`` or above (extrapolation). Reproduced when it holds in both settings; partly
  in one; not reproduced when it holds in none where it was tested; "not comparable" when it
  was tested in neither (:func:`_claim` says why) or no PonderNet record is in either setting
  (the records' own settings are then listed with ACT's records of the same setting)."""
  by_setting: dict[str, dict[str, list[Run]]] = {}
  for run in runs:
    by_setting.setdefault(parity_setting(run.config), {}).setdefault(
        _halting(run.config), []).append(run)
  parts, claims = [], {}
  for setting, rules in sorted(by_setting.items()):
    if "pondernet" not in rules:
      continue
    act = rules.get("act", [])
    parts.append(f"{setting}: {_rule_runs(rules['pondernet'] + act)}")
    if setting in (paper["interpolation"], paper["extrapolation"]):
      claims[setting] = _claim(setting, rules["pondernet"], act, paper)
  ours = "; ".join(parts)
  if not claims:
    return ours, (f"not comparable: no record in the paper's settings ({paper['interpolation']}; "
                  f"{paper['extrapolation']}), only {', '.join(s for s in sorted(by_setting))}")
  for setting in (paper["interpolation"], paper["extrapolation"]):
    claims.setdefault(setting, "no ACT")
  held = [s for s, claim in claims.items() if claim == "holds"]
  tested = [s for s, claim in claims.items() if claim in ("holds", "fails")]
  verdict = ("reproduced" if len(held) == 2 else "partly" if held else
             "not reproduced" if tested else "not comparable")
  untested = [f"{why}: {'; '.join(s for s, claim in claims.items() if claim == status)}"
              for status, why in _UNTESTED.items() if status in claims.values()]
  return ours, "; ".join([f"{verdict}: the claim holds in {len(held)} of {len(tested)} settings "
                          "run with ACT", *untested])


RULES: dict[str, Callable[[Sequence[Run], Mapping[str, Any]], tuple[str, str]]] = {
    "parity_first_k": parity_first_k,
    "parity_random": parity_random,
    "ponder_vs_tau": ponder_vs_tau,
    "ponder_vs_difficulty": ponder_vs_difficulty,
    "logic": logic,
    "addition": act_against_none,
    "sort": act_against_none,
    "text_lm": text_lm,
    "depth_ut": depth_ut,
    "pondernet_parity": pondernet_parity,
}


def summary_rows(runs_dir: str, published: Mapping[str, Any]) -> list[Row]:
  """One row per experiment of the published-numbers file, in its order (its runs: one folder of
  ``runs_dir``, or a list of them)."""
  rows = []
  for paper in published["experiments"]:
    folders = [paper["runs"]] if isinstance(paper["runs"], str) else paper["runs"]
    runs = [run for folder in folders for run in load_runs(runs_dir, folder)]
    ours, verdict = RULES[paper["id"]](runs, paper) if runs else ("no record", "not run")
    rows.append(Row(paper["title"], paper["published"], ours, verdict))
  return rows


def markdown(rows: Sequence[Row]) -> str:
  """The table, between the begin / end markers that ``docs/results.md`` keeps around it."""
  lines = [BEGIN, "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines + [END])


def committed_table(text: str) -> str:
  """The block of a document from the begin marker to the end marker, both included."""
  start, stop = text.index(BEGIN), text.index(END)
  return text[start:stop + len(END)]


_RUNS_DIR = flags.DEFINE_string("runs_dir", "docs/runs", "The run records, one folder per experiment.")
_PUBLISHED = flags.DEFINE_string("published", "docs/published/paper_numbers.json",
                                 "The published numbers and their sources.")


def main(argv: Sequence[str]) -> None:
  del argv
  print(markdown(summary_rows(_RUNS_DIR.value, read_json(_PUBLISHED.value))))


if __name__ == "__main__":
  app.run(main)
