r"""The held-out curves of several runs side by side (``tasks.plots.plot_runs``).

  python -m launch.curves --out=docs/figures/pondernet_extrapolation/curves.png \
      --title="Parity, 96 bits: trained on 1-48 non-zero bits, held out 49-96" \
      docs/runs/pondernet_extrapolation/pondernet-lambda_p=0.2 \
      docs/runs/pondernet_extrapolation/act-tau=1e-3

Each argument is a run's directory (a workdir or its record under ``docs/runs/``:
``config.json`` and ``metrics.jsonl``). Left: held-out error (or bits per
character) at each evaluation, PonderNet's at its sampled halting step, and the
training batches'; middle: N and PonderNet's expected steps; right, where logged:
the gradient's norm before clipping. After the figure's path it prints, for each
run whose gradient was clipped, how often the clip acted (:func:`clipping_summary`).
"""

from collections.abc import Mapping, Sequence
from typing import Any

from absl import app, flags

from tasks import plots

_OUT = flags.DEFINE_string("out", None, "The PNG to write.")
_TITLE = flags.DEFINE_string("title", "", "The figure's title.")
flags.mark_flag_as_required("out")


def clipping_summary(config: Mapping[str, Any], logged: Sequence[Mapping[str, Any]]) -> str | None:
  """How often a clipped run's gradient norm was above its clip: over the training rows of
  ``metrics.jsonl`` (each the mean norm over the updates since the row before), how many are
  above ``grad_clip_norm``; how many rows there are from the first such row on; the largest.
  None for a run not clipped or that logged no ``grad_norm``."""
  clip = config.get("grad_clip_norm", 0.0)
  norms = [(r["step"], r["grad_norm"]) for r in logged
           if r["split"] == "train" and "grad_norm" in r]
  if not clip or not norms:
    return None
  label = plots.run_label(config)
  above = [step for step, norm in norms if norm > clip]
  if not above:
    return (f"{label}: gradient norm at most the clip {clip:g} in all {len(norms)} training rows "
            f"(largest {max(n for _, n in norms):.3g})")
  since = sum(step >= above[0] for step, _ in norms)
  return (f"{label}: gradient norm above the clip {clip:g} in {len(above)} of {len(norms)} "
          f"training rows; from the first, at update {above[0]:,}: {len(above)} of {since}; "
          f"largest {max(n for _, n in norms):.3g}")


def main(argv: Sequence[str]) -> None:
  if len(argv) < 2:
    raise app.UsageError("give one or more run directories")
  try:
    records = [plots.load_record(workdir) for workdir in argv[1:]]
    print(plots.plot_runs(records, _OUT.value, _TITLE.value))
    for record in records:
      summary = clipping_summary(*record)
      if summary:
        print(summary)
  except ValueError as e:  # a directory that is not a run, or one never evaluated
    raise app.UsageError(str(e)) from e


if __name__ == "__main__":
  app.run(main)
