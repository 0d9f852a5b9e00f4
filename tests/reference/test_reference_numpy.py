"""Self-tests of the reference oracles: hand-computed tiny cases (gate orders, normalisation axes,
epsilons, tie rules) and a check that every forward pass reads exactly the variables that
param_counts lists for the same flags."""
import math

import numpy as np
import pytest

from reference import common
from reference import mod_submission
from reference import nextvlad_numpy
from reference import param_counts as pc
from reference import starter_numpy
from reference import willow_numpy

RNG = np.random.default_rng(0)


class TrackingDict(dict):
    """A weights dict that records which keys a forward pass read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


def random_weights(shapes):
    weights = TrackingDict()
    for name, shape in shapes.items():
        if name.endswith("/moving_variance"):
            weights[name] = RNG.uniform(0.5, 1.5, shape)
        elif name.endswith("/gamma"):
            weights[name] = RNG.uniform(0.5, 1.5, shape)
        else:
            weights[name] = RNG.normal(0.0, 0.3, shape)
    return weights


def identity_bn(weights, scope, channels):
    """Moving variance 1 - eps makes slim's inference batch norm the identity."""
    weights[scope + "/beta"] = np.zeros(channels)
    weights[scope + "/gamma"] = np.ones(channels)
    weights[scope + "/moving_mean"] = np.zeros(channels)
    weights[scope + "/moving_variance"] = np.full(channels, 1.0 - common.BN_EPSILON)


def assert_reads_all(weights):
    assert weights.read == set(weights), sorted(set(weights) ^ weights.read)


def frames_1152(batch=2, count=3):
    raw = RNG.normal(size=(batch, count, 1152))
    return starter_numpy.starter_input(raw)


# ----------------------------------------------------------------------------- common


def test_l2_normalize_matches_tf1_epsilon_and_keeps_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-7, 0.0]])
    out = common.l2_normalize(x, axis=1)
    np.testing.assert_allclose(out[0], [0.6, 0.8])
    np.testing.assert_array_equal(out[1], [0.0, 0.0])
    np.testing.assert_allclose(out[2], [1e-7 / math.sqrt(1e-12), 0.0])  # eps on the square sum


def test_batch_norm_inference_and_training_modes():
    weights = {"bn/beta": np.array([1.0]), "bn/gamma": np.array([2.0]),
               "bn/moving_mean": np.array([3.0]), "bn/moving_variance": np.array([4.0])}
    x = np.array([[5.0], [7.0]])
    expected = (x - 3.0) / math.sqrt(4.0 + 1e-3) * 2.0 + 1.0
    np.testing.assert_allclose(common.batch_norm(x, weights, "bn"), expected)
    # training mode: batch mean 6, biased variance 1
    expected = (x - 6.0) / math.sqrt(1.0 + 1e-3) * 2.0 + 1.0
    np.testing.assert_allclose(common.batch_norm(x, weights, "bn", bn_training=True), expected)


def test_dequantize_constants():
    np.testing.assert_allclose(common.dequantize([0, 255]), [-2.0 + 4 / 512, 2.0 + 4 / 512])


def test_sampling_index_arithmetic():
    np.testing.assert_array_equal(
        common.random_frames_index([[0.0, 0.5, 0.9999]], [3]), [[0, 1, 2]])
    np.testing.assert_array_equal(common.random_sequence_index([0.0], [10], 4), [[0, 1, 2, 3]])
    np.testing.assert_array_equal(common.random_sequence_index([0.9999], [10], 4),
                                  [[6, 7, 8, 9]])
    # shorter than the sample: start 0, the last frame repeats
    np.testing.assert_array_equal(common.random_sequence_index([0.7], [2], 4), [[0, 1, 1, 1]])


# ----------------------------------------------------------------------------- starter models


def test_logistic_and_moe_hand_case():
    x = np.array([[2.0]])
    weights = {"fully_connected/weights": np.array([[0.5, -1.0]]),
               "fully_connected/biases": np.array([0.0, 1.0])}
    np.testing.assert_allclose(starter_numpy.logistic_model(x, weights),
                               [[1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(1.0))]])
    # V=2, M=2: class c owns gate columns 3c..3c+2 and expert columns 2c..2c+1
    weights = {"gates/weights": np.array([[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]]),
               "experts/weights": np.array([[0.0, 1.0, 0.0, 0.0]]),
               "experts/biases": np.zeros(4)}
    sig2 = 1 / (1 + math.exp(-2.0))
    class0 = (0.5 + sig2) / 3.0  # uniform gates over 3 slots, experts sigmoid(0), sigmoid(2)
    e2 = math.exp(2.0)
    class1 = (e2 * 0.5 + 0.5) / (e2 + 2.0)  # gate logits (2, 0, 0), experts 0.5, 0.5
    np.testing.assert_allclose(starter_numpy.moe_model(x, weights, 2), [[class0, class1]])


def test_frame_level_logistic_divides_the_frame_sum_by_num_frames():
    frames = np.array([[[1.0, 2.0], [0.0, 0.0]], [[1.0, 0.0], [3.0, 0.0]]])
    weights = {"fully_connected/weights": np.array([[1.0], [1.0]]),
               "fully_connected/biases": np.zeros(1)}
    out = starter_numpy.frame_level_logistic_model(frames, [1, 2], weights)
    np.testing.assert_allclose(out, [[1 / (1 + math.exp(-3.0))], [1 / (1 + math.exp(-2.0))]])


def test_dbof_hand_case_without_batch_norm():
    # F=1, C=2, H=1, V=1, MoE with M=1; two frames, pooled by max after the sigmoid.
    weights = {"cluster_weights": np.array([[1.0, -1.0]]), "cluster_biases": np.zeros(2),
               "hidden1_weights": np.array([[1.0], [1.0]]), "hidden1_biases": np.zeros(1),
               "gates/weights": np.zeros((1, 2)), "experts/weights": np.ones((1, 1)),
               "experts/biases": np.zeros(1)}
    frames = np.array([[[2.0], [-1.0], [5.0]]])
    out = starter_numpy.dbof_model(frames, [3], weights, frame_index=[[0, 1]],
                                   add_batch_norm=False, num_mixtures=1)
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    hidden = s(s(2.0) + s(1.0))  # max over frames 0, 1 of sigmoid(x), sigmoid(-x)
    np.testing.assert_allclose(out, [[0.5 * s(hidden)]])
    relu6 = starter_numpy.dbof_model(frames, [3], weights, frame_index=[[2, 1]],
                                     add_batch_norm=False, dbof_activation="relu6",
                                     num_mixtures=1)
    np.testing.assert_allclose(relu6, [[0.5 * s(min(5.0 + 1.0, 6.0))]])


def test_dbof_reads_exactly_the_starter_variables():
    shapes = pc.dbof_model(cluster_size=16, hidden_size=8, vocab_size=5)
    weights = random_weights(shapes)
    out = starter_numpy.dbof_model(frames_1152(), [3, 2], weights,
                                   frame_index=[[0, 1, 2, 2], [1, 0, 0, 1]])
    assert out.shape == (2, 5) and np.all((out > 0) & (out < 1))
    assert_reads_all(weights)


def test_basic_lstm_cell_gate_order_and_forget_bias():
    kernel = np.zeros((2, 4))
    bias = np.array([0.0, 1.0, 0.0, 0.0])  # i, j, f, o: only j (the input) is non-zero
    c1, h1 = starter_numpy.basic_lstm_cell(np.zeros((1, 1)), (np.zeros((1, 1)), np.zeros((1, 1))),
                                           kernel, bias)
    c_expected = 0.5 * math.tanh(1.0)
    np.testing.assert_allclose(c1, [[c_expected]])
    np.testing.assert_allclose(h1, [[math.tanh(c_expected) * 0.5]])
    c2, _ = starter_numpy.basic_lstm_cell(np.zeros((1, 1)), (c1, h1), kernel, bias)
    # the forget gate sees f + 1.0 = 1.0 (forget_bias), not 0
    np.testing.assert_allclose(c2, [[c_expected / (1 + math.exp(-1.0)) + c_expected]])


def test_lstm_model_stops_at_each_videos_last_valid_frame():
    weights = random_weights(pc.lstm_model(feature_size=4, lstm_cells=3, vocab_size=5))
    frames = RNG.normal(size=(2, 4, 4))
    out = starter_numpy.lstm_model(frames, [4, 2], weights, lstm_cells=3)
    assert_reads_all(weights)
    truncated = starter_numpy.lstm_model(frames[:, :2], [2, 2], weights, lstm_cells=3)
    np.testing.assert_allclose(out[1], truncated[1])  # frames after num_frames are ignored
    assert not np.allclose(out[0], truncated[0])
    changed = frames.copy()
    changed[1, 2:] = 100.0
    np.testing.assert_allclose(starter_numpy.lstm_model(changed, [4, 2], weights, lstm_cells=3),
                               out)


def _keras_lstm_step(x, c, h, kernel, recurrent_kernel, bias):
    """keras LSTMCell formula (gates i, f, c, o; no constant forget bias)."""
    z = x @ kernel + h @ recurrent_kernel + bias
    i, f, g, o = np.split(z, 4, axis=1)
    sig = common.sigmoid
    c = sig(f) * c + sig(i) * np.tanh(g)
    return c, sig(o) * np.tanh(c)


def test_keras_lstm_conversion_gives_the_same_cell():
    kernel, recurrent, bias = (RNG.normal(size=(3, 8)), RNG.normal(size=(2, 8)),
                               RNG.normal(size=8))
    x, c, h = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2)), RNG.normal(size=(4, 2))
    tf1_kernel, tf1_bias = starter_numpy.keras_lstm_to_basic_lstm(kernel, recurrent, bias)
    expected = _keras_lstm_step(x, c, h, kernel, recurrent, bias)
    got = starter_numpy.basic_lstm_cell(x, (c, h), tf1_kernel, tf1_bias)
    np.testing.assert_allclose(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1])
    back = starter_numpy.basic_lstm_to_keras(tf1_kernel, tf1_bias, 3)
    for original, restored in zip((kernel, recurrent, bias), back):
        np.testing.assert_allclose(restored, original)


# ----------------------------------------------------------------------------- starter training


def test_losses_hand_values():
    p, y = np.array([[0.9, 0.2]]), np.array([[1.0, 0.0]])
    expected = -(math.log(0.9 + 1e-5) + math.log(1 - 0.2 + 1e-5))
    assert starter_numpy.cross_entropy_loss(p, y) == pytest.approx(expected, rel=1e-12)
    assert starter_numpy.cross_entropy_loss(p, y, label_weights=np.array([[0.0, 1.0]])) == \
        pytest.approx(-math.log(0.8 + 1e-5), rel=1e-12)
    # a confident mistake is capped by the epsilon: -log(1e-5)
    assert starter_numpy.cross_entropy_loss(np.array([[0.0]]), np.array([[1.0]])) == \
        pytest.approx(-math.log(1e-5))
    assert starter_numpy.hinge_loss(np.array([[0.3, 0.6]]), y) == pytest.approx(2.3)
    assert starter_numpy.softmax_loss(np.zeros((1, 2)), np.ones((1, 2))) == \
        pytest.approx(math.log(2.0))
    assert nextvlad_numpy.cross_entropy_loss(np.array([[0.0]]), np.array([[1.0]])) == \
        pytest.approx(-math.log(1e-8))


def test_tf1_optimizer_first_steps():
    var, grad = np.array([1.0]), np.array([2.0])
    new, m, v = starter_numpy.adam_step(var, grad, np.zeros(1), np.zeros(1), 1, lr=0.1)
    lr_t = 0.1 * math.sqrt(1 - 0.999) / (1 - 0.9)
    np.testing.assert_allclose(new, [1.0 - lr_t * 0.2 / (math.sqrt(0.004) + 1e-8)])
    # RMSProp's rms starts at one: the first step is lr * g / sqrt(0.9 + 0.1 g^2 + 1e-10)
    new, rms, _ = starter_numpy.rmsprop_step(var, grad, np.ones(1), np.zeros(1), lr=0.1)
    np.testing.assert_allclose(rms, [1.3])
    np.testing.assert_allclose(new, [1.0 - 0.1 * 2.0 / math.sqrt(1.3 + 1e-10)])
    new, acc = starter_numpy.adagrad_step(var, grad, np.full(1, 0.1), lr=0.1)
    np.testing.assert_allclose(new, [1.0 - 0.2 / math.sqrt(4.1)])
    new, acc = starter_numpy.momentum_step(var, grad, np.ones(1), lr=0.1, momentum=0.9)
    np.testing.assert_allclose(new, [1.0 - 0.1 * 2.9])
    assert starter_numpy.TF1_OPTIMIZER_DEFAULTS["AdamOptimizer"]["epsilon"] == 1e-8
    assert starter_numpy.TF1_OPTIMIZER_DEFAULTS["RMSPropOptimizer"]["epsilon"] == 1e-10


def test_towers_sum_then_clip_each_variable():
    tower_a = [np.array([3.0, 0.0]), np.array([0.1])]
    tower_b = [np.array([0.0, 4.0]), np.array([0.05])]
    merged = starter_numpy.combine_gradients([tower_a, tower_b])
    np.testing.assert_allclose(merged[0], [3.0, 4.0])
    clipped = starter_numpy.clip_gradient_norms(merged, 1.0)
    np.testing.assert_allclose(clipped[0], [0.6, 0.8])
    np.testing.assert_allclose(clipped[1], [0.15])


def test_learning_rate_staircase_in_examples():
    assert starter_numpy.learning_rate(0.01, 2, 1024, 2, 4096, 0.5) == pytest.approx(0.005)
    assert starter_numpy.learning_rate(0.01, 1, 1024, 2, 4096, 0.5) == pytest.approx(0.01)


# ----------------------------------------------------------------------------- starter inference


def test_get_segments_keeps_the_padding_of_the_last_segment():
    video = np.arange(10, dtype=float).reshape(1, 10, 1) + 1.0
    video[0, 7:] = 0.0  # the reader's zero padding after num_frames=7
    result = starter_numpy.get_segments(video, [7])
    np.testing.assert_array_equal(result["video_segment_ids"], [[0, 0], [0, 5]])
    np.testing.assert_array_equal(result["num_frames_batch"], [5, 2])
    np.testing.assert_array_equal(result["video_batch"][1, :, 0], [6.0, 7.0, 0.0, 0.0, 0.0])


def test_format_lines_masks_in_place_and_prints_six_digits():
    predictions = np.array([[0.123456789, 0.9, 0.5]], dtype=np.float32)
    mask = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    lines = starter_numpy.format_lines(["v:0"], predictions, 2, mask)
    assert lines == ["v:0,2 0.5 0 0.123457"]


def test_segment_submission_order_and_ties():
    mask = starter_numpy.whitelist_mask(["Index\n", "1\n", "3\n"], 5)
    np.testing.assert_array_equal(mask, [0, 1, 0, 1, 0])
    lines = ["VideoId,LabelConfidencePairs", "a:0,3 0.5 1 0.25 2 0.9", "a:5,3 0.5",
             "b:0,1 0.75 3 0.125"]
    # class 3 is full after two items; (0.125, 'b:0') does not beat the smallest (0.5, 'a:0').
    assert starter_numpy.segment_submission(lines, mask, 2) == \
        "Class,Segments\n3,a:0 a:5\n1,b:0 a:0\n"
    # at equal scores the later, larger segment id replaces the smallest tuple
    assert starter_numpy.segment_submission(lines[:3], mask, 1) == \
        "Class,Segments\n3,a:5\n1,a:0\n"


# ----------------------------------------------------------------------------- Willow


def test_netvlad_hand_case_and_flatten_order():
    weights = {"s/cluster_weights": np.zeros((2, 2)),
               "s/cluster_weights2": np.eye(2)[None]}
    identity_bn(weights, "s/cluster_bn", 2)
    x = np.array([[[1.0, 0.0]]])
    r = 1 / math.sqrt(2.0)
    # cluster 0: 0.5 x - 0.5 C[:, 0] = 0; cluster 1: 0.5 ([1, 0] - [0, 1]); flatten d-major
    np.testing.assert_allclose(willow_numpy.netvlad(x, weights, "s/"), [[0.0, r, 0.0, -r]],
                               atol=1e-12)
    np.testing.assert_allclose(willow_numpy.lightvlad(x, weights, "s/"), [[r, r, 0.0, 0.0]])


def test_netfv_hand_case():
    weights = {"s/cluster_weights": np.zeros((2, 1)), "s/covar_weights": np.ones((2, 1))}
    identity_bn(weights, "s/cluster_bn", 1)
    x = np.array([[[2.0, 1.0]]])
    sigma = 1.0 + 1e-6
    fv1 = np.array([2.0, 1.0]) / math.sqrt(5.0)
    fv2 = np.array([4.0, 1.0]) / sigma ** 2 - 1.0
    fv2 /= np.linalg.norm(fv2)
    np.testing.assert_allclose(willow_numpy.netfv(x, weights, "s/"), [np.concatenate([fv1, fv2])])
    # uncoupled centroids C: fv1 = (x - C) / sigma before the normalisations
    weights["s/cluster_weights2"] = np.array([[[1.0], [3.0]]])
    out = willow_numpy.netfv(x, weights, "s/", couple_weights=False)
    np.testing.assert_allclose(out[0, :2], np.array([1.0, -2.0]) / math.sqrt(5.0))


def test_soft_and_gated_dbof_hand_case():
    weights = {"s/cluster_weights": np.zeros((2, 2)), "s/dim_red": np.zeros((2, 2)),
               "s/cluster_weights_2": np.zeros((2, 2))}
    identity_bn(weights, "s/cluster_bn", 2)
    identity_bn(weights, "s/cluster_bn_2", 2)
    x = RNG.normal(size=(1, 3, 2))
    r = 1 / math.sqrt(2.0)
    np.testing.assert_allclose(willow_numpy.soft_dbof(x, weights, "s/"), [[r, r]])
    np.testing.assert_allclose(willow_numpy.soft_dbof(x, weights, "s/", max_pool=True),
                               [[r, r, r, r]])
    np.testing.assert_allclose(willow_numpy.gated_dbof(x, weights, "s/"), [[r, r]])


def test_willow_moe_probability_gating():
    weights = {"gates/weights": np.zeros((1, 3)), "experts/weights": np.zeros((1, 2)),
               "experts/biases": np.zeros(2), "gating_prob_weights": np.zeros((1, 1))}
    identity_bn(weights, "gating_prob_bn", 1)
    out = willow_numpy.moe_model(np.ones((1, 1)), weights, 2, moe_prob_gating=True)
    np.testing.assert_allclose(out, [[(1.0 / 3.0) * 0.5]])  # (2 slots x 1/3 x 0.5) x sigmoid(0)


def test_gru_cell_gate_order():
    gates_kernel = np.zeros((2, 2))
    candidate_kernel = np.array([[1.0], [0.0]])
    x, h = np.ones((1, 1)), np.zeros((1, 1))
    out = starter_numpy.gru_cell(x, h, gates_kernel, np.array([0.0, 10.0]), candidate_kernel,
                                 np.zeros(1))
    u = 1 / (1 + math.exp(-10.0))  # the second half of the gates is the update gate
    np.testing.assert_allclose(out, [[(1 - u) * math.tanh(1.0)]])


def _keras_gru_step(x, h, kernel, recurrent_kernel, bias):
    """keras GRUCell(reset_after=False) formula, gates ordered z, r, h."""
    units = h.shape[1]
    kz, kr, kh = np.split(kernel, 3, axis=1)
    rz, rr, rh = np.split(recurrent_kernel, 3, axis=1)
    bz, br, bh = np.split(bias, 3)
    z = common.sigmoid(x @ kz + h @ rz + bz)
    r = common.sigmoid(x @ kr + h @ rr + br)
    hh = np.tanh(x @ kh + (r * h) @ rh + bh)
    assert hh.shape[1] == units
    return z * h + (1 - z) * hh


def test_keras_gru_conversion_gives_the_same_cell():
    kernel, recurrent, bias = (RNG.normal(size=(3, 6)), RNG.normal(size=(2, 6)),
                               RNG.normal(size=6))
    x, h = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2))
    converted = willow_numpy.keras_gru_to_tf1_gru(kernel, recurrent, bias)
    np.testing.assert_allclose(starter_numpy.gru_cell(x, h, *converted),
                               _keras_gru_step(x, h, kernel, recurrent, bias))


WILLOW_CASES = [
    (willow_numpy.netvlad_model_lf, pc.netvlad_model_lf,
     dict(netvlad_relu=False, gating=True, moe_prob_gating=True),
     dict(cluster_size=4, hidden_size=6)),
    (willow_numpy.netvlad_model_lf, pc.netvlad_model_lf,
     dict(lightvlad=True, netvlad_relu=True), dict(cluster_size=4, hidden_size=6)),
    (willow_numpy.netfv_model_lf, pc.netfv_model_lf,
     dict(fv_relu=False, gating=True, moe_prob_gating=True, fv_couple_weights=False),
     dict(fv_cluster_size=4, fv_hidden_size=6)),
    (willow_numpy.netfv_model_lf, pc.netfv_model_lf, dict(), dict(fv_cluster_size=4,
                                                                 fv_hidden_size=6)),
    (willow_numpy.gated_dbof_model_lf, pc.gated_dbof_model_lf, dict(dbof_relu=False),
     dict(dbof_cluster_size=16, dbof_hidden_size=6)),
    (willow_numpy.soft_dbof_model_lf, pc.soft_dbof_model_lf,
     dict(dbof_relu=True, softdbof_maxpool=True), dict(dbof_cluster_size=16,
                                                       dbof_hidden_size=6)),
]


@pytest.mark.parametrize("forward, shapes_fn, flags, sizes", WILLOW_CASES)
def test_willow_models_read_exactly_their_variables(forward, shapes_fn, flags, sizes):
    shared = {name: flags[name] for name in flags}
    weights = random_weights(shapes_fn(vocab_size=5, **shared, **sizes))
    out = forward(frames_1152(), [3, 3], weights, frame_index=[[0, 1, 2], [2, 2, 0]], **shared)
    assert out.shape == (2, 5) and np.all((out > 0) & (out < 1))
    assert_reads_all(weights)


def test_willow_recurrent_models_read_exactly_their_variables():
    weights = random_weights(pc.gru_model(gru_cells=3, vocab_size=5))
    out = willow_numpy.gru_model(frames_1152(count=4), [4, 2], weights, gru_cells=3)
    assert out.shape == (2, 5)
    assert_reads_all(weights)
    weights = random_weights(pc.willow_lstm_model(lstm_cells=3, vocab_size=5))
    out = willow_numpy.lstm_model(frames_1152(count=4), [4, 2], weights,
                                  frame_index=[[3, 0, 1], [1, 1, 0]], lstm_cells=3)
    assert out.shape == (2, 5)
    assert_reads_all(weights)
    assert pc.willow_lstm_model()["gates/weights"][0] == 4096  # [c0, h0, c1, h1]


def test_willow_batch_norm_training_mode_uses_batch_statistics():
    shapes = pc.netvlad_model_lf(cluster_size=4, hidden_size=6, vocab_size=5, gating=True)
    weights = random_weights(shapes)
    frames = frames_1152()
    moving = willow_numpy.netvlad_model_lf(frames, [3, 3], weights, gating=True)
    batch = willow_numpy.netvlad_model_lf(frames, [3, 3], weights, gating=True, bn_training=True)
    assert not np.allclose(moving, batch)


# ----------------------------------------------------------------------------- NeXtVLAD


def test_reverse_whitening_formula_and_file_format(tmp_path):
    eigenvalues = RNG.uniform(0.001, 15.0, size=(2048, 1)).astype(np.float32)
    path = tmp_path / "eigenvals.npy"
    np.save(path, eigenvalues)
    loaded = nextvlad_numpy.load_eigenvalues(path)
    frames = RNG.normal(size=(1, 2, 1152))
    out = nextvlad_numpy.reverse_whitening(frames, loaded)
    scale = np.sqrt(eigenvalues[:1024, 0].astype(np.float64)) + 1e-4
    np.testing.assert_allclose(out[..., :1024], (frames[..., :1024] - 4.0 / 512.0) * scale)
    np.testing.assert_array_equal(out[..., 1024:], frames[..., 1024:])
    np.save(tmp_path / "flat.npy", eigenvalues[:, 0])
    with pytest.raises(ValueError, match="shape"):
        nextvlad_numpy.load_eigenvalues(tmp_path / "flat.npy")


def _nextvlad_loops(x, mask, w, groups, clusters):
    """The NeXtVLAD equations written as loops over frames, groups and clusters."""
    expanded = x @ w["s/fully_connected/weights"] + w["s/fully_connected/biases"]
    wide = expanded.shape[-1]
    width = wide // groups
    batch, frames = x.shape[:2]
    out = np.zeros((batch, width, clusters))
    for b in range(batch):
        a_sum = np.zeros(clusters)
        for t in range(frames):
            logits = expanded[b, t] @ w["s/cluster_weights"]
            logits = common.batch_norm(logits[None], w, "s/cluster_bn")[0]
            attention = common.sigmoid(expanded[b, t] @ w["s/fully_connected_1/weights"]
                                       + w["s/fully_connected_1/biases"]) * mask[b, t]
            for g in range(groups):
                assignment = common.softmax(logits[g * clusters:(g + 1) * clusters])
                assignment = assignment * attention[g]
                a_sum += assignment
                part = expanded[b, t, g * width:(g + 1) * width]
                out[b] += part[:, None] * assignment[None, :]
        out[b] -= a_sum[None, :] * w["s/cluster_weights2"][0]
    out = common.l2_normalize(out, axis=1).reshape(batch, -1)
    return common.batch_norm(out, w, "s/vlad_bn")


def test_nextvlad_pooling_matches_the_equations_with_mask():
    groups, clusters, size, expansion = 2, 3, 4, 2
    shapes, _ = pc._nextvlad("s", size, clusters, groups, expansion)  # noqa: SLF001
    weights = random_weights(shapes)
    x = RNG.normal(size=(2, 5, size))
    mask = common.sequence_mask([5, 2], 5)
    out = nextvlad_numpy.nextvlad(x, mask, weights, "s/", clusters, groups, expansion)
    np.testing.assert_allclose(out, _nextvlad_loops(x, mask, weights, groups, clusters))
    assert_reads_all(weights)
    # padded frames do not matter
    changed = x.copy()
    changed[1, 2:] = 50.0
    np.testing.assert_allclose(
        nextvlad_numpy.nextvlad(changed, mask, weights, "s/", clusters, groups, expansion), out)


@pytest.mark.parametrize("classifier", ["LogisticModel", "MoeModel"])
def test_nextvlad_model_reads_exactly_its_variables(classifier):
    flags = dict(nextvlad_cluster_size=4, nextvlad_hidden_size=16, groups=4, expansion=2,
                 gating_reduction=8, video_level_classifier_model=classifier, vocab_size=5)
    weights = random_weights(pc.nextvlad_model(**flags))
    predictions, logits = nextvlad_numpy.nextvlad_model(
        RNG.normal(size=(2, 6, 1152)), [6, 3], weights, cluster_size=4, groups=4,
        video_level_classifier_model=classifier)
    assert predictions.shape == (2, 5)
    assert (logits is None) == (classifier == "MoeModel")
    assert_reads_all(weights)


def test_mix_nextvlad_gate_and_distillation():
    flags = dict(nextvlad_cluster_size=4, nextvlad_hidden_size=16, groups=4, expansion=2,
                 gating_reduction=8, vocab_size=5)
    weights = random_weights(pc.mix_nextvlad_model(mix_number=2, **flags))
    frames = RNG.normal(size=(2, 6, 1152))
    predictions, mix_logit, branch_logits, branch_predictions, mix_weights = \
        nextvlad_numpy.mix_nextvlad_model(frames, [6, 3], weights, mix_number=2, cluster_size=4,
                                          groups=4)
    assert_reads_all(weights)
    np.testing.assert_allclose(mix_weights.sum(axis=1), [1.0, 1.0])
    np.testing.assert_allclose(mix_logit, np.einsum("bm,bmv->bv", mix_weights, branch_logits))
    np.testing.assert_allclose(predictions, common.sigmoid(mix_logit))
    # the gate reads the mean over ALL frames, padding included
    changed = frames.copy()
    changed[1, 3:] += 1.0
    assert not np.allclose(nextvlad_numpy.mix_nextvlad_model(
        changed, [6, 3], weights, mix_number=2, cluster_size=4, groups=4)[4][1], mix_weights[1])
    assert nextvlad_numpy.mixture_label_loss(predictions, branch_predictions,
                                             np.zeros((2, 5))) > 0
    kl = nextvlad_numpy.distillation_loss(np.zeros((1, 2)), np.array([[[math.log(3.0), 0.0]]]),
                                          temperature=1.0, lam=2.0)
    q, p = 0.5, np.array([0.75, 0.25])
    expected = 2.0 * sum(q * (math.log(q + 1e-8) - math.log(pi + 1e-8)) for pi in p)
    assert kl == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------- MOD submission


def test_mod_candidates_fusion_and_fallbacks():
    whitelist = mod_submission.load_whitelist(["Index\n", "7\n", "9\n"])
    assert whitelist == [7, 9]
    videos = mod_submission.parse_predictions(["VideoId,LabelConfidencePairs\n",
                                               "u,7 0.5 9 0.25\n", "v,7 0.75 3 0.5\n"])
    lengths = {"u": 12, "v": 7}
    candidates = mod_submission.video_candidates(videos, lengths, whitelist, limit=3)
    # class 7: v (0.75) first, its one full segment; then u's two; the limit stops at 3
    assert candidates[7] == [("v:0", 0.75), ("u:0", 0.5), ("u:5", 0.5)]
    assert candidates[9] == [("u:0", 0.25), ("u:5", 0.25)]
    segments = {"u:0": {7: 0.5, 9: 0.5}, "u:5": {7: 0.25}, "w:0": {7: 0.99}}
    fused = mod_submission.fuse(candidates, segments, whitelist)
    value = lambda v, s: v ** 0.05 * s ** 0.95  # noqa: E731
    assert fused[7] == [("u:0", value(0.5, 0.5)), ("u:5", value(0.5, 0.25))]  # w:0 no candidate
    assert fused[9] == [("u:0", value(0.25, 0.5))]
    fallback = mod_submission.video_candidates(videos, lengths, whitelist, limit=100)
    mod_submission.add_fallbacks(fused, fallback, limit=4)
    assert [s for s, _ in fused[7]] == ["u:0", "u:5", "v:0"]  # fallback order, skipping covered
    assert [s for s, _ in fused[9]] == ["u:0", "u:5"]
    assert mod_submission.submission_rows(fused, whitelist, limit=2) == \
        "Class,Segments\n7,u:0 u:5\n9,u:0 u:5\n"


# ----------------------------------------------------------------------------- parameter counts


def test_starter_dbof_and_lstm_counts_term_by_term():
    dbof = pc.dbof_model()
    assert dbof["cluster_weights"] == (1152, 8192)
    assert pc.count(dbof) == (2 * 1152 + 1152 * 8192 + 2 * 8192 + 8192 * 1024 + 2 * 1024
                              + 1024 * 3862 * 3 + 1024 * 3862 * 2 + 3862 * 2) == 37_627_692
    assert pc.count(dbof, trainable_only=False) == 37_627_692 + 2 * (1152 + 8192 + 1024)
    lstm = pc.lstm_model()
    assert pc.count(lstm) == ((1152 + 1024) * 4096 + 4096 + 2048 * 4096 + 4096
                              + 1024 * 3862 * 3 + 1024 * 3862 * 2 + 3862 * 2) == 37_090_860


def test_readme_configuration_counts():
    model, flags = pc.WILLOW_README_CONFIGS["gated_netvlad"]
    shapes = model(**flags)
    assert shapes["hidden1_weights"] == (1024 * 256 + 128 * 128, 1024)
    assert pc.count(shapes) == 321_528_380
    model, flags = pc.LINRONGC_SCRIPT_CONFIGS["nextvlad_local"]
    shapes = model(**flags)
    assert shapes["hidden1_weights"] == (256 * 128 + 64 * 64, 2048)
    hidden = (256 * 128 + 64 * 64) * 2048
    logistic = 2048 * 3862 + 3862
    assert pc.count(shapes) == 88_889_378
    assert hidden == 75_497_472 and logistic == 7_913_238


def test_boliu_float16_selection_is_the_four_tensors():
    names = list(pc.boliu_netvlad_member(24, 1440, prefix="tower/"))
    names += list(pc.boliu_netvlad_member(32, 1024, prefix="tower/model1/"))
    assert len(names) == 64
    assert pc.boliu_float16_variables(names) == [
        "tower/hidden1_weights/hidden1_weights", "tower/gates/weights", "tower/experts/weights",
        "tower/gating_prob_weights", "tower/model1/hidden1_weights/hidden1_weights",
        "tower/model1/gates/weights", "tower/model1/experts/weights",
        "tower/model1/gating_prob_weights"]
