"""benchmarks/op_profile.py: the HLO it reads, the sums it makes, and a profile of a real loop."""

import os
import sys

import jax
import jax.numpy as jnp

from sweep_runs import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import op_profile  # noqa: E402  (benchmarks/ is not a package)

HLO = """\
ENTRY %main.9 (a: f32[4,8], b: f32[8,2]) -> f32[4,2] {
  %dot.3 = f32[4,2]{1,0} dot(%a, %b), lhs_contracting_dims={1}, metadata={op_name="jit(f)/while/body/dot_general"}
  %copy.4 = f32[4,2]{1,0} copy(%dot.3)
  %while.5 = (s32[], f32[4,2]{1,0}) while(%tuple.1), condition=%cond, body=%body, metadata={op_name="jit(f)/while"}
  ROOT %fusion.6 = f32[4,2]{1,0} fusion(%copy.4), kind=kLoop, metadata={op_name="jit(f)/tanh"}
}
"""


def test_instructions_read_opcode_shape_and_scope():
  hlo = op_profile.instructions(HLO)
  assert hlo["dot.3"] == op_profile.Instruction("dot", "f32[4,2]{1,0}",
                                                "jit(f)/while/body/dot_general")
  assert hlo["copy.4"] == op_profile.Instruction("copy", "f32[4,2]{1,0}", "")
  assert hlo["fusion.6"].op_name == "jit(f)/tanh"
  assert hlo["while.5"].opcode == "while"


def test_time_by_scope_sums_leaf_ops_per_call():
  hlo = op_profile.instructions(HLO)
  events = [
      {"ph": "X", "name": "dot.3", "dur": 3000.0},
      {"ph": "X", "name": "dot.3", "dur": 1000.0},
      {"ph": "X", "name": "copy.4", "dur": 500.0},
      {"ph": "X", "name": "fusion.6", "dur": 200.0},
      {"ph": "X", "name": "while.5", "dur": 9000.0},  # a container: its ops count, not it
      {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 9000.0},  # not an instruction
      {"ph": "i", "name": "dot.3", "dur": 7000.0},  # not a complete event
  ]
  times = op_profile.time_by_scope(events, hlo, depth=2, calls=2)
  assert times == {"jit(f)/while": 2.0, "copy f32[4,2]{1,0}": 0.25, "jit(f)/tanh": 0.1}
  assert list(times) == ["jit(f)/while", "copy f32[4,2]{1,0}", "jit(f)/tanh"]  # largest first
  deeper = op_profile.time_by_scope(events, hlo, depth=4, calls=1)
  assert deeper["jit(f)/while/body/dot_general"] == 4.0


def test_profile_finds_the_matrix_products_of_a_scan():
  w = jnp.full((64, 64), 0.01)

  def f(x, w):
    return jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), x, None, length=50)[0]

  times = op_profile.profile(f, (jnp.ones((8, 64)), w), calls=2, depth=10)
  dots = [key for key in times if key.endswith("dot_general") and "/while/" in key]
  assert dots, times
  assert all(ms >= 0 for ms in times.values())
  assert sum(times[key] for key in dots) > 0
