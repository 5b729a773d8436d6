r"""Runs a sweep: one ``launch.train`` run (a trial) per set of config overrides.

  python -m launch.sweep --sweep=launch/sweeps/tiny.py --sweep_dir=runs/tiny --devices=cpu \
      --parallel=2
  python -m launch.sweep --sweep=launch/sweeps/parity.py --sweep_dir=runs/parity \
      --devices=0,1,2,3
  python -m launch.sweep --sweep=launch/sweeps/parity.py --sweep_dir=runs/parity --dry_run
  python -m launch.sweep --sweep=launch/sweeps/parity.py --sweep_dir=runs/parity --trial_index=3

A sweep file (``launch/sweeps/``, format in ``launch/trials.py``) lists config
overrides, one dict per trial. Trial ``ID`` trains in ``SWEEP_DIR/ID`` and logs
to ``SWEEP_DIR/ID/train.log``. Rerunning the same command skips finished trials
(those with ``results.json``) and resumes the others from their checkpoints; a
failed trial is recorded and the sweep goes on, and the command exits with 1 if
any trial failed. ``SWEEP_DIR/manifest.json`` lists every trial's overrides,
command, workdir, status (pending, running, done, failed, interrupted), return
code and duration. More in ``launch/README.md``.
"""

from collections.abc import Sequence

from absl import app, flags

from launch import trials

_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file, e.g. launch/sweeps/parity.py.")
_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "Directory for the trials and manifest.")
_PARALLEL = flags.DEFINE_integer(
    "parallel", None, "Trials run at once (default: one per GPU of --devices, else 1).")
_DEVICES = flags.DEFINE_string(
    "devices", "", "cpu (JAX_PLATFORMS=cpu), or GPU ids such as 0,1,2,3 (each running "
    "trial gets one via CUDA_VISIBLE_DEVICES); empty: trials see what this process sees.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands; run and write nothing.")
_BASE_CONFIG = flags.DEFINE_string(
    "base_config", None, "Config path[:variant] replacing the sweep file's CONFIG.")
_TRIAL_INDEX = flags.DEFINE_integer(
    "trial_index", None, "Run only this trial (0-based, the order of --dry_run), e.g. "
    "$SLURM_ARRAY_TASK_ID.")
flags.mark_flags_as_required(["sweep", "sweep_dir"])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    sweep = trials.load_sweep(_SWEEP.value, _BASE_CONFIG.value)
    devices = trials.parse_devices(_DEVICES.value)
  except (OSError, ValueError) as e:
    raise app.UsageError(str(e)) from e
  gpus = len(devices) if devices and devices != ["cpu"] else 0
  parallel = _PARALLEL.value if _PARALLEL.value is not None else gpus or 1
  if parallel < 1 or (gpus and parallel > gpus):
    raise app.UsageError(f"--parallel must be between 1 and the number of GPUs in --devices "
                         f"({gpus or 'no limit'}), got {parallel}")
  index = _TRIAL_INDEX.value
  if index is not None and not 0 <= index < len(sweep.trials):
    raise app.UsageError(f"--trial_index must be in 0..{len(sweep.trials) - 1}, got {index}")
  sweep_dir = _SWEEP_DIR.value
  if _DRY_RUN.value:
    print("\n".join(trials.dry_run_lines(sweep, sweep_dir, devices)))
    return

  selected = sweep.trials if index is None else (sweep.trials[index],)
  failed = trials.run_sweep(sweep, sweep_dir, selected, devices, parallel)
  print(f"manifest: {sweep_dir}/manifest.json")
  if failed:
    print(f"{failed} trial(s) failed; their logs' last lines are in the manifest")
    raise SystemExit(1)


if __name__ == "__main__":
  app.run(main)
