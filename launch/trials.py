"""Sweeps as trials: sweep files, trial ids, ``launch.train`` commands, and running them.

A sweep file defines ``CONFIG``, a config path[:variant] relative to the
repository root; ``get_sweep()``, a list with one dict of config overrides per
trial (field -> value, nested fields dotted as in ``"task_options.num_bits"``);
and optionally ``COMMON``, overrides that every trial gets and that are not part
of the trial ids. A trial's id is made of its own overrides (``seed=1-tau=0.01``),
so it stays the same when the sweep grows or ``COMMON`` changes.

Trial ``ID`` trains in ``SWEEP_DIR/ID``, logs to ``SWEEP_DIR/ID/train.log`` and
records its state in ``SWEEP_DIR/ID/trial.json``; ``SWEEP_DIR/manifest.json`` is
rebuilt from those. The CLI is ``launch/sweep.py``.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_ID_LENGTH = 100
LOG_TAIL_LINES = 20
POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 600.0
STOP_GRACE_SECONDS = 120.0  # after SIGINT, how long a trial may take to checkpoint and exit
_FIELD = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_UNSAFE_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9._=+-]")



@dataclasses.dataclass(frozen=True)
class Trial:
  """One training run of a sweep.

  Attributes:
    index: position in the sweep (what ``--trial_index`` selects).
    id: directory name under the sweep dir, made of the trial's own overrides.
    overrides: every config override of the run (``COMMON`` included).
  """
  index: int
  id: str
  overrides: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A loaded sweep file: the base config and its trials."""
  path: str
  config: str
  trials: tuple[Trial, ...]


def _check_value(field: str, value: Any) -> None:
  if isinstance(value, tuple):
    for item in value:
      _check_value(field, item)
  elif not isinstance(value, (bool, int, float, str)):
    raise ValueError(f"override {field}={value!r}: values must be bool, int, float, str or "
                     f"a tuple of those, got {type(value).__name__}")


def _check_overrides(overrides: Any, where: str) -> None:
  if not isinstance(overrides, Mapping):
    raise ValueError(f"{where} must be a dict of field -> value, got {overrides!r}")
  for field, value in overrides.items():
    if not isinstance(field, str) or not _FIELD.fullmatch(field):
      raise ValueError(f"{where}: {field!r} is not a config field such as "
                       "'tau' or 'task_options.num_bits'")
    _check_value(field, value)


def format_value(value: Any) -> str:
  """``value`` as ml_collections' config flags parse it back.

  Strings go as they are, everything else by repr (``0.0001``, ``1e-05``,
  ``True``, ``(1, 2)``), so a float comes back exactly.
  """
  return value if isinstance(value, str) else repr(value)


def override_args(overrides: Mapping[str, Any]) -> list[str]:
  """The ``--config.<field>=<value>`` arguments of ``overrides``."""
  return [f"--config.{field}={format_value(value)}" for field, value in overrides.items()]


def _id_value(value: Any) -> str:
  if isinstance(value, tuple):
    return "_".join(_id_value(item) for item in value)
  return value if isinstance(value, str) else repr(value)


def readable_id(overrides: Mapping[str, Any]) -> str:
  """``field=value`` pairs sorted by field, joined by ``-``, safe as a directory name."""
  if not overrides:
    return "base"
  text = "-".join(f"{field}={_id_value(overrides[field])}" for field in sorted(overrides))
  return _UNSAFE_ID_CHARACTERS.sub("_", text)


def _overrides_hash(overrides: Mapping[str, Any]) -> str:
  return hashlib.sha1(repr(sorted(overrides.items())).encode()).hexdigest()[:8]


def trial_ids(trial_overrides: Sequence[Mapping[str, Any]]) -> list[str]:
  """One unique id per trial, a function of its own overrides only.

  The readable id, with a hash of the overrides in place of its end where it is
  over ``MAX_ID_LENGTH`` characters or shared with another trial.
  """
  readable = [readable_id(o) for o in trial_overrides]
  counts = collections.Counter(readable)
  return [text if counts[text] == 1 and len(text) <= MAX_ID_LENGTH
          else f"{text[:MAX_ID_LENGTH - 9]}-{_overrides_hash(overrides)}"
          for text, overrides in zip(readable, trial_overrides)]


def expand(trial_overrides: Sequence[Mapping[str, Any]],
           common: Mapping[str, Any]) -> tuple[Trial, ...]:
  """The trials of a sweep: ids from each trial's own overrides, ``common`` added."""
  _check_overrides(common, "COMMON")
  seen: dict[tuple, int] = {}
  for index, overrides in enumerate(trial_overrides):
    _check_overrides(overrides, f"trial {index}")
    key = tuple(sorted(overrides.items()))
    if key in seen:
      raise ValueError(f"trials {seen[key]} and {index} have the same overrides {overrides}")
    seen[key] = index
    shared = sorted(set(overrides) & set(common))
    if shared:
      raise ValueError(f"trial {index} overrides {shared}, which COMMON sets too")
  return tuple(Trial(index, trial_id, {**common, **overrides})
               for index, (trial_id, overrides)
               in enumerate(zip(trial_ids(trial_overrides), trial_overrides)))


def load_sweep(path: str, base_config: str | None = None) -> Sweep:
  """Loads a sweep file; ``base_config`` replaces its ``CONFIG``."""
  name = "sweep_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None:
    raise ValueError(f"cannot load the sweep file {path!r}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for attribute in ("CONFIG", "get_sweep"):
    if not hasattr(module, attribute):
      raise ValueError(f"sweep file {path!r} defines no {attribute}")
  config = base_config or module.CONFIG
  config_file = config.split(":", 1)[0]
  if not os.path.isfile(os.path.join(REPO, config_file)):
    raise ValueError(f"config file {config_file!r} not found (paths are relative to {REPO})")
  trial_overrides = module.get_sweep()
  if not isinstance(trial_overrides, list) or not trial_overrides:
    raise ValueError(f"get_sweep() of {path!r} must return a non-empty list of dicts")
  return Sweep(path, config, expand(trial_overrides, getattr(module, "COMMON", {})))


def train_command(sweep: Sweep, trial: Trial, sweep_dir: str) -> list[str]:
  """The ``launch.train`` command line of ``trial`` (run from the repository root)."""
  return [sys.executable, "-m", "launch.train", f"--config={sweep.config}",
          f"--workdir={_workdir(sweep_dir, trial)}", *override_args(trial.overrides)]


def _workdir(sweep_dir: str, trial: Trial) -> str:
  return os.path.join(os.path.abspath(sweep_dir), trial.id)


def is_finished(sweep_dir: str, trial: Trial) -> bool:
  return os.path.exists(os.path.join(_workdir(sweep_dir, trial), "results.json"))


def _write_json(path: str, value: Any) -> None:
  """Writes ``value`` to ``path`` atomically (readers never see half a file)."""
  partial = f"{path}.{os.getpid()}.tmp"
  with open(partial, "w") as f:
    json.dump(value, f, indent=2)
  os.replace(partial, path)


def _read_record(sweep_dir: str, trial: Trial) -> dict[str, Any]:
  path = os.path.join(_workdir(sweep_dir, trial), "trial.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _write_record(sweep_dir: str, trial: Trial, **record: Any) -> None:
  _write_json(os.path.join(_workdir(sweep_dir, trial), "trial.json"), record)


def build_manifest(sweep: Sweep, sweep_dir: str) -> dict[str, Any]:
  """The sweep and every trial's state, read from the trials' workdirs.

  A trial is ``done`` once its ``results.json`` exists; otherwise its state is
  what its runner last recorded in ``trial.json`` (``pending`` if never run).
  """
  trials = []
  for trial in sweep.trials:
    record = _read_record(sweep_dir, trial)
    status = "done" if is_finished(sweep_dir, trial) else record.get("status", "pending")
    trials.append({
        "index": trial.index, "id": trial.id, "overrides": trial.overrides,
        "command": shlex.join(train_command(sweep, trial, sweep_dir)),
        "workdir": _workdir(sweep_dir, trial), "status": status,
        "return_code": record.get("return_code"), "duration_s": record.get("duration_s"),
        "started_at": record.get("started_at"), "device": record.get("device"),
        "log_tail": None if status == "done" else record.get("log_tail")})
  return {"sweep": sweep.path, "config": sweep.config, "cwd": REPO,
          "status_counts": dict(collections.Counter(t["status"] for t in trials)),
          "trials": trials}


def write_manifest(sweep: Sweep, sweep_dir: str) -> None:
  """Rebuilds ``manifest.json``; a lock keeps concurrent runners (job arrays) consistent."""
  with open(os.path.join(sweep_dir, ".manifest.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    _write_json(os.path.join(sweep_dir, "manifest.json"), build_manifest(sweep, sweep_dir))


def _log_tail(path: str) -> str:
  with open(path, "rb") as f:
    f.seek(max(0, os.path.getsize(path) - 16_384))
    lines = f.read().decode(errors="replace").splitlines()
  return "\n".join(lines[-LOG_TAIL_LINES:])


def _timestamp(seconds: float) -> str:
  return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(seconds))


def _elapsed(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}"


def parse_devices(devices: str) -> list[str] | None:
  """``"cpu"`` -> ``["cpu"]``; ``"0,1"`` -> ``["0", "1"]``; ``""`` -> None."""
  if not devices:
    return None
  names = [name.strip() for name in devices.split(",")]
  if not all(names) or (len(names) > 1 and "cpu" in names):
    raise ValueError(f"--devices must be cpu or GPU ids such as 0,1,2,3, got {devices!r}")
  return names


def _environment(device: str | None) -> dict[str, str]:
  env = dict(os.environ)
  if device == "cpu":
    env["JAX_PLATFORMS"] = "cpu"
  elif device is not None:
    env["CUDA_VISIBLE_DEVICES"] = device
  return env


class _Terminated(Exception):
  """This runner got SIGTERM (e.g. from a scheduler); handled as Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
  del signum, frame
  raise _Terminated()


@dataclasses.dataclass
class _Running:
  trial: Trial
  process: subprocess.Popen
  device: str | None
  started: float
  log: TextIO


class Runner:
  """Runs trials as subprocesses, ``parallel`` at a time, and records each outcome.

  Attributes:
    done: finished trials of the sweep, run now or before.
    failed: trials that failed in this runner.
  """

  def __init__(self, sweep: Sweep, sweep_dir: str, devices: list[str] | None, parallel: int):
    self.sweep, self.sweep_dir, self.parallel = sweep, sweep_dir, parallel
    self.free_gpus = list(devices) if devices and devices != ["cpu"] else []
    self.cpu = devices == ["cpu"]
    self.running: list[_Running] = []
    self.start_time = time.time()
    self.done = sum(is_finished(sweep_dir, t) for t in sweep.trials)
    self.failed = 0

  def progress(self, event: str) -> None:
    print(f"[{_elapsed(time.time() - self.start_time)}] {self.done}/{len(self.sweep.trials)} "
          f"done, {self.failed} failed, {len(self.running)} running | {event}", flush=True)

  def start(self, trial: Trial) -> None:
    device = "cpu" if self.cpu else (self.free_gpus.pop(0) if self.free_gpus else None)
    command = train_command(self.sweep, trial, self.sweep_dir)
    os.makedirs(_workdir(self.sweep_dir, trial), exist_ok=True)
    log = open(os.path.join(_workdir(self.sweep_dir, trial), "train.log"), "a")
    log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n")
    log.flush()
    process = subprocess.Popen(command, cwd=REPO, env=_environment(device), stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    started = time.time()
    self.running.append(_Running(trial, process, device, started, log))
    _write_record(self.sweep_dir, trial, status="running", device=device,
                  started_at=_timestamp(started))
    write_manifest(self.sweep, self.sweep_dir)
    self.progress(f"started {trial.id}" + (f" on {device}" if device else ""))

  def finish(self, run: _Running, interrupted: bool = False) -> None:
    """Records the outcome of ``run``, whose process has exited."""
    run.log.close()
    self.running.remove(run)
    if run.device is not None and not self.cpu:
      self.free_gpus.append(run.device)
    code = run.process.returncode
    duration = round(time.time() - run.started, 3)
    log_path = os.path.join(_workdir(self.sweep_dir, run.trial), "train.log")
    if code == 0 and is_finished(self.sweep_dir, run.trial):
      status = "done"
      self.done += 1
    elif interrupted:
      status = "interrupted"
    else:
      status = "failed"
      self.failed += 1
    _write_record(self.sweep_dir, run.trial, status=status, return_code=code,
                  duration_s=duration, device=run.device, started_at=_timestamp(run.started),
                  log_tail=None if status == "done" else _log_tail(log_path))
    write_manifest(self.sweep, self.sweep_dir)
    self.progress(f"{status} {run.trial.id} (exit {code}, {duration:.1f} s)")
    if status == "failed":
      print(f"  last lines of {log_path}:\n    " + _log_tail(log_path).replace("\n", "\n    "),
            flush=True)

  def run(self, trials: Sequence[Trial]) -> None:
    """Runs ``trials``.

    On Ctrl-C, SIGINT (also when started with SIGINT ignored, as a background job of a
    script) or SIGTERM, passes SIGINT on to the running trials (they
    run in their own sessions, so they get it once, from here), waits up to
    ``STOP_GRACE_SECONDS`` for them to save a checkpoint and exit (then kills
    them), records them as interrupted and exits with 130.
    """
    queue = collections.deque(trials)
    heartbeat = time.time()
    previous_handlers = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_terminated),
        # Even where SIGINT was ignored at start-up (``nohup ... &`` from a script), where
        # Python installs no handler of its own.
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    try:
      while queue or self.running:
        while queue and len(self.running) < self.parallel:
          self.start(queue.popleft())
        for run in [r for r in self.running if r.process.poll() is not None]:
          self.finish(run)
        if time.time() - heartbeat > HEARTBEAT_SECONDS:
          heartbeat = time.time()
          self.progress("running " + ", ".join(r.trial.id for r in self.running))
        time.sleep(POLL_SECONDS)
    except (KeyboardInterrupt, _Terminated):
      for run in self.running:  # each trial saves a checkpoint on SIGINT
        run.process.send_signal(signal.SIGINT)
      self.progress("stopping: waiting for the running trials to save a checkpoint")
      deadline = time.time() + STOP_GRACE_SECONDS
      for run in list(self.running):
        try:
          run.process.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
          print(f"killing {run.trial.id}: still running {STOP_GRACE_SECONDS:.0f} s after SIGINT",
                flush=True)
          run.process.kill()
          run.process.wait()
        self.finish(run, interrupted=True)
      print("interrupted: run the same command to resume", flush=True)
      raise SystemExit(130) from None
    finally:
      for signum, handler in previous_handlers.items():
        signal.signal(signum, handler)


def dry_run_lines(sweep: Sweep, sweep_dir: str, devices: list[str] | None) -> list[str]:
  """What ``--dry_run`` prints: a header, then per trial its state and exact command."""
  finished = sum(is_finished(sweep_dir, t) for t in sweep.trials)
  lines = [f"# {sweep.path}: {len(sweep.trials)} trials of {sweep.config} in {sweep_dir} "
           f"({finished} finished), run from {REPO}"]
  if devices and devices != ["cpu"]:
    lines.append(f"# each command runs with CUDA_VISIBLE_DEVICES set to a free one of {devices}")
  prefix = "JAX_PLATFORMS=cpu " if devices == ["cpu"] else ""
  for trial in sweep.trials:
    state = "finished, skipped" if is_finished(sweep_dir, trial) else "to run"
    lines.append(f"# [{trial.index}] {trial.id}: {state}")
    lines.append(prefix + shlex.join(train_command(sweep, trial, sweep_dir)))
  return lines


def run_sweep(sweep: Sweep, sweep_dir: str, selected: Sequence[Trial],
              devices: list[str] | None, parallel: int) -> int:
  """Runs the unfinished ``selected`` trials; returns how many failed.

  Args:
    sweep: the loaded sweep.
    sweep_dir: where the trials' workdirs and the manifest go.
    selected: the trials to consider (all, or the one of ``--trial_index``).
    devices: ``["cpu"]``, GPU ids (one per running trial), or None (inherit).
    parallel: trials at once; at most ``len(devices)`` with GPU ids.
  """
  os.makedirs(sweep_dir, exist_ok=True)
  to_run = [t for t in selected if not is_finished(sweep_dir, t)]
  write_manifest(sweep, sweep_dir)
  runner = Runner(sweep, sweep_dir, devices, parallel)
  runner.progress(f"{sweep.path}: {len(selected)} selected, {len(selected) - len(to_run)} "
                  f"already finished, {len(to_run)} to run, {min(parallel, len(to_run))} at a "
                  "time")
  runner.run(to_run)
  write_manifest(sweep, sweep_dir)
  return runner.failed
