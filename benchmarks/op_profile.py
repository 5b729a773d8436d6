r"""Where a training step's time goes: the compiled ops of one value-and-grad, by JAX source.

Compiles the bare jitted gradient of one network's training loss (the function
``train_loop.py`` times against its loop), runs it ``--calls`` times under the
JAX profiler, and sums the time of every compiled op (XLA's leaf thunks:
fusions, dots, copies; not the loops and conditionals that contain them) by
the JAX name scope it came from, cut to ``--depth`` components: e.g.
``jit(loss)/transpose(jvp())/while/body/closed_call/cond`` is the backward
scan's branch over ponder steps 2, 3, .... Ops without a JAX name (copies XLA
inserted) are listed by opcode and shape. Times are milliseconds per call,
summed over threads (with intra-op threads the sum exceeds the wall time).

  PYTHONPATH=. python benchmarks/op_profile.py --task=text --halting_bias=4.6   # the LM at N ~ 1.5
  PYTHONPATH=. python benchmarks/op_profile.py --task=text --mode=none          # its no-ACT floor

Compare runs on the same machine and load; the profiler adds a little to each op.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import jax

import train_loop  # benchmarks/train_loop.py, beside this script

_CONTAINERS = frozenset({"while", "conditional", "call"})  # their time is their ops'
_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = (\(.*?\)|\S+) ([\w\-]+)\(")  # tuples too
_OP_NAME = re.compile(r'op_name="([^"]*)"')


class Instruction(NamedTuple):
  """One instruction of the compiled HLO: its opcode, result shape and JAX name scope."""

  opcode: str
  shape: str
  op_name: str  # "" where XLA added the op


def instructions(hlo_text: str) -> dict[str, Instruction]:
  """The instructions of an optimized HLO module's text, by name."""
  found = {}
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if match:
      op_name = _OP_NAME.search(line)
      found[match.group(1)] = Instruction(match.group(3), match.group(2),
                                          op_name.group(1) if op_name else "")
  return found


def time_by_scope(events: Iterable[Mapping], hlo: Mapping[str, Instruction], depth: int,
                  calls: int) -> dict[str, float]:
  """Milliseconds per call of the leaf ops in trace ``events`` (complete events:
  ``name``, ``dur`` in microseconds), by name scope cut to ``depth`` components;
  ops without a scope by ``"<opcode> <shape>"``. Events that are not an
  instruction of ``hlo`` (runtime bookkeeping) and containers are left out."""
  totals = collections.Counter()
  for event in events:
    op = hlo.get(event.get("name"))
    if event.get("ph") != "X" or op is None or op.opcode in _CONTAINERS:
      continue
    key = "/".join(op.op_name.split("/")[:depth]) if op.op_name else f"{op.opcode} {op.shape}"
    totals[key] += event["dur"] / 1e3 / calls
  return dict(totals.most_common())


def profile(fn, args, calls: int, depth: int) -> dict[str, float]:
  """:func:`time_by_scope` of the jitted ``fn`` over ``calls`` calls on ``args``."""
  compiled = jax.jit(fn).lower(*args).compile()
  hlo = instructions(compiled.as_text())
  jax.block_until_ready(compiled(*args))  # warm
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(calls):
        jax.block_until_ready(compiled(*args))
    (path,) = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    with gzip.open(path) as f:
      events = json.load(f)["traceEvents"]
  return time_by_scope(events, hlo, depth, calls)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--task", choices=("text", "parity"), default="text",
                      help="the LM of train_loop.py (100-byte windows) or parity first_k")
  parser.add_argument("--mode", default="act", choices=("act", "none", "repeat"))
  parser.add_argument("--halting_bias", type=float, default=1.0,
                      help="4.6: N ~ 1.5 on the LM; 30: N = 1")
  parser.add_argument("--depth", type=int, default=6, help="name scope components kept")
  parser.add_argument("--calls", type=int, default=5)
  parser.add_argument("--top", type=int, default=25)
  args = parser.parse_args()
  for name in ("depth", "calls", "top"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
  config = (train_loop._text if args.task == "text" else train_loop._parity)(
      80, mode=args.mode, halting_bias=args.halting_bias)
  loss, loss_args = train_loop.training_loss(config)
  times = profile(jax.grad(loss), loss_args, args.calls, args.depth)
  print(f"{sum(times.values()):9.2f} ms per call, all ops")
  for key, ms in list(times.items())[:args.top]:
    print(f"{ms:9.2f}  {key}")


if __name__ == "__main__":
  main()
