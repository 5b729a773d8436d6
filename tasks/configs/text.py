"""Hutter-prize Wikipedia bytes (Graves 2016, section 3.5): LSTM with ACT, 256-way softmax.

One byte per input step (one-hot 256 + the first-step flag), the next byte as
target, 500-byte windows sampled at random from the train split with the state
reset per window; bits per character on held-out and train bytes (docs/equations.md
section 12 item 11).

Variants:
  ``paper``: enwik8 (give its path: ``--config.task_options.path=.../enwik8``
    or ``enwik8.zip``), LSTM 1500, Adam 1e-4, tau = 6e-3 (the net of the
    paper's Figs. 23/24); the batch size is not in the paper (16 here).
  ``default``: what trains on 2 CPU cores in an hour: enwik6 (the first 10^6
    bytes of enwik8, ``../shared/data/enwik6`` beside the repository;
    ``python -m launch.fetch_data --dest=../shared/data`` writes it), LSTM 256.
  ``tiny``: tests (seconds).
"""

import os

import ml_collections

from tasks.configs import common

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENWIK6 = os.path.normpath(os.path.join(_REPO, "..", "shared", "data", "enwik6"))


def _default() -> ml_collections.ConfigDict:
  config = common.base_config()
  config.task = "text"
  config.task_options = ml_collections.ConfigDict(
      {"path": ENWIK6, "window": 500, "check_sha1": True})  # check_sha1: enwik8's size and SHA-1
  config.cell = "lstm"
  config.hidden_size = 256
  config.tau = 6e-3
  config.batch_size = 16
  config.num_steps = 20_000
  config.eval_batch_size = 50  # 2 batches walk the 50,000 held-out bytes of enwik6
  config.eval_batches = 2
  config.eval_every = 500
  config.log_every = 50
  config.checkpoint_every = 250
  config.figure_examples = 0  # no difficulty figure: bits per character by character class
  return config


def _paper() -> ml_collections.ConfigDict:
  config = _default()
  config.task_options.path = "enwik8"
  config.hidden_size = 1500
  config.learning_rate = 1e-4
  config.num_steps = 160_000  # 10K iterations on each of 16 Hogwild threads
  config.eval_batch_size = 100
  config.eval_batches = 100  # 5M held-out bytes
  config.eval_every = 10_000
  config.log_every = 500
  config.checkpoint_every = 2_000
  return config


def _tiny() -> ml_collections.ConfigDict:
  config = common.tiny(_default())
  config.task_options.window = 20
  config.batch_size = 4
  config.eval_batch_size = 8
  return config


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  return common.select(variant, {"default": _default, "paper": _paper, "tiny": _tiny})
