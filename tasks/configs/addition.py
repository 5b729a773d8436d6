"""Addition (Graves 2016, section 3.3): LSTM 512, batch 32, M = 20.

Variants: ``default`` (Adam 1e-3; at most 3 numbers of 3 digits, LSTM 128, a
size that learns on a CPU), ``paper`` (LSTM 512, 1..5 numbers of 1..5 digits,
Adam 1e-4), ``downsized`` (aakhundov's published runs, docs/published/README.md: 2..5
numbers of 1..5 digits, M = 10, Adam 1e-3, 250k steps), ``tiny`` (tests).
"""

import ml_collections

from tasks.configs import common


def _paper() -> ml_collections.ConfigDict:
  config = common.base_config()
  config.task = "addition"
  config.task_options = ml_collections.ConfigDict(
      {"max_length": 5, "max_digits": 5, "fixed_length": False})
  config.cell = "lstm"
  config.hidden_size = 512
  config.max_steps = 20
  config.batch_size = 32
  config.learning_rate = 1e-4
  config.num_steps = 1_000_000
  return config


def _default() -> ml_collections.ConfigDict:
  config = _paper()
  config.task_options.max_length = 3
  config.task_options.max_digits = 3
  config.hidden_size = 128
  config.learning_rate = 1e-3
  config.num_steps = 100_000
  return config


def _downsized() -> ml_collections.ConfigDict:
  config = _paper()
  config.task_options.min_length = 2
  config.max_steps = 10
  config.learning_rate = 1e-3
  config.num_steps = 250_000
  return config


def _tiny() -> ml_collections.ConfigDict:
  config = common.tiny(_paper())
  config.task_options.max_length = 3
  config.task_options.max_digits = 2
  return config


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  return common.select(variant, {"default": _default, "paper": _paper, "downsized": _downsized,
                                 "tiny": _tiny})
