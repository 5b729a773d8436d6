"""Shared test setup.

* float32 matrix products at full precision on every backend, so that the
  comparisons with the plain references hold on GPUs too (whose default may
  be TF32, about 1e-3 relative);
* the compacting loop shrinking its batch by 4 per level rather than 16, so
  that the tests' small batches (8 to 40 examples) compact through several
  levels, as batches of hundreds do with the default;
* one real run of ``launch/sweeps/tiny.py`` for the sweep and summary tests;
* the quick subset (``pytest -m quick``) for the inner loop: the ponder loop
  and sequences against the reference, the data generators, and the tests
  marked ``quick`` in other modules.
"""

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


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> sweep_runs.TinySweep:
  return sweep_runs.run_tiny_sweep(str(tmp_path_factory.mktemp("sweeps") / "tiny"))
