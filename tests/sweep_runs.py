"""Helpers of the sweep and summary tests: running ``launch.sweep`` and the tiny sweep."""

import dataclasses
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_sweep(*args: str) -> subprocess.CompletedProcess:
  """Runs ``python -m launch.sweep ARGS`` from the repository root (JAX on CPU)."""
  return subprocess.run([sys.executable, "-m", "launch.sweep", *args], cwd=REPO,
                        capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def read_manifest(sweep_dir) -> dict:
  with open(os.path.join(sweep_dir, "manifest.json")) as f:
    return json.load(f)


@dataclasses.dataclass
class TinySweep:
  """The tiny sweep run three times in one directory.

  Attributes:
    sweep_dir: the sweep directory.
    only_last: ``--trial_index=2`` on the empty directory, and the manifest after it.
    full: the whole sweep with ``--devices=0,1 --parallel=2`` next (trial 2 finished).
    rerun: the same command again (everything finished), and the results' mtimes
      before and after it.
  """
  sweep_dir: str
  only_last: subprocess.CompletedProcess
  only_last_manifest: dict
  full: subprocess.CompletedProcess
  rerun: subprocess.CompletedProcess
  mtimes_before_rerun: dict
  mtimes_after_rerun: dict


def _results_mtimes(sweep_dir) -> dict:
  return {name: os.path.getmtime(os.path.join(sweep_dir, name, "results.json"))
          for name in sorted(os.listdir(sweep_dir))
          if os.path.exists(os.path.join(sweep_dir, name, "results.json"))}


def run_tiny_sweep(sweep_dir: str) -> TinySweep:
  """Runs ``launch/sweeps/tiny.py`` in ``sweep_dir`` three times (see ``TinySweep``)."""
  flags = ["--sweep=launch/sweeps/tiny.py", f"--sweep_dir={sweep_dir}"]
  only_last = run_sweep(*flags, "--devices=cpu", "--trial_index=2")
  only_last_manifest = read_manifest(sweep_dir)
  full = run_sweep(*flags, "--devices=0,1", "--parallel=2")
  before = _results_mtimes(sweep_dir)
  rerun = run_sweep(*flags, "--devices=0,1", "--parallel=2")
  return TinySweep(sweep_dir, only_last, only_last_manifest, full, rerun, before,
                   _results_mtimes(sweep_dir))
