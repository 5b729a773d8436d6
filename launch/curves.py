r"""The held-out curves of several runs side by side (``tasks.plots.plot_runs``).

  python -m launch.curves --out=docs/figures/pondernet_extrapolation/curves.png \
      --title="Parity, 96 bits: trained on 1-48 non-zero bits, held out 49-96" \
      docs/runs/pondernet_extrapolation/pondernet-lambda_p=0.2 \
      docs/runs/pondernet_extrapolation/act-tau=1e-3

Each argument is a run's directory (a workdir or its record under ``docs/runs/``:
``config.json`` and ``metrics.jsonl``). Left: held-out error (or bits per
character) at each evaluation, PonderNet's at its sampled halting step, and the
training batches'; right: N and PonderNet's expected steps.
"""

from collections.abc import Sequence

from absl import app, flags

from tasks import plots

_OUT = flags.DEFINE_string("out", None, "The PNG to write.")
_TITLE = flags.DEFINE_string("title", "", "The figure's title.")
flags.mark_flag_as_required("out")


def main(argv: Sequence[str]) -> None:
  if len(argv) < 2:
    raise app.UsageError("give one or more run directories")
  try:
    print(plots.plot_runs(list(argv[1:]), _OUT.value, _TITLE.value))
  except ValueError as e:  # a directory that is not a run, or one never evaluated
    raise app.UsageError(str(e)) from e


if __name__ == "__main__":
  app.run(main)
