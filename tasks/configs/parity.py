"""Parity (Graves 2016, section 3.1): tanh RNN 128, batch 128, M = 100.

Variants: ``default`` (Adam 1e-3, random positions), ``first_k`` (the first-k
layout of docs/equations.md section 12 item 6), ``paper`` (Adam 1e-4), ``quick`` (the README's
main job: 8 bits, tau = 0.01, 5,000 steps), ``pondernet`` (PonderNet's setting: Adam 3e-4,
M = 20), ``extrapolation`` (PonderNet's extrapolation split: 96 bits, trained on 1-48 non-zero
bits, evaluated on 49-96), ``tiny`` (tests).

The task options ``train_nonzero`` and ``eval_nonzero`` (``(low, high)``, inclusive) set the
numbers of non-zero bits of the training and the held-out batches; without them both are
1..num_bits. The difficulty figure's levels are the evaluation range.
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


def _pondernet() -> ml_collections.ConfigDict:
  """PonderNet's parity setting (Banino et al. 2021, section 3.1 and appendix B), for both rules.

  64 bits at random positions, tanh RNN 128, batch 128, Adam 3e-4, M = 20. The paper
  reports PonderNet more accurate than ACT with fewer steps (figures only; beta = 0.01,
  epsilon = 0.05, lambda_p swept over (0, 1]; ACT's tau in [2e-4, 2e-2]). Here both rules
  stay at chance for the first 190k updates (docs/results.md section 9)::

    python -m launch.train --config=tasks/configs/parity.py:pondernet \
      --config.halting=pondernet --config.beta=0.01 --config.epsilon=0.05 \
      --config.lambda_p=0.2 --workdir=~/act-runs/pondernet_parity64/pondernet-lambda_p=0.2
    python -m launch.train --config=tasks/configs/parity.py:pondernet --config.tau=2e-3 \
      --workdir=~/act-runs/pondernet_parity64/act-tau=2e-3

  ``launch/sweeps/pondernet_parity64.py`` is the grid of both rules over three seeds.
  """
  config = _default()
  config.learning_rate = 3e-4
  config.max_steps = 20
  return config


def _extrapolation() -> ml_collections.ConfigDict:
  """PonderNet's extrapolation split (Banino et al. 2021, section 3.1 and appendix B).

  96 bits at random positions, trained on 1-48 non-zero bits and evaluated on 49-96 (the
  difficulty figure: k = 49..96); tanh RNN 128, batch 128, Adam 3e-4, M = 20, PonderNet's
  setting for both rules. The paper reports ACT at chance and PonderNet almost perfect at
  about 5 steps (figures only). PonderNet (beta = 0.01 and epsilon = 0.05 as in the paper,
  which sweeps lambda_p over (0, 1]) and ACT (its sweep: tau in [2e-4, 2e-2])::

    python -m launch.train --config=tasks/configs/parity.py:extrapolation \
      --config.halting=pondernet --config.beta=0.01 --config.epsilon=0.05 \
      --config.lambda_p=0.2 --workdir=~/act-runs/parity_extrapolation/pondernet
    python -m launch.train --config=tasks/configs/parity.py:extrapolation \
      --config.tau=1e-3 --workdir=~/act-runs/parity_extrapolation/act
  """
  config = _pondernet()
  config.task_options.num_bits = 96
  config.task_options.train_nonzero = (1, 48)
  config.task_options.eval_nonzero = (49, 96)
  return config


def _tiny() -> ml_collections.ConfigDict:
  config = common.tiny(_default())
  config.task_options.num_bits = 8
  return config


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  return common.select(variant, {"default": _default, "first_k": _first_k, "paper": _paper,
                                 "quick": _quick, "pondernet": _pondernet,
                                 "extrapolation": _extrapolation,
                                 "tiny": _tiny})
