"""Parity (Graves 2016, section 3.1): tanh RNN 128, batch 128, M = 100.

Variants: ``default`` (Adam 1e-3, random positions), ``first_k`` (the first-k
layout of docs/equations.md section 12 item 6), ``paper`` (Adam 1e-4), ``quick`` (the README's
main job: 8 bits, tau = 0.01, 5,000 steps), ``tiny`` (tests).
"""

import ml_collections

from tasks.configs import common


def _default() -> ml_collections.ConfigDict:
  config = common.base_config()
  config.task = "parity"
  config.task_options = ml_collections.ConfigDict({"num_bits": 64, "layout": "random"})
  config.cell = "tanh"
  config.hidden_size = 128
  config.batch_size = 128
  config.num_steps = 100_000
  config.eval_every = 2_000
  config.checkpoint_every = 2_000
  config.log_every = 250
  return config


def _first_k() -> ml_collections.ConfigDict:
  config = _default()
  config.task_options.layout = "first_k"
  return config


def _paper() -> ml_collections.ConfigDict:
  config = _default()
  config.learning_rate = 1e-4
  config.num_steps = 1_000_000
  return config


def _quick() -> ml_collections.ConfigDict:
  """The README's main job: 8 bits, about half a minute of training on 2 CPU cores.

  ACT (tau = 0.01) reaches about 0 sequence error in 5,000 steps; the same run
  with ``--config.mode=none`` stays at about 0.3 (docs/results.md).
  """
  config = _default()
  config.task_options.num_bits = 8
  config.tau = 0.01
  config.num_steps = 5_000
  config.eval_every = 1_000
  config.log_every = 500
  config.checkpoint_every = 1_000
  return config


def _tiny() -> ml_collections.ConfigDict:
  config = common.tiny(_default())
  config.task_options.num_bits = 8
  return config


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  return common.select(variant, {"default": _default, "first_k": _first_k, "paper": _paper,
                                 "quick": _quick, "tiny": _tiny})
