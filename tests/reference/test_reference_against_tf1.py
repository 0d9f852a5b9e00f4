"""The numpy oracles against TensorFlow's own TF1 implementations (tf.compat.v1: the same cell,
dynamic_rnn, l2_normalize and optimizer code the references ran), in graph mode."""
import numpy as np

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from reference import common
from reference import starter_numpy
from reference import willow_numpy

RNG = np.random.default_rng(1)
UNITS = 3


def _run_graph(build):
    """Builds the graph, randomises every variable, returns (fetched values, {variable: value})."""
    graph = tf.Graph()
    with graph.as_default():
        fetches = build()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for variable in tf.compat.v1.global_variables():
                session.run(variable.assign(
                    RNG.normal(size=variable.shape).astype(np.float32)))
            weights = {v.name[:-2]: session.run(v) for v in tf.compat.v1.global_variables()}
            return session.run(fetches), weights


def test_lstm_and_gru_stacks_match_tf1_dynamic_rnn():
    frames = RNG.normal(size=(3, 5, 4)).astype(np.float32)
    lengths = np.array([5, 2, 0], np.int32)

    def build():
        cells = [tf.compat.v1.nn.rnn_cell.BasicLSTMCell(UNITS, forget_bias=1.0)
                 for _ in range(2)]
        _, lstm_state = tf.compat.v1.nn.dynamic_rnn(
            tf.compat.v1.nn.rnn_cell.MultiRNNCell(cells), frames, sequence_length=lengths,
            dtype=tf.float32)
        with tf.compat.v1.variable_scope("RNN"):
            flat_cells = [tf.compat.v1.nn.rnn_cell.BasicLSTMCell(UNITS, state_is_tuple=False)
                          for _ in range(2)]
            _, flat_state = tf.compat.v1.nn.dynamic_rnn(
                tf.compat.v1.nn.rnn_cell.MultiRNNCell(flat_cells, state_is_tuple=False), frames,
                sequence_length=lengths, dtype=tf.float32, scope="lstm")
        with tf.compat.v1.variable_scope("RNN"):
            gru_cells = [tf.compat.v1.nn.rnn_cell.GRUCell(UNITS) for _ in range(2)]
            _, gru_state = tf.compat.v1.nn.dynamic_rnn(
                tf.compat.v1.nn.rnn_cell.MultiRNNCell(gru_cells, state_is_tuple=False), frames,
                sequence_length=lengths, dtype=tf.float32)
        return lstm_state[-1].h, flat_state, gru_state

    (last_h, flat_state, gru_state), weights = _run_graph(build)
    states = starter_numpy.run_dynamic_rnn(
        frames, lengths, starter_numpy.lstm_layers(weights, "rnn/", 2, UNITS))
    np.testing.assert_allclose(states[-1][1], last_h, atol=1e-6)
    # Willow's state_is_tuple=False state is [c0, h0, c1, h1]
    states = starter_numpy.run_dynamic_rnn(
        frames, lengths, starter_numpy.lstm_layers(weights, "RNN/lstm/", 2, UNITS))
    np.testing.assert_allclose(np.concatenate([part for c_h in states for part in c_h], axis=1),
                               flat_state, atol=1e-6)

    states = starter_numpy.run_dynamic_rnn(
        frames, lengths, willow_numpy.gru_layers_of(weights, "RNN/rnn/", 2, UNITS))
    np.testing.assert_allclose(np.concatenate([s[0] for s in states], axis=1), gru_state,
                               atol=1e-6)


def test_l2_normalize_matches_tf():
    x = np.concatenate([RNG.normal(size=(2, 3, 4)), np.zeros((2, 1, 4))], axis=1)
    np.testing.assert_allclose(common.l2_normalize(x, -1), tf.nn.l2_normalize(x, 2).numpy(),
                               atol=1e-12)


def test_adam_and_rmsprop_steps_match_tf1_optimizers():
    grads = [np.array([2.0, -0.5]), np.array([0.25, 3.0])]

    def build():
        adam_var = tf.compat.v1.get_variable("adam", initializer=tf.constant([1.0, 1.0],
                                                                              tf.float64))
        rms_var = tf.compat.v1.get_variable("rms", initializer=tf.constant([1.0, 1.0],
                                                                            tf.float64))
        grad = tf.compat.v1.placeholder(tf.float64, [2])
        adam = tf.compat.v1.train.AdamOptimizer(0.1).apply_gradients([(grad, adam_var)])
        rms = tf.compat.v1.train.RMSPropOptimizer(0.1).apply_gradients([(grad, rms_var)])
        return adam_var, rms_var, grad, adam, rms

    graph = tf.Graph()
    with graph.as_default():
        adam_var, rms_var, grad, adam, rms = build()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for g in grads:
                session.run([adam, rms], {grad: g})
            tf_adam, tf_rms = session.run([adam_var, rms_var])
    var, m, v = np.ones(2), np.zeros(2), np.zeros(2)
    r_var, r_rms, r_mom = np.ones(2), np.ones(2), np.zeros(2)
    for step, g in enumerate(grads, start=1):
        var, m, v = starter_numpy.adam_step(var, g, m, v, step, 0.1)
        r_var, r_rms, r_mom = starter_numpy.rmsprop_step(r_var, g, r_rms, r_mom, 0.1)
    # TF1 converts the hyper-parameters (0.9, 0.999, 1e-8, lr) to float32 tensors before casting
    # them to the variable's float64: agreement to float32 precision, not 1e-12.
    np.testing.assert_allclose(var, tf_adam, rtol=1e-6)
    np.testing.assert_allclose(r_var, tf_rms, rtol=1e-6)
    # and the Keras-style zero-initialised RMS accumulator would be far off on the first steps
    keras_like, _, _ = starter_numpy.rmsprop_step(np.ones(2), grads[0], np.zeros(2), np.zeros(2),
                                                  0.1)
    assert not np.allclose(keras_like, starter_numpy.rmsprop_step(
        np.ones(2), grads[0], np.ones(2), np.zeros(2), 0.1)[0], rtol=1e-3)
