r"""Benchmark: one ACT training step, while_loop + custom VJP vs masked scan vs plain RNN.

Times, side by side in one process (interleaved rounds, median per variant):

  (a) ``while``: :func:`act_jax.ponder` with the while_loop backend,
  (b) ``scan``: the masked fixed-``max_steps`` scan backend,
  (c) ``plain``: the same cell unrolled for exactly the ponder steps (a) took,
      without halting: the floor no ACT implementation can beat;

each as one jit-compiled forward + backward step (loss and gradients with
respect to all parameters), in two settings:

  * parity: tanh RNN 128, batch 128, input 64 + flag, M = 100, one input step,
    halting bias set so that mean N is about 3;
  * lstm: LSTM 512, batch 32, a 5-step sequence, M = 20 (:func:`ponder_sequence`).

Two more parity-cell settings (batch 128, M = 100):

  * cap: no example halts (N = M = 100); ``while`` against the cell scanned 100
    times (``lax.scan``, plain autodiff);
  * mixed: N per example set through the halting logits to look like a low-tau
    network's (98 % uniform in 2-8, 2 % uniform in 50-100): the plain ``while``
    loop, which runs every example to the batch's largest N, against the
    compacting one (``independent_examples=True``), and against the plain cell
    unrolled for the batch's mean N (rounded up); also against its floor,
    compaction written by hand in plain JAX for the known N (the cell at the
    full batch, then the stragglers gathered into the last level's batch and
    scanned, plain autodiff), and, as earlier versions of this benchmark measured it, with the
    schedule read from the step index (a step that does not declare
    ``first_step_flag_only``: its input projection is still computed once,
    the first-step flag's row apart).

It also reports the compiled memory of one training step on a long sequence
(LSTM 128, batch 16, T = 200, M = 100) for (a) and (b).

Usage::

  python benchmarks/ponder_loop.py            # table
  python benchmarks/ponder_loop.py --json     # table, then one JSON line
"""

from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
from absl import app, flags

import act_jax
from act_jax.backends import compact
import timing  # benchmarks/timing.py, beside this script

_JSON = flags.DEFINE_bool("json", False, "Print one JSON object on the last line.")
_ROUNDS = flags.DEFINE_integer("rounds", 30, "Timed rounds per variant (interleaved).")
_LONG_SEQ = flags.DEFINE_bool("long_seq", True, "Also measure the long-sequence memory.")
_LSTM = flags.DEFINE_bool("lstm", True, "Also time the LSTM setting.")
_CHUNK_STEPS = flags.DEFINE_integer(
    "chunk_steps", None, "chunk_steps of the while backend (default: the library's).")


def _tanh_cell(params, state, x_with_flag):
  return jnp.tanh(x_with_flag @ params["w_x"] + state @ params["w_s"] + params["b"])


def _lstm_cell(params, state, x_with_flag):
  c, h = state
  z = x_with_flag @ params["w_x"] + h @ params["w_s"] + params["b"]
  i, f, g, o = jnp.split(z, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  return c, jax.nn.sigmoid(o) * jnp.tanh(c)


def _readout(state):
  """The part of the state the output layer reads: h (the last leaf)."""
  return jax.tree.leaves(state)[-1]


def _params(key, cell_name, inputs, hidden, halting_bias):
  gates = 4 if cell_name == "lstm" else 1
  k = jax.random.split(key, 4)
  state_features = hidden * (2 if cell_name == "lstm" else 1)
  return {
      "w_x": jax.random.normal(k[0], (inputs + 1, gates * hidden)) / jnp.sqrt(inputs + 1.0),
      "w_s": jax.random.normal(k[1], (hidden, gates * hidden)) / jnp.sqrt(float(hidden)),
      "b": jnp.zeros(gates * hidden),
      "w_h": jax.random.normal(k[2], (state_features,)) * 0.02,
      "b_h": jnp.float32(halting_bias),
      "w_y": jax.random.normal(k[3], (hidden, 1)) / jnp.sqrt(float(hidden)),
  }


def _act_step_fn(cell, sequence: bool):
  """The ACT step: per-step outputs ``h`` for sequences; none for one input step,
  whose output layer reads the mean-field state (equal by linearity, Eq. 9)."""
  def step_fn(params, state, x, n):
    state = cell(params, state, act_jax.with_first_step_flag(x, n))
    logit = jnp.concatenate(jax.tree.leaves(state), -1) @ params["w_h"] + params["b_h"]
    return act_jax.PonderStep(state, _readout(state) if sequence else (), logit)
  return step_fn


def _bce(logits, targets):
  """Binary cross-entropy summed over the steps of a sequence, mean over the batch."""
  per_step = jnp.logaddexp(0.0, logits) - targets * logits
  return jnp.mean(jnp.sum(per_step.reshape(per_step.shape[0], -1), axis=1))


def _scheduled_step_fn(cell):
  """The parity ACT step with each example's N set by its input ``halt_at``: the
  halting logit is the unit's plus -20 before step ``halt_at`` and +20 from it on.

  The step reads its index only as the first-step flag, as the task models'
  steps do (they declare ``first_step_flag_only``): it counts its steps in its
  state, ``(count, h)``, so the loop computes the cell's input projection once,
  as the unrolled plain cell does.
  """
  def step_fn(params, state, inputs, n):
    x, halt_at = inputs
    count, h = state
    count = count + 1.0
    h = cell(params, h, act_jax.with_first_step_flag(x, n))
    schedule = jnp.where(count >= halt_at, 20.0, -20.0)
    return act_jax.PonderStep((count, h), (), h @ params["w_h"] + params["b_h"] + schedule)
  return step_fn


def _index_scheduled_step_fn(cell):
  """The same schedule read from the step index, as earlier versions of this
  benchmark measured it: the step reads its index as a value (``first_step_flag_only``
  is not declared). The loop still computes ``x W_x`` once: it takes ``[x; flag] W``
  as ``x W_x + flag W_flag`` (:mod:`act_jax.backends.loop_invariant`)."""
  def step_fn(params, state, inputs, n):
    x, halt_at = inputs
    state = cell(params, state, act_jax.with_first_step_flag(x, n))
    schedule = jnp.where(n + 1 >= halt_at, 20.0, -20.0)
    return act_jax.PonderStep(state, (), state @ params["w_h"] + params["b_h"] + schedule)
  return step_fn


def _act_train_step(cell, backend: str, max_steps: int, sequence: bool,
                    independent_examples: bool = False, step_fn=None,
                    first_step_flag_only: bool = True):
  """Jitted (loss and gradient, loss alone, ponder stats) of ACT (BCE + tau * rho)."""
  options = {"independent_examples": independent_examples,
             "first_step_flag_only": first_step_flag_only}
  step_fn = step_fn or _act_step_fn(cell, sequence)
  if _CHUNK_STEPS.value is not None and backend == "while":
    options["chunk_steps"] = _CHUNK_STEPS.value
  run = functools.partial(act_jax.ponder_sequence if sequence else act_jax.ponder, **options)

  def loss(params, state, x, targets):
    r = run(step_fn, params, state, x, max_steps=max_steps, backend=backend)
    outputs = r.outputs if sequence else _readout(r.state)
    return (_bce(outputs @ params["w_y"], targets)
            + act_jax.ponder_penalty(r.stats.ponder_cost, 1e-3))

  stats = jax.jit(lambda params, state, x: run(
      step_fn, params, state, x, max_steps=max_steps, backend=backend).stats)
  return jax.jit(jax.value_and_grad(loss)), jax.jit(loss), stats


def _plain_train_step(cell, steps_per_input: list[int], sequence: bool):
  """Jitted (loss and gradient, loss alone) of the same cell, unrolled for exactly
  ``steps_per_input[t]`` updates per input."""

  def loss(params, state, x, targets):
    xs = x if sequence else x[:, None]
    outputs = []
    for t, steps in enumerate(steps_per_input):
      for n in range(steps):
        state = cell(params, state, act_jax.with_first_step_flag(xs[:, t], n))
      outputs.append(_readout(state))
    outputs = jnp.stack(outputs, 1) if sequence else outputs[0]
    return _bce(outputs @ params["w_y"], targets)

  return jax.jit(jax.value_and_grad(loss)), jax.jit(loss)


def _setting(name, cell, cell_name, *, batch, inputs, hidden, max_steps, time_steps,
             halting_bias, rounds):
  key = jax.random.PRNGKey(0)
  params = _params(key, cell_name, inputs, hidden, halting_bias)
  sequence = time_steps > 1
  x_shape = (batch, time_steps, inputs) if sequence else (batch, inputs)
  x = jax.random.choice(jax.random.PRNGKey(1), jnp.array([-1.0, 0.0, 1.0]), x_shape)
  targets = jax.random.bernoulli(jax.random.PRNGKey(2), 0.5,
                                 x_shape[:-1] + (1,)).astype(jnp.float32)
  zeros = jnp.zeros((batch, hidden))
  state = (zeros, zeros) if cell_name == "lstm" else zeros
  args = (params, state, x, targets)

  (while_step, while_forward, while_stats), (scan_step, _, _) = (
      _act_train_step(cell, b, max_steps, sequence) for b in ("while", "scan"))
  stats = while_stats(params, state, x)
  per_input = stats.steps if sequence else stats.steps[:, None]
  taken = [int(n) for n in jnp.max(per_input, axis=0)]  # the while loop's iterations
  plain_step, plain_forward = _plain_train_step(cell, taken, sequence)
  compile_s = {v: timing.compile_seconds(f, *args) for v, f in
               (("while", while_step), ("scan", scan_step), ("plain", plain_step))}
  seconds = timing.median_seconds(
      {"while": while_step, "scan": scan_step, "plain": plain_step,
       "while_forward": while_forward, "plain_forward": plain_forward}, args, rounds)
  return {
      "setting": name,
      "mean_steps": float(jnp.mean(stats.steps)),
      "loop_iterations": taken,
      "ms": {k: 1e3 * v for k, v in seconds.items()},
      "compile_s": compile_s,
      "while_over_plain": seconds["while"] / seconds["plain"],
      "scan_over_while": seconds["scan"] / seconds["while"],
      "forward_while_over_plain": seconds["while_forward"] / seconds["plain_forward"],
  }


def _scanned_train_step(cell, steps: int):
  """Jitted loss and gradient of the cell scanned ``steps`` times (``lax.scan``)."""

  def loss(params, state, x, targets):
    def body(state, n):
      return cell(params, state, act_jax.with_first_step_flag(x, n)), None

    state, _ = jax.lax.scan(body, state, jnp.arange(steps))
    return _bce(_readout(state) @ params["w_y"], targets)

  return jax.jit(jax.value_and_grad(loss))


def _parity_args(batch, halting_bias):
  inputs, hidden = 64, 128
  params = _params(jax.random.PRNGKey(0), "tanh", inputs, hidden, halting_bias)
  x = jax.random.choice(jax.random.PRNGKey(1), jnp.array([-1.0, 0.0, 1.0]), (batch, inputs))
  targets = jax.random.bernoulli(jax.random.PRNGKey(2), 0.5, (batch, 1)).astype(jnp.float32)
  return params, jnp.zeros((batch, hidden)), x, targets


def _cap_setting(rounds):
  """No example halts: the while loop against the cell scanned M times."""
  max_steps = 100
  args = _parity_args(128, halting_bias=-30.0)
  while_step, _, stats = _act_train_step(_tanh_cell, "while", max_steps, sequence=False)
  assert int(jnp.min(stats(*args[:3]).steps)) == max_steps
  seconds = timing.median_seconds(
      {"while": while_step, "scan_plain": _scanned_train_step(_tanh_cell, max_steps)}, args,
      rounds)
  return {"ms": {k: 1e3 * v for k, v in seconds.items()},
          "while_over_plain": seconds["while"] / seconds["scan_plain"]}


def _mixed_setting(rounds):
  """N like a low-tau network's: the plain while loop, the compacting one, the
  plain cell for the mean N, and the floor of compaction in plain JAX."""
  batch, max_steps = 128, 100
  params, h, x, targets = _parity_args(batch, halting_bias=0.0)
  key_n, key_tail, key_perm = jax.random.split(jax.random.PRNGKey(3), 3)
  stragglers = round(0.02 * batch)
  halt_at = jnp.concatenate([
      jax.random.randint(key_n, (batch - stragglers,), 2, 9),
      jax.random.randint(key_tail, (stragglers,), 50, 101)])
  halt_at = jax.random.permutation(key_perm, halt_at)
  args = (params, (jnp.zeros(batch), h), (x, halt_at), targets)
  index_args = (params, h, (x, halt_at), targets)
  step_fn = _scheduled_step_fn(_tanh_cell)
  (while_step, _, stats), (compact_step, _, compact_stats) = (
      _act_train_step(_tanh_cell, "while", max_steps, False, independent, step_fn)
      for independent in (False, True))
  index_compact_step, _, index_stats = _act_train_step(
      _tanh_cell, "while", max_steps, False, True, _index_scheduled_step_fn(_tanh_cell),
      first_step_flag_only=False)
  steps = stats(*args[:3]).steps
  assert all(bool(jnp.all(s == halt_at)) for s in
             (steps, compact_stats(*args[:3]).steps, index_stats(*index_args[:3]).steps))
  mean_steps = float(jnp.mean(steps.astype(jnp.float32)))
  plain_step, _ = _plain_train_step(_tanh_cell, [math.ceil(mean_steps)], sequence=False)
  floor_step = _compaction_floor_step(_tanh_cell, halt_at)
  seconds = timing.median_seconds(
      {"while": lambda: while_step(*args), "compact": lambda: compact_step(*args),
       "compact_index_schedule": lambda: index_compact_step(*index_args),
       "plain_mean_n": lambda: plain_step(params, h, x, targets),
       "floor": lambda: floor_step(params, h, x, targets)}, (), rounds)
  return {"mean_steps": mean_steps, "max_steps": int(jnp.max(steps)),
          "ms": {k: 1e3 * v for k, v in seconds.items()},
          "compact_speedup": seconds["while"] / seconds["compact"],
          "compact_over_mean_plain": seconds["compact"] / seconds["plain_mean_n"],
          "index_schedule_over_mean_plain": (seconds["compact_index_schedule"]
                                             / seconds["plain_mean_n"]),
          "floor_over_mean_plain": seconds["floor"] / seconds["plain_mean_n"],
          "compact_over_floor": seconds["compact"] / seconds["floor"]}


def _compaction_floor_step(cell, halt_at: jax.Array):
  """Jitted loss and gradient of compaction written by hand for a known ``halt_at``.

  The plain cell at the full batch until the batch's N has passed every example
  that is not a straggler, then the stragglers gathered into a batch of the size
  of the compacting loop's last level and the cell scanned (``lax.scan``, plain
  autodiff) to the largest N. No halting arithmetic, nothing decided at run
  time: the least a compacting loop could cost with XLA on this machine.
  """
  batch = halt_at.shape[0]
  small = compact.level_sizes(batch)[-1]
  order = jnp.argsort(-halt_at)
  full_steps = int(halt_at[order[small]])  # N of the longest example that is no straggler
  tail_steps = int(halt_at[order[0]]) - full_steps
  rows = order[:small]

  def loss(params, h, x, targets):
    for n in range(full_steps):
      h = cell(params, h, act_jax.with_first_step_flag(x, n))
    flagged = act_jax.with_first_step_flag(x[rows], 1)
    tail, _ = jax.lax.scan(lambda h, _: (cell(params, h, flagged), None), h[rows], None,
                           length=tail_steps)
    return _bce(h.at[rows].set(tail) @ params["w_y"], targets)

  return jax.jit(jax.value_and_grad(loss))


def _long_sequence_memory_mb(backend: str) -> float:
  """Compiled memory (arguments + outputs + temporaries) of one training step."""
  batch, hidden, inputs, time_steps, max_steps = 16, 128, 32, 200, 100
  params = _params(jax.random.PRNGKey(0), "lstm", inputs, hidden, halting_bias=-0.4)
  step, _, _ = _act_train_step(_lstm_cell, backend, max_steps, sequence=True)
  zeros = jnp.zeros((batch, hidden))
  x = jnp.zeros((batch, time_steps, inputs))
  targets = jnp.zeros((batch, time_steps, 1))
  analysis = step.lower(params, (zeros, zeros), x, targets).compile().memory_analysis()
  total = (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
           + analysis.output_size_in_bytes)
  return total / 2**20


def main(argv):
  del argv
  rounds = _ROUNDS.value
  # Bias -0.4: h ~ sigmoid(-0.4) = 0.40, so most examples halt after 3 steps.
  parity = _setting("parity (tanh 128, batch 128, M=100)", _tanh_cell, "tanh", batch=128,
                    inputs=64, hidden=128, max_steps=100, time_steps=1, halting_bias=-0.4,
                    rounds=rounds)
  settings = {"parity": parity}
  if _LSTM.value:
    settings["lstm"] = _setting("lstm (LSTM 512, batch 32, T=5, M=20)", _lstm_cell, "lstm",
                                batch=32, inputs=64, hidden=512, max_steps=20, time_steps=5,
                                halting_bias=-0.4, rounds=max(5, rounds // 3))
  print(f"{'setting':40s} {'mean N':>6s} {'while ms':>9s} {'scan ms':>9s} {'plain ms':>9s}"
        f" {'while/plain':>11s} {'scan/while':>10s}")
  for r in settings.values():
    print(f"{r['setting']:40s} {r['mean_steps']:6.2f} {r['ms']['while']:9.3f}"
          f" {r['ms']['scan']:9.3f} {r['ms']['plain']:9.3f} {r['while_over_plain']:11.2f}"
          f" {r['scan_over_while']:10.2f}")
    print(f"{'':40s} forward only: while {r['ms']['while_forward']:.3f} ms, plain "
          f"{r['ms']['plain_forward']:.3f} ms, ratio {r['forward_while_over_plain']:.2f}")
    print(f"{'':40s} compile s: " + ", ".join(
        f"{k} {v:.2f}" for k, v in r["compile_s"].items())
          + f"; loop iterations per input step: {r['loop_iterations']}")
  cap = _cap_setting(max(5, rounds // 3))
  print(f"cap (tanh 128, batch 128, N = M = 100): while {cap['ms']['while']:.3f} ms, "
        f"scanned cell {cap['ms']['scan_plain']:.3f} ms, ratio {cap['while_over_plain']:.2f}")
  mixed = _mixed_setting(rounds)
  print(f"mixed N (tanh 128, batch 128, M=100, mean N {mixed['mean_steps']:.2f}, max "
        f"{mixed['max_steps']}): while {mixed['ms']['while']:.3f} ms, compact "
        f"{mixed['ms']['compact']:.3f} ms, plain for the mean N "
        f"{mixed['ms']['plain_mean_n']:.3f} ms; while/compact "
        f"{mixed['compact_speedup']:.2f}, compact/plain {mixed['compact_over_mean_plain']:.2f}")
  print(f"{'':40s} floor (compaction by hand, plain autodiff) {mixed['ms']['floor']:.3f} ms: "
        f"floor/plain {mixed['floor_over_mean_plain']:.2f}, compact/floor "
        f"{mixed['compact_over_floor']:.2f}; schedule read from the step index: "
        f"compact/plain "
        f"{mixed['index_schedule_over_mean_plain']:.2f}")
  summary = {
      "parity_cap_while_over_plain": cap["while_over_plain"],
      "mixed_compact_speedup": mixed["compact_speedup"],
      "mixed_compact_over_mean_plain": mixed["compact_over_mean_plain"],
      "mixed_floor_over_mean_plain": mixed["floor_over_mean_plain"],
      "mixed_compact_over_floor": mixed["compact_over_floor"],
      "mixed_index_schedule_over_mean_plain": mixed["index_schedule_over_mean_plain"],
      "mixed_mean_steps": mixed["mean_steps"],
      "cap_ms": cap["ms"],
      "mixed_ms": mixed["ms"],
  }
  for name, r in settings.items():
    summary.update({
        f"{name}_while_over_plain": r["while_over_plain"],
        f"{name}_scan_over_while": r["scan_over_while"],
        f"{name}_forward_while_over_plain": r["forward_while_over_plain"],
        f"{name}_mean_steps": r["mean_steps"],
        f"{name}_ms": r["ms"],
        f"{name}_compile_s": r["compile_s"],
    })
  if _LONG_SEQ.value:
    for backend in ("while", "scan"):
      summary[f"long_seq_peak_mb_{backend}"] = _long_sequence_memory_mb(backend)
    print("long sequence (LSTM 128, batch 16, T=200, M=100), compiled memory of one "
          f"training step: while {summary['long_seq_peak_mb_while']:.1f} MB, "
          f"scan {summary['long_seq_peak_mb_scan']:.1f} MB")
  if _JSON.value:
    print(json.dumps(summary))


if __name__ == "__main__":
  app.run(main)
