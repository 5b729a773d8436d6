"""Ensembles: K networks in one jit-compiled step are K single-network runs."""

import json
import os
import signal

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tasks import config_checks, evaluation, metric_writer, networks, train
from tasks.checkpoints import load_trained_model
from tasks.results import summary_table
from tasks.configs import parity
from tasks.configs import text as text_config
from tasks.registry import get_task

TAUS = (0.01, 0.001)
SCALARS = ("sequence_error", "mean_steps", "mean_ponder")


def _tiny(**overrides):
  config = parity.get_config("tiny")
  config.update(overrides)
  return config


def _ensemble_config():
  return _tiny(num_networks=len(TAUS), taus=TAUS)


def _latest_params(workdir):
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  step = manager.latest_step()
  params = manager.restore(step)["model"]
  manager.close()
  return step, params


def _assert_close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


@pytest.fixture(name="ensemble", scope="module")
def _ensemble(tmp_path_factory):
  """The workdir and results of an uninterrupted K = 2 parity run."""
  workdir = tmp_path_factory.mktemp("ensemble")
  return workdir, train.train_and_evaluate(_ensemble_config(), str(workdir))


def test_each_network_is_the_single_network_run_of_its_seed_and_tau(ensemble, tmp_path):
  workdir, results = ensemble
  step, stacked = _latest_params(workdir)
  networks = results["networks"]
  assert step == 20 and [(n["seed"], n["tau"]) for n in networks] == list(enumerate(TAUS))
  for i, tau in enumerate(TAUS):
    single = train.train_and_evaluate(_tiny(seed=i, tau=tau), str(tmp_path / str(i)))
    _, params = _latest_params(tmp_path / str(i))
    _assert_close(jax.tree.map(lambda x, i=i: x[i], stacked), params)
    assert [(n["seed"], n["tau"]) for n in single["networks"]] == [(i, tau)]
    _assert_close({k: networks[i][k] for k in (*SCALARS, "by_difficulty")},
                  {k: single[k] for k in (*SCALARS, "by_difficulty")})


def test_load_trained_model_gives_a_network_and_its_single_network_config(ensemble):
  workdir, results = ensemble
  model, single, step = load_trained_model(str(workdir), network=1)
  assert step == 20 and (single.seed, single.tau, single.num_networks) == (1, TAUS[1], 1)
  again = evaluation.evaluate(model, single)
  _assert_close({k: again[k] for k in (*SCALARS, "by_difficulty")},
                {k: results["networks"][1][k] for k in (*SCALARS, "by_difficulty")})
  with pytest.raises(config_checks.ConfigError, match="networks 0..1, not 2"):
    load_trained_model(str(workdir), network=2)


def test_results_metrics_and_summary_hold_the_mean_and_each_network(ensemble):
  workdir, results = ensemble
  networks = results["networks"]
  for key in SCALARS:  # the top level: the mean over networks
    np.testing.assert_allclose(results[key], np.mean([n[key] for n in networks]), rtol=1e-6)
  assert results["tau"] == pytest.approx(np.mean(TAUS))
  saved = json.loads((workdir / "results.json").read_text())["networks"]
  assert saved == json.loads(json.dumps(networks))
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], r["split"]) for r in rows] == [
      (10, "train"), (10, "eval"), (20, "train"), (20, "eval")]
  for row in rows:
    for key in ("loss", "sequence_error") if row["split"] == "train" else SCALARS:
      np.testing.assert_allclose(row[key], (row[f"{key}/0"] + row[f"{key}/1"]) / 2, rtol=1e-6)
  lines = summary_table(results).splitlines()
  assert "2 networks" in lines[0]
  assert lines[1].startswith("  network 0 (seed 0, tau=0.01): sequence error")
  assert lines[2].startswith("  network 1 (seed 1, tau=0.001): sequence error")


def test_interrupted_ensemble_resumes_to_the_uninterrupted_parameters(
    ensemble, tmp_path, monkeypatch):
  write = metric_writer.MetricWriter.write

  def interrupt_after_eval(self, step, split, metrics):
    write(self, step, split, metrics)
    if split == "eval":
      os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C at step 10: stop there and save

  monkeypatch.setattr(metric_writer.MetricWriter, "write", interrupt_after_eval)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(_ensemble_config(), str(tmp_path))
  assert _latest_params(tmp_path)[0] == 10
  monkeypatch.undo()
  resumed = train.train_and_evaluate(_ensemble_config(), str(tmp_path))
  step, params = _latest_params(tmp_path)
  assert step == resumed["step"] == 20
  _assert_close(params, _latest_params(ensemble[0])[1])
  with pytest.raises(config_checks.ConfigError, match=r"another config.*taus: \[0.01, 0.001\] -> \[\]"):
    train.train_and_evaluate(_tiny(num_networks=2), str(tmp_path))


@pytest.mark.parametrize("overrides,message", [
    ({"num_networks": 0}, "num_networks.*got 0"),
    ({"num_networks": 2, "taus": (0.1,)}, r"taus has 1 values \(0.1,\).*num_networks is 2"),
    ({"num_networks": 3, "taus": (0.1, 0.2, 0.3, 0.4)}, "taus has 4 values.*num_networks is 3"),
    ({"num_networks": 2, "taus": (0.1, -0.5)}, r"taus\[1\].*-0.5"),
])
def test_bad_num_networks_or_taus_is_a_clear_error(overrides, message, tmp_path):
  config = _tiny(**overrides)
  with pytest.raises(config_checks.ConfigError, match=message):
    train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()  # nothing ran


def test_text_ensemble_stacks_the_networks_host_batches(tmp_path):
  rng = np.random.default_rng(0)
  words = ["the", "cat", "sat", "on", "a", "mat", ",", "<b>", "42"]
  path = tmp_path / "words.txt"
  path.write_bytes(" ".join(rng.choice(words, 2000)).encode()[:6_000])
  config = text_config.get_config("tiny")
  config.update({"num_networks": 2, "taus": (0.01, 0.0), "num_steps": 10})
  config.task_options.path = str(path)
  results = train.train_and_evaluate(config, str(tmp_path / "run"))
  networks = results["networks"]
  assert [(n["seed"], n["tau"]) for n in networks] == [(0, 0.01), (1, 0.0)]
  for key in ("bits_per_character", "train_bits_per_character", "mean_ponder"):
    np.testing.assert_allclose(results[key], np.mean([n[key] for n in networks]), rtol=1e-5)
  assert networks[0]["bits_per_character"] != networks[1]["bits_per_character"]
  assert results["count"] == 2 * networks[1]["count"]  # both score the same held-out bytes


def test_batches_of_all_networks_come_from_one_call_and_equal_each_source(tmp_path):
  config = _tiny(num_networks=3)
  batches = networks.network_batches(config, get_task("parity"), networks.data_mesh())
  path = tmp_path / "bytes"
  path.write_bytes(np.random.default_rng(0).integers(0, 256, 5_000, np.uint8).tobytes())
  lm = text_config.get_config("tiny")
  lm.update({"num_networks": 2, "taus": (0.01, 0.0)})
  lm.task_options.path = str(path)
  # Text: windows gathered on the device (the loop) equal those gathered on the host.
  text_batches = networks.network_batches(lm, get_task("text"), networks.data_mesh())
  for stacked, per_network in (
      (batches.train(7), [source.train(7) for source in batches.sources]),
      (next(batches.held_out(1)), [next(source.held_out(1)) for source in batches.sources]),
      (text_batches.train(7), [source.train(7) for source in text_batches.sources])):
    for i, own in enumerate(per_network):
      jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a)[i], b),
                   stacked, jax.device_get(own))
  assert not np.array_equal(*np.asarray(text_batches.train(7).inputs))  # seeds 0 and 1
