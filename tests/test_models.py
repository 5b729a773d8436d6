"""The task networks (tasks/models.py): weight initialisation, memory settings."""

import math

import jax
import numpy as np
import pytest
from flax import nnx

from act_jax.ponder_loop import DEFAULT_CHUNK_STEPS
from tasks import models, networks, training_step
from tasks.configs import addition
from tasks.registry import get_task


def _model(weight_init, mode="act", cell="tanh"):
  return models.TaskModel(input_size=64, hidden_size=128, output_size=1, cell=cell, mode=mode,
                          repeats=1, max_steps=10, epsilon=0.01, halting_bias=1.0,
                          backend="while", weight_init=weight_init, rngs=nnx.Rngs(0))


def _check_uniform(values, limit):
  """Within +-limit, filling it (max |w| near limit), with a uniform's spread."""
  values = np.asarray(values).ravel()
  assert np.max(np.abs(values)) <= limit
  if values.size >= 1000:
    assert np.max(np.abs(values)) > 0.99 * limit
    np.testing.assert_allclose(np.std(values), limit / math.sqrt(3), rtol=0.05)


@pytest.mark.quick
@pytest.mark.parametrize("mode", ["act", "none"])
def test_tf_glorot_is_tensorflow_1s_default_for_the_tanh_network(mode):
  model = _model("tf_glorot", mode)
  cell = model.act.cell if mode == "act" else model.cell
  cell_limit = math.sqrt(6.0 / (65 + 128 + 128))  # one [x; flag; h] -> h kernel in TF
  _check_uniform(cell.dense_i.kernel[...], cell_limit)
  _check_uniform(cell.dense_h.kernel[...], cell_limit)
  np.testing.assert_array_equal(cell.dense_i.bias[...], 0.0)  # BasicRNNCell: zeros
  output = model.act.output if mode == "act" else model.output
  _check_uniform(output.kernel[...], math.sqrt(6.0 / 129))
  _check_uniform(output.bias[...], math.sqrt(3.0))
  assert np.all(output.bias[...] != 0.0)
  if mode == "act":
    _check_uniform(model.act.halting.kernel[...], math.sqrt(6.0 / 129))
    np.testing.assert_array_equal(model.act.halting.bias[...], 1.0)  # halting_bias kept


@pytest.mark.quick
def test_flax_default_keeps_flax_initialisers():
  cell = _model("flax").act.cell
  recurrent = np.asarray(cell.dense_h.kernel[...])
  np.testing.assert_allclose(recurrent.T @ recurrent, np.eye(128), atol=1e-4)  # orthogonal
  with pytest.raises(ValueError, match="weight_init='tf_glorot'.*cell='lstm'"):
    _model("tf_glorot", cell="lstm")
  with pytest.raises(ValueError, match="weight_init must be one of .*'he'"):
    _model("he")


@pytest.mark.parametrize("field,value", [("remat", True), ("chunk_steps", 1)])
def test_memory_settings_reach_the_model_and_keep_its_gradient(field, value):
  """config.remat and config.chunk_steps trade memory for a recomputed forward pass;
  the gradient of a sequence task's loss stays what the defaults give."""
  config = addition.get_config("tiny")
  config.max_steps = 4
  task = get_task(config.task)
  batch = task.source(config).train(0)

  def gradient(config):
    model = networks.build_model(config, task)
    graphdef, params = nnx.split(model)
    loss = lambda p: training_step.loss_fn(nnx.merge(graphdef, p), batch, config.tau,
                                    task.metric)[0]
    return model, jax.grad(loss)(params)

  default_model, default_grad = gradient(config)
  assert default_model.act.chunk_steps == DEFAULT_CHUNK_STEPS  # the config's is the library's
  config[field] = value
  model, grad = gradient(config)
  assert (model.remat, model.act.chunk_steps) != (default_model.remat,
                                                  default_model.act.chunk_steps)
  assert batch.inputs.shape[1] > 1 and max(jax.tree.leaves(
      jax.tree.map(lambda g: float(np.max(np.abs(g))), default_grad))) > 0
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               grad, default_grad)
