"""Shared test setup.

* float32 matrix products at full precision on every backend, so that the
  comparisons with the plain references hold on GPUs too (whose default may
  be TF32, about 1e-3 relative);
* one real run of ``launch/sweeps/tiny.py`` for the sweep and summary tests.
"""

import jax
import pytest

import sweep_runs

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> sweep_runs.TinySweep:
  return sweep_runs.run_tiny_sweep(str(tmp_path_factory.mktemp("sweeps") / "tiny"))
