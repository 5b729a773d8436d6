"""The README's code blocks, as written.

What runs and what is only checked:

* every ```python block runs as written (they use small sizes), in one
  namespace per block, from the repository root, and ends with a finite
  ``loss`` and its ``grads``;
* every command of a ```bash block: a ``pip install -e '.[extra]'`` names
  extras that setup.cfg defines; a ``launch.train`` command is parsed with its
  flags and config overrides (``--show_config``, which loads the config and
  applies the overrides, then exits before training); the main job also runs,
  with ``--config.num_steps=10`` and small evaluation sizes; the flags of any
  other ``launch`` module must be flags it defines (``--helpfull``); ``venv``
  and ``pytest`` commands are not run (``pytest`` is this suite).
"""

import ast
import configparser
import importlib
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
MAIN_JOB_SMALL = ["--config.num_steps=10", "--config.eval_every=10", "--config.log_every=10",
                  "--config.eval_batch_size=16", "--config.eval_batches=1",
                  "--config.figure_examples=2", "--config.plot=False"]


def _blocks(language):
  with open(README) as f:
    text = f.read()
  return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def _commands():
  """Every command of the bash blocks: continuation lines joined, comments dropped,
  ``&&`` chains split."""
  commands = []
  for block in _blocks("bash"):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.split(" #")[0].strip()
      if line and not line.startswith("#"):
        command = []
        for token in shlex.split(line):  # "&&" inside quotes stays in its argument
          if token == "&&":
            commands.append(command)
            command = []
          else:
            command.append(token)
        commands.append(command)
  return commands


def _module(command):
  """The ``launch.X`` module a ``python -m launch.X ...`` command runs, or None."""
  if len(command) > 2 and command[0].endswith("python") and command[1] == "-m":
    return command[2] if command[2].startswith("launch.") else None
  return None


def _run(args):
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                        timeout=600)


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_block_runs_as_written(index, monkeypatch):
  monkeypatch.chdir(REPO)
  monkeypatch.syspath_prepend(REPO)
  namespace = {}
  exec(compile(_blocks("python")[index], f"README.md python block {index}", "exec"), namespace)
  assert np.isfinite(namespace["loss"])  # each block ends by computing a loss and gradients
  assert namespace["grads"]


def test_pip_extras_exist():
  config = configparser.ConfigParser()
  config.read(os.path.join(REPO, "setup.cfg"))
  extras = set(config["options.extras_require"])
  named = [re.search(r"\.\[([\w,]+)\]", arg)[1] for command in _commands()
           if command[:1] and command[0].endswith("pip") for arg in command if ".[" in arg]
  assert named and {"plots", "test"} <= set(named)
  for extra in named:
    assert set(extra.split(",")) <= extras


@pytest.mark.parametrize("command", [c for c in _commands() if _module(c) == "launch.train"],
                         ids=lambda c: " ".join(c[3:5]))
def test_train_command_parses(command):
  result = _run([*command[1:], "--show_config"])
  assert result.returncode == 0, result.stderr[-2000:]
  assert "task " in result.stdout


@pytest.mark.parametrize("command", [c for c in _commands()
                                     if _module(c) not in (None, "launch.train")],
                         ids=lambda c: c[2])
def test_other_launch_command_uses_defined_flags(command):
  result = _run(["-m", command[2], "--helpfull"])
  defined = set(re.findall(r"^\s+--(?:\[no\])?(\w+)", result.stdout, flags=re.M))
  for arg in command[3:]:
    assert arg.startswith("--") and arg[2:].split("=")[0] in defined, arg


def test_main_job_runs_at_small_size(tmp_path):
  main_job = next(c for c in _commands() if _module(c) == "launch.train")
  assert "--config=tasks/configs/parity.py:quick" in main_job
  args = [a for a in main_job[1:] if not a.startswith("--workdir")]
  result = _run([*args, f"--workdir={tmp_path}", *MAIN_JOB_SMALL])
  assert result.returncode == 0, result.stderr[-2000:]
  assert "parity (act, tau=0.01) after 10 steps" in result.stdout
  assert (tmp_path / "results.json").exists()


def test_multi_host_recipes_validate_for_their_devices():
  """The SLURM command's 4 nodes x 8 GPUs, the TPU pod's 16 hosts x 4 chips (the README's
  v4-128): each config as written, overrides applied, passes validation on those devices."""
  from tasks import config_checks  # pylint: disable=g-import-not-at-top
  recipes = {}
  for command in _commands():
    if command[:1] == ["srun"]:
      option = lambda name, c=command: int(next(a for a in c if a.startswith(f"--{name}="))
                                           .split("=")[1])
      recipes["srun"] = (option("nodes") * option("gpus-per-node"), command)
    elif command[:1] == ["gcloud"]:
      recipes["gcloud"] = (16 * 4, shlex.split(command[-1]))
  assert sorted(recipes) == ["gcloud", "srun"] and recipes["srun"][0] == 32
  for devices, command in recipes.values():
    args = command[command.index("launch.train") + 1:]
    path, _, variant = next(a for a in args if a.startswith("--config="))[9:].partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    config = module.get_config(variant or "default")
    for arg in args:
      if arg.startswith("--config."):
        field, value = arg[len("--config."):].split("=")
        config[field] = ast.literal_eval(value)
    assert config.distributed
    config_checks.validate(config, device_count=devices)
