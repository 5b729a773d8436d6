"""Shared test setup.

* float32 matrix products at full precision on every backend, so that the
  comparisons with the plain references hold on GPUs too (whose default may
  be TF32, about 1e-3 relative);
* the compacting loop shrinking its batch by 4 per level rather than 16, so
  that the tests' small batches (8 to 40 examples) compact through several
  levels, as batches of hundreds do with the default;
* one real run of ``launch/sweeps/tiny.py`` for the sweep and summary tests,
  shared by the pytest-xdist workers (the first to ask runs it, under a lock);
* XLA's CPU backend at optimisation level 0 unless ``XLA_FLAGS`` sets a level:
  the suite is bound by compiling (small shapes, hundreds of programs), and
  LLVM's optimisations take about a quarter of its time. The values do not
  change with the level; CI runs the newest JAX's tests at XLA's default level
  (``.ci/run``), so the optimised programs are tested too;
* JAX's compiled programs dropped after a test module once a worker holds many
  memory maps: XLA:CPU maps each program's code into memory, and a worker that
  kept the programs of many modules reached the kernel's limit of memory maps
  per process (``vm.max_map_count``, 65,530 by default; measured: the crash
  came at 65,000) and crashed inside the compiler;
* the quick subset (``pytest -m quick``) for the inner loop: the ponder loop
  and sequences against the reference, the data generators, and the tests
  marked ``quick`` in other modules.
"""

import fcntl
import os
import pickle

if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):  # before JAX starts
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_backend_optimization_level=0").strip()

import jax
import pytest

import sweep_runs
from act_jax.backends import compact

jax.config.update("jax_default_matmul_precision", "highest")
compact.SHRINK = 4  # read when a ponder loop is traced; set before any test traces one

QUICK_MODULES = ("test_ponder_loop.py", "test_sequence.py", "test_task_data.py",
                 "test_text_data.py")


def pytest_collection_modifyitems(items):
  for item in items:
    if item.path.name in QUICK_MODULES:
      item.add_marker(pytest.mark.quick)


# Memory maps a worker may hold after a module before it drops its compiled programs; one
# module adds up to about 25,000 (measured), the kernel allows 65,530.
MAPS_BEFORE_CLEARING = 20_000


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops JAX's compiled programs (and their memory maps) after a module if the worker
  holds more than :data:`MAPS_BEFORE_CLEARING` maps (Linux; elsewhere never)."""
  yield
  try:
    with open("/proc/self/maps") as maps:
      count = sum(1 for _ in maps)
  except OSError:
    return
  if count > MAPS_BEFORE_CLEARING:
    jax.clear_caches()


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> sweep_runs.TinySweep:
  shared = tmp_path_factory.getbasetemp()
  if "PYTEST_XDIST_WORKER" in os.environ:  # every worker's base directory has one parent
    shared = shared.parent
  saved = shared / "tiny_sweep.pickle"
  with open(shared / "tiny_sweep.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if not saved.exists():
      saved.write_bytes(pickle.dumps(sweep_runs.run_tiny_sweep(str(shared / "tiny_sweep"))))
    return pickle.loads(saved.read_bytes())
