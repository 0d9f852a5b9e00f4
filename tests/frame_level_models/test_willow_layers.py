"""Willow's pooling layers and recurrent encoders against tests/reference/willow_numpy.py (numpy
written from Willow's frame_level_models.py): inference mode on padded videos (garbage in the
padding, the reference run on each video's valid frames), training mode (batch statistics) on
full videos, and padding that leaves training-mode outputs unchanged; the GRU stack against TF1's
cells and dynamic_rnn."""
import functools

import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

import willow_weights
from frame_level_models import layers
from reference import starter_numpy, willow_numpy

TOL = dict(rtol=1e-5, atol=1e-5)
NUM_FRAMES = np.array([3, 6, 1, 4], np.int32)
MAX_T = 6
SIZE = 5
SCOPE = "s/"

# (layer factory, reference forward with weights under SCOPE)
CASES = {
    "netvlad": (lambda: layers.NetVLAD(3), willow_numpy.netvlad),
    "netvlad_no_bn": (lambda: layers.NetVLAD(3, add_batch_norm=False),
                      functools.partial(willow_numpy.netvlad, add_batch_norm=False)),
    "lightvlad": (lambda: layers.LightVLAD(3), willow_numpy.lightvlad),
    "lightvlad_no_bn": (lambda: layers.LightVLAD(3, add_batch_norm=False),
                        functools.partial(willow_numpy.lightvlad, add_batch_norm=False)),
    "netvlagd": (lambda: layers.NetVLAGD(3), willow_numpy.netvlagd),
    "netfv_coupled": (lambda: layers.NetFV(3, coupling_factor=0.3),
                      functools.partial(willow_numpy.netfv, coupling_factor=0.3)),
    "netfv_centroids": (lambda: layers.NetFV(3, couple_weights=False),
                        functools.partial(willow_numpy.netfv, couple_weights=False)),
    "netfv_no_bn": (lambda: layers.NetFV(3, add_batch_norm=False),
                    functools.partial(willow_numpy.netfv, add_batch_norm=False)),
    "soft_dbof": (lambda: layers.SoftDBoF(4), willow_numpy.soft_dbof),
    "soft_dbof_max": (lambda: layers.SoftDBoF(4, max_pool=True),
                      functools.partial(willow_numpy.soft_dbof, max_pool=True)),
    "soft_dbof_no_bn": (lambda: layers.SoftDBoF(4, add_batch_norm=False),
                        functools.partial(willow_numpy.soft_dbof, add_batch_norm=False)),
    "gated_dbof": (lambda: layers.GatedDBoF(4), willow_numpy.gated_dbof),
    "gated_dbof_no_bn": (lambda: layers.GatedDBoF(4, add_batch_norm=False),
                         functools.partial(willow_numpy.gated_dbof, add_batch_norm=False)),
}


def padded_frames(rng, num_frames, garbage=True):
    frames = rng.normal(0, 1, (len(num_frames), MAX_T, SIZE))
    for b, n in enumerate(num_frames):
        frames[b, n:] = rng.normal(20.0, 30.0, (MAX_T - n, SIZE)) if garbage else 0.0
    return frames.astype(np.float32)


def built(case, rng):
    layer = CASES[case][0]()
    layer.build([(None, None, SIZE), (None,)])
    willow_weights.randomize_batch_norms(layer, rng)
    for weight in layer.trainable_weights:  # biases and BN away from their initial values
        if len(weight.shape) == 1:
            weight.assign(rng.normal(0, 0.5, weight.shape))
    return layer


def run(layer, frames, num_frames, training):
    return layer([tf.constant(frames), tf.constant(num_frames)], training=training).numpy()


@pytest.mark.parametrize("case", list(CASES))
def test_pooling_inference_masks_padding(case):
    rng = np.random.default_rng(1)
    layer = built(case, rng)
    frames = padded_frames(rng, NUM_FRAMES)
    weights = willow_weights.pooling(layer, SCOPE)
    reference = CASES[case][1]
    expected = np.concatenate([reference(frames[b:b + 1, :n].astype(np.float64), weights, SCOPE)
                               for b, n in enumerate(NUM_FRAMES)])
    np.testing.assert_allclose(run(layer, frames, NUM_FRAMES, False), expected, **TOL)


@pytest.mark.parametrize("case", list(CASES))
def test_pooling_training_uses_batch_statistics_of_valid_frames(case):
    rng = np.random.default_rng(2)
    layer = built(case, rng)
    full = np.full(len(NUM_FRAMES), MAX_T, np.int32)
    frames = padded_frames(rng, full)
    expected = CASES[case][1](frames.astype(np.float64), willow_weights.pooling(layer, SCOPE),
                              SCOPE, bn_training=True)
    np.testing.assert_allclose(run(layer, frames, full, True), expected, **TOL)
    # Padded videos: the garbage in the padding changes nothing, batch statistics included.
    garbage, zeros = padded_frames(rng, NUM_FRAMES), padded_frames(rng, NUM_FRAMES, False)
    garbage[:, :1] = zeros[:, :1] = rng.normal(0, 1, (len(NUM_FRAMES), 1, SIZE))
    for b, n in enumerate(NUM_FRAMES):
        zeros[b, :n] = garbage[b, :n]
    np.testing.assert_allclose(run(layer, garbage, NUM_FRAMES, True),
                               run(layer, zeros, NUM_FRAMES, True), **TOL)


def test_pooling_output_sizes_and_config():
    frames, num_frames = tf.zeros([2, 3, SIZE]), tf.constant([3, 0])
    sizes = {"netvlad": SIZE * 3, "lightvlad": SIZE * 3, "netvlagd": SIZE * 3,
             "netfv_coupled": 2 * SIZE * 3, "soft_dbof": 4, "soft_dbof_max": 8, "gated_dbof": 4}
    for case, size in sizes.items():
        layer = CASES[case][0]()
        output = layer([frames, num_frames])
        assert output.shape == (2, size), case
        assert np.all(np.isfinite(output.numpy())), case  # a video without frames stays finite
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="cluster_size must be positive, got 0"):
        layers.NetFV(0)


def gru_reference(layer, frames, num_frames):
    """Willow's GRU stack: the final states [h_0, h_1, ...] after each video's num_frames steps."""
    stack = willow_numpy.gru_layers_of(willow_weights.gru(layer), "RNN/rnn/", layer.num_layers,
                                       layer.cells)
    states = starter_numpy.run_dynamic_rnn(frames, num_frames, stack)
    return np.concatenate([state[0] for state in states], axis=1)


def test_gru_encoder_matches_tf1_cells():
    rng = np.random.default_rng(3)
    layer = layers.GruEncoder(cells=4, num_layers=2)
    layer.build([(None, None, SIZE), (None,)])
    for weight in layer.weights:
        weight.assign(rng.normal(0, 0.5, weight.shape))
    num_frames = np.array([3, 6, 1, 0], np.int32)
    frames = padded_frames(rng, num_frames)
    output = run(layer, frames, num_frames, False)
    assert output.shape == (4, 2 * 4)
    np.testing.assert_allclose(output, gru_reference(layer, frames, num_frames), **TOL)
    np.testing.assert_array_equal(output[3], 0.0)  # no frames: the zero initial state
    # Willow's --*_random_sequence feeds `iterations` sampled frames with the ORIGINAL num_frames
    # as sequence_length: a video longer than the frames given runs them all.
    longer = np.array([9, 6, 1, 0], np.int32)
    np.testing.assert_allclose(run(layer, frames, longer, False),
                               gru_reference(layer, frames, longer), **TOL)
    assert layer.get_prunable_weights() == [weight for gru in layer.grus
                                            for weight in (gru.cell.kernel,
                                                           gru.cell.recurrent_kernel)]


def test_reverse_frames_as_tf_reverse_sequence():
    rng = np.random.default_rng(4)
    num_frames = np.array([3, 6, 1, 0, 9], np.int32)
    frames = rng.normal(0, 1, (5, MAX_T, 2)).astype(np.float32)
    expected = frames.copy()
    for b, n in enumerate(np.minimum(num_frames, MAX_T)):
        expected[b, :n] = frames[b, :n][::-1]
    output = layers.ReverseFrames()([tf.constant(frames), tf.constant(num_frames)]).numpy()
    np.testing.assert_array_equal(output, expected)


def test_gru_initial_values_follow_tf1():
    """TF1's GRUCell: Glorot-uniform over [input + units, 2u] (gates) and [input + units, u]
    (candidate), gate biases 1.0, candidate bias 0."""
    size, units = 300, 200
    layer = layers.GruEncoder(cells=units, num_layers=1)
    layer.build([(None, None, size), (None,)])
    cell = layer.grus[0].cell
    kernel = np.concatenate([cell.kernel.numpy(), cell.recurrent_kernel.numpy()])
    for columns, width in ((slice(0, 2 * units), 2 * units), (slice(2 * units, None), units)):
        limit = np.sqrt(6.0 / (size + units + width))
        block = kernel[:, columns]
        assert 0.99 * limit < np.abs(block).max() <= limit
        assert abs(block.std() - limit / np.sqrt(3.0)) < 0.02 * limit  # uniform's std
    assert not np.allclose(kernel[:, :units], kernel[:, units:2 * units])  # z and r differ
    np.testing.assert_array_equal(cell.bias.numpy(), [1.0] * 2 * units + [0.0] * units)
