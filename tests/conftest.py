"""Shared fixtures: one real run of ``launch/sweeps/tiny.py`` for the sweep and summary tests."""

import pytest

import sweep_runs


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> sweep_runs.TinySweep:
  return sweep_runs.run_tiny_sweep(str(tmp_path_factory.mktemp("sweeps") / "tiny"))
