"""The optimizer of models that place their own variables (MOD trees): the base optimizer's
numbers and checkpoint layout, with each variable's clipping and update on its device (where the
ops run: tests/frame_level_models/test_mod_tree.py, on three logical devices; across workers: test_multi_worker.py)."""
import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from yt8m.training.optimizers import make_optimizer

GRADIENTS = [np.array([[3.0, -4.0], [0.5, 1.0]], np.float32), np.array([0.1, -0.2], np.float32)]


def _variables():
    return [tf.Variable([[1.0, 2.0], [-1.0, 0.5]]), tf.Variable([0.3, -0.3])]


@pytest.mark.parametrize("name", ["AdamOptimizer", "MomentumOptimizer", "RMSPropOptimizer"])
def test_steps_equal_the_keras_optimizer_with_clipnorm(name):
    results = []
    for placed in (False, True):
        variables = _variables()
        optimizer = make_optimizer(name, 0.1, 1.0, on_variable_devices=placed)

        @tf.function
        def step(scale):
            optimizer.apply_gradients(
                [(tf.constant(g) * scale, v) for g, v in zip(GRADIENTS, variables)])

        for scale in (1.0, 0.5, 3.0):  # the first gradient's norm: 5.1, 2.6, 15.4 (clipped)
            step(tf.constant(scale))
        results.append([v.numpy() for v in variables + optimizer.variables])
    assert len(results[0]) == len(results[1])
    for plain, placed in zip(*results):
        np.testing.assert_allclose(placed, plain, rtol=1e-6, atol=1e-7)


def test_checkpoints_keep_the_base_optimizers_layout(tmp_path):
    variables = _variables()
    plain = keras.optimizers.Adam(0.1, clipnorm=1.0)
    plain.apply_gradients(zip([tf.constant(g) for g in GRADIENTS], variables))
    path = tf.train.Checkpoint(optimizer=plain).save(str(tmp_path / "plain"))

    placed = make_optimizer("AdamOptimizer", 0.1, 1.0, on_variable_devices=True)
    placed.build(variables)
    placed_path = tf.train.Checkpoint(optimizer=placed).save(str(tmp_path / "placed"))
    assert tf.train.list_variables(placed_path) == tf.train.list_variables(path)
    tf.train.Checkpoint(optimizer=placed).restore(path).assert_consumed()
    for restored, saved in zip(placed.variables, plain.variables):  # iterations and slots
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())

    config = placed.get_config()
    assert (config["clipnorm"], config["jit_compile"]) == (1.0, False)
    copy = type(placed).from_config(config)
    assert (copy.variable_clipnorm, copy.clipnorm) == (1.0, None)  # clipped in update_step
