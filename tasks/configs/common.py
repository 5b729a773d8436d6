"""Fields every task config has, with the paper's shared settings (docs/equations.md section 11)."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """The fields of a task config; task files override what differs."""
  config = ml_collections.ConfigDict()
  config.task = ""
  config.task_options = ml_collections.ConfigDict()  # passed to the task's generator
  # Model.
  config.cell = "lstm"  # tanh | lstm | gru
  config.hidden_size = 128
  config.mode = "act"  # act | none (one update per input) | repeat (fixed updates)
  config.repeats = 1  # updates per input with mode=repeat
  config.max_steps = 100  # M
  config.epsilon = 0.01
  config.halting_bias = 1.0
  # The halting rule (mode=act): act (Graves 2016; the loss adds tau * ponder cost) or
  # pondernet (Banino et al. 2021; act_jax.pondernet): the loss is the expected task loss
  # sum_n p_n L(y_n) + beta * KL(p || geometric(lambda_p) truncated to the steps taken).
  config.halting = "act"
  config.beta = 0.01
  config.lambda_p = 0.2  # in (0, 1); the prior's mean number of steps is about 1 / lambda_p
  # flax (Flax's initialisers) | tf_glorot (TensorFlow 1's Glorot uniform, as in the
  # published TF parity code; tanh cell only): see tasks.models.WEIGHT_INITS.
  config.weight_init = "flax"
  config.backend = "while"
  # The ponder loop compacts its batch as examples halt (pays per example, not for the
  # slowest one); the same results to float tolerance. False: the plain while loop.
  config.independent_examples = True
  # Memory against speed in the backward pass (the same gradients either way):
  # remat (sequence tasks): False keeps each input step's first-ponder-step residuals, as
  # the no-ACT network's autodiff keeps its cell's (memory O(T * residuals)); True
  # recomputes them (O(T * state)), one more forward pass of the cell per input step.
  config.remat = False
  # chunk_steps: the ponder loop records the first chunk_steps ponder steps of an input
  # step for its backward pass and recomputes later ones from a checkpoint every
  # chunk_steps steps (act_jax.ponder): memory O(chunk_steps + max_steps / chunk_steps)
  # states. max_steps: every step recorded, none recomputed (fastest where N nears M;
  # on the CPU, where buffers are zero-filled, slower where N is small).
  config.chunk_steps = 8  # act_jax.ponder's default
  # Training.
  config.tau = 1e-3  # time penalty
  config.learning_rate = 1e-3  # the paper: 1e-4 with 16 Hogwild threads (variant "paper")
  # > 0: each network's gradient is scaled down to at most this global norm before Adam
  # (a deviation: the paper does not clip); 0: no clipping.
  config.grad_clip_norm = 0.0
  config.batch_size = 16
  config.num_steps = 100_000
  # > 0: stop after this much training time (several processes: the first to run out stops all)
  config.time_budget_minutes = 0.0
  # > 0: stop once solved, when the held-out metric (sequence error or bpc) averaged over
  # the last solved_evals evaluations is at most this for every network (tasks/solved.py).
  config.solved_at = 0.0
  config.solved_evals = 3
  config.seed = 0
  # Ensembles: K networks trained side by side in one jit-compiled step. Network i is the
  # run of seed + i (its initialisation and its batches) with tau taus[i], or tau if taus
  # is empty.
  config.num_networks = 1  # K
  config.taus = ()  # one time penalty per network, or () for tau everywhere
  # Devices: every step shards the batch over all devices (batch sizes divisible by them).
  config.distributed = False  # multi-host (GPU / TPU pods): jax.distributed.initialize() first
  # Evaluation, logging, checkpoints.
  config.eval_batch_size = 1024  # divides by any power of two of devices up to 1024
  config.eval_batches = 4
  config.eval_every = 5_000
  # At the end, also evaluate on the examples of the paper's difficulty figure (Figs. 6, 10,
  # 14, 19): this many per difficulty level (1000 in the paper's Fig. 6; 0: none).
  config.figure_examples = 1000
  config.log_every = 500
  config.checkpoint_every = 5_000
  config.keep_checkpoints = 2  # the latest ones a run keeps; 0: every one (launch.halting_probe)
  # Training steps per compiled call (batches generated and metrics reduced inside it): at
  # most this many; a call also ends at every log / eval / checkpoint step and runs for
  # about half a second at most, so that Ctrl-C and the time budget answer quickly.
  config.steps_per_call = 1_000
  config.restore_step = 0  # > 0: resume from this checkpoint (later ones are deleted); 0: latest
  config.plot = True  # write plots.png at the end (needs matplotlib)
  return config


def tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to run in seconds (tests)."""
  config.hidden_size = 16
  config.max_steps = 5
  config.batch_size = 8
  config.num_steps = 20
  config.eval_batch_size = 32
  config.eval_batches = 2
  config.eval_every = 10
  config.log_every = 10
  config.checkpoint_every = 10
  config.plot = False
  config.figure_examples = 0
  return config


def select(variant: str, variants: dict) -> ml_collections.ConfigDict:
  """The config of ``variant``, or a ValueError naming it."""
  if variant not in variants:
    raise ValueError(f"unknown config variant {variant!r}; known: {sorted(variants)}")
  return variants[variant]()
