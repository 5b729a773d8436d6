"""Logic (Graves 2016, section 3.2): LSTM 128, batch 16, M = 100.

Variants: ``default`` (Adam 1e-3), ``paper`` (Adam 1e-4), ``tiny`` (tests).
"""

import ml_collections

from tasks.configs import common


def _default() -> ml_collections.ConfigDict:
  config = common.base_config()
  config.task = "logic"
  config.task_options = ml_collections.ConfigDict({"max_length": 10, "max_gates": 10})
  config.cell = "lstm"
  config.hidden_size = 128
  config.batch_size = 16
  config.num_steps = 100_000
  return config


def _paper() -> ml_collections.ConfigDict:
  config = _default()
  config.learning_rate = 1e-4
  config.num_steps = 1_000_000
  return config


def _tiny() -> ml_collections.ConfigDict:
  config = common.tiny(_default())
  config.task_options.max_length = 3
  return config


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  return common.select(variant, {"default": _default, "paper": _paper, "tiny": _tiny})
