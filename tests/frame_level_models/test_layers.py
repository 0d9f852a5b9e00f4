"""Each layer of frame_level_models.layers against an independent numpy implementation of the SPEC
section 4 equations (explicit loops over frames/clusters), including padded frames filled with
garbage that must not change anything, in inference mode (moving statistics) and training mode
(batch statistics over the valid frames only)."""
import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models import layers
from frame_level_models.layers import common
from frame_level_models.layers import frame_ops
from frame_level_models.layers.frame_ops import load_eigenvalues

EPS = common.BN_EPSILON
TOL = dict(rtol=1e-5, atol=1e-5)
NUM_FRAMES = np.array([3, 6, 1, 4], np.int32)
MAX_T = 6


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def l2n(v, axis):
    return v / np.sqrt(np.maximum((v * v).sum(axis=axis, keepdims=True), 1e-12))


def frames_with_garbage(rng, size, scale=1.0):
    """(clean, garbage): identical valid frames; padded frames zero vs large random values."""
    clean = rng.normal(0, scale, (len(NUM_FRAMES), MAX_T, size))
    garbage = clean.copy()
    for b, n in enumerate(NUM_FRAMES):
        clean[b, n:] = 0.0
        garbage[b, n:] = rng.normal(20.0, 30.0, (MAX_T - n, size))
    return clean.astype(np.float32), garbage.astype(np.float32)


def randomize_batch_norms(layer, rng):
    """Non-trivial BN parameters and moving statistics, so the reference must apply them."""
    for sub in layer._flatten_layers(include_self=False):
        if isinstance(sub, keras.layers.BatchNormalization):
            n = sub.gamma.shape[0]
            sub.gamma.assign(rng.uniform(0.5, 1.5, n))
            sub.beta.assign(rng.normal(0, 0.3, n))
            sub.moving_mean.assign(rng.normal(0, 0.3, n))
            sub.moving_variance.assign(rng.uniform(0.5, 1.5, n))


def bn_ref(x, bn, training, valid=None):
    """BatchNormalization over the last axis. Training: biased moments of the valid rows."""
    gamma, beta = bn.gamma.numpy(), bn.beta.numpy()
    if training:
        rows = x.reshape(-1, x.shape[-1])
        if valid is not None:
            rows = rows[valid.reshape(-1)]
        mean, var = rows.mean(axis=0), rows.var(axis=0)
    else:
        mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def valid_mask():
    return np.arange(MAX_T)[None, :] < NUM_FRAMES[:, None]


def run(layer, frames, training=False):
    return layer([tf.constant(frames), tf.constant(NUM_FRAMES)], training=training).numpy()


# ---------------------------------------------------------------- frame helpers

def test_masked_mean_ignores_padding():
    rng = np.random.default_rng(0)
    clean, garbage = frames_with_garbage(rng, 5)
    layer = layers.MaskedMean()
    expected = np.stack([clean[b, :n].mean(axis=0) for b, n in enumerate(NUM_FRAMES)])
    np.testing.assert_allclose(run(layer, garbage), expected, **TOL)
    empty = layer([tf.constant(clean[:1]), tf.constant([0])]).numpy()
    np.testing.assert_array_equal(empty, np.zeros((1, 5), np.float32))


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_frame_batch_norm_statistics_skip_padded_frames(momentum):
    rng = np.random.default_rng(1)
    clean, garbage = frames_with_garbage(rng, 4)
    layer = layers.FrameBatchNorm() if momentum is None else layers.FrameBatchNorm(
        bn_momentum=momentum)
    momentum = momentum or 0.999  # slim's default
    layer.build([(None, None, 4), (None,)])
    randomize_batch_norms(layer, rng)
    mask = valid_mask()
    for training in (False, True):
        moving_mean = layer.batch_norm.moving_mean.numpy().astype(np.float64)
        moving_var = layer.batch_norm.moving_variance.numpy().astype(np.float64)
        got = run(layer, garbage, training)
        expected = bn_ref(garbage.astype(np.float64), layer.batch_norm, training, mask)
        np.testing.assert_allclose(got[mask], expected[mask], **TOL)
    # The training call moved the statistics towards the valid frames' moments.
    valid = clean[mask].astype(np.float64)
    np.testing.assert_allclose(layer.batch_norm.moving_mean.numpy(),
                               momentum * moving_mean + (1 - momentum) * valid.mean(0), **TOL)
    np.testing.assert_allclose(layer.batch_norm.moving_variance.numpy(),
                               momentum * moving_var + (1 - momentum) * valid.var(0), **TOL)


def _frame_ids():
    """Frame value = 100*video + frame index, so a sampled frame tells where it came from."""
    rgb = (100 * np.arange(4)[:, None] + np.arange(MAX_T)[None, :]).astype(np.float32)[..., None]
    return rgb, -rgb


def test_random_frame_sampler_training_only():
    rgb, audio = _frame_ids()
    sampler = layers.RandomFrameSampler(iterations=50, seed=3)
    inputs = [tf.constant(rgb), tf.constant(audio), tf.constant(NUM_FRAMES)]
    same_rgb, same_audio, same_count = sampler(inputs, training=False)
    np.testing.assert_array_equal(same_rgb.numpy(), rgb)
    np.testing.assert_array_equal(same_count.numpy(), NUM_FRAMES)
    new_rgb, new_audio, new_count = [t.numpy() for t in sampler(inputs, training=True)]
    assert new_rgb.shape == (4, 50, 1)
    np.testing.assert_array_equal(new_count, [50] * 4)
    np.testing.assert_array_equal(new_audio, -new_rgb)  # the same frames for every stream
    video, frame = np.divmod(new_rgb[..., 0].astype(int), 100)
    np.testing.assert_array_equal(video, np.repeat(np.arange(4)[:, None], 50, axis=1))
    assert (frame < NUM_FRAMES[:, None]).all()
    assert len(np.unique(frame[1])) > 3  # draws spread over the 6 valid frames of video 1
    with pytest.raises(ValueError, match="iterations must be positive, got 0"):
        layers.RandomFrameSampler(0)


def test_starter_sampler_samples_at_inference_a_random_sequence():
    """The starter's DbofModel sampling (at_inference): SampleRandomSequence for
    --sample_random_frames=False, a run of consecutive valid frames (the last repeated when the
    video is shorter), at evaluation as well."""
    rgb, audio = _frame_ids()
    sampler = layers.RandomFrameSampler(iterations=3, sequence=True, at_inference=True)
    starts = set()
    for _ in range(20):
        new_rgb, _, count = [t.numpy() for t in sampler(
            [tf.constant(rgb), tf.constant(audio), tf.constant(NUM_FRAMES)], training=False)]
        np.testing.assert_array_equal(count, [3] * 4)
        frame = new_rgb[..., 0].astype(int) % 100
        for b, n in enumerate(NUM_FRAMES):
            expected = np.minimum(frame[b, 0] + np.arange(3), n - 1)
            np.testing.assert_array_equal(frame[b], expected)
            assert 0 <= frame[b, 0] <= max(n - 3, 0)
        starts.add(frame[1, 0])
    assert starts == {0, 1, 2, 3}  # video 1 (6 frames): every start 0..3 drawn in 20 tries


@pytest.mark.parametrize("sequence", [False, True])
def test_sampler_indices_are_the_starters(sequence):
    """random_frames_index / random_sequence_index on given uniform draws against the starter's
    formulas (tests/reference/common.py), edge draws included; the layer uses its draw."""
    from reference import common as reference
    num_frames = np.array([1, 7, 30, 300, 4], np.int32)
    rng = np.random.default_rng(4)
    shape = (5,) if sequence else (5, 30)
    uniform = rng.uniform(size=shape).astype(np.float32)
    uniform.reshape(-1)[:3] = [0.0, 0.5, np.nextafter(np.float32(1), np.float32(0))]
    if sequence:
        got = frame_ops.random_sequence_index(tf.constant(uniform), tf.constant(num_frames), 30)
        expected = reference.random_sequence_index(uniform, num_frames, 30)
    else:
        got = frame_ops.random_frames_index(tf.constant(uniform), tf.constant(num_frames))
        expected = reference.random_frames_index(uniform, num_frames)
    np.testing.assert_array_equal(got.numpy(), expected)
    sampler = layers.RandomFrameSampler(iterations=30, sequence=sequence, at_inference=True)
    sampler.draw_uniform = lambda draw_shape: tf.constant(uniform)
    frames = np.arange(300, dtype=np.float32)[None, :, None] * np.ones((5, 1, 1), np.float32)
    sampled, count = sampler([tf.constant(frames), tf.constant(num_frames)])
    np.testing.assert_array_equal(sampled.numpy()[..., 0], expected)
    np.testing.assert_array_equal(count.numpy(), [30] * 5)


def test_reverse_whitening_and_eigenvalue_file(tmp_path):
    eigen = np.array([4.0, 1.0, 0.25, 9.0], np.float32)
    path = tmp_path / "eigen.npy"
    np.save(path, eigen.reshape(4, 1))  # the reference's (N, 1) layout; the first 3 are used
    values = load_eigenvalues(str(path), 3)
    np.testing.assert_array_equal(values, eigen[:3])
    frames = tf.fill([1, 2, 3], 1.0)
    out = layers.ReverseWhitening(values)([frames, tf.constant([1])]).numpy()
    # (x - 4/512) * (sqrt(eigenvalue) + 1e-4); the padded second frame stays 0.
    scale = np.array([2.0, 1.0, 0.5]) + 1e-4
    np.testing.assert_allclose(out[0, 0], (1.0 - 4.0 / 512.0) * scale, rtol=1e-6)
    np.testing.assert_array_equal(out[0, 1], 0.0)
    with pytest.raises(ValueError, match=r"holds 4 eigenvalues; the rgb feature has 1024"):
        load_eigenvalues(str(path), 1024)
    np.save(path, np.array([1.0, -1.0, 2.0]))
    with pytest.raises(ValueError, match="eigenvalues must be finite and >= 0"):
        load_eigenvalues(str(path), 3)
    with pytest.raises(FileNotFoundError, match="pca_eigenvalues_file=.*missing.npy.*no such"):
        load_eigenvalues(str(tmp_path / "missing.npy"), 3)
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="is not a numpy .npy file"):
        load_eigenvalues(str(tmp_path / "text.npy"), 3)


# ---------------------------------------------------------------- classifiers and gating

def test_logistic_classifier_and_slim_l2():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 6)).astype(np.float32)
    layer = layers.LogisticClassifier(5, l2_penalty=0.1)
    logits = layer(x).numpy()
    w, b = layer.kernel.numpy(), layer.bias.numpy()
    np.testing.assert_allclose(logits, x @ w + b, **TOL)
    # Starter meaning of the penalty: penalty/2 * sum(w^2).
    np.testing.assert_allclose(float(sum(layer.losses)), 0.1 / 2 * (w.astype(np.float64) ** 2).sum(),
                               rtol=1e-5)
    assert layer.get_prunable_weights() == [layer.kernel]


@pytest.mark.parametrize("prob_gating", [False, True])
def test_moe_classifier(prob_gating):
    rng = np.random.default_rng(5)
    classes, mixtures, size = 4, 3, 6
    x = rng.normal(size=(5, size)).astype(np.float32)
    layer = layers.MoeClassifier(classes, mixtures, l2_penalty=1e-3, prob_gating=prob_gating)
    layer.build((None, size))
    randomize_batch_norms(layer, rng)
    got = layer(x, training=False).numpy()
    g, e, eb = (layer.gate_kernel.numpy(), layer.expert_kernel.numpy(),
                layer.expert_bias.numpy())
    expected = np.zeros((5, classes))
    for b in range(5):
        for c in range(classes):
            gate_logits = [x[b] @ g[:, c * (mixtures + 1) + m] for m in range(mixtures + 1)]
            gates = softmax(np.array(gate_logits))
            experts = [sigmoid(x[b] @ e[:, c * mixtures + m] + eb[c * mixtures + m])
                       for m in range(mixtures)]
            # the last gate slot belongs to the dummy expert that always predicts 0
            expected[b, c] = sum(gates[m] * experts[m] for m in range(mixtures))
    if prob_gating:
        gate = bn_ref(expected @ layer.prob_gating_kernel.numpy(), layer.prob_gating_bn, False)
        expected = expected * sigmoid(gate)
    np.testing.assert_allclose(got, expected, **TOL)
    # Regularised: gate and expert weights (not the probability gating matrix).
    np.testing.assert_allclose(float(sum(layer.losses)),
                               1e-3 / 2 * ((g.astype(np.float64) ** 2).sum() + (e ** 2).sum()),
                               rtol=1e-5)
    assert len(layer.get_prunable_weights()) == (3 if prob_gating else 2)


def test_context_gating():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    layer = layers.ContextGating()
    layer.build((None, 5))
    randomize_batch_norms(layer, rng)
    w = layer.kernel.numpy()
    for training in (False, True):
        expected = x * sigmoid(bn_ref((x @ w).astype(np.float64), layer.batch_norm, training))
        np.testing.assert_allclose(layer(x, training=training).numpy(), expected, **TOL)


def test_se_gating():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, 16)).astype(np.float32)
    layer = layers.SEGating(reduction=4)
    layer.build((None, 16))
    randomize_batch_norms(layer, rng)
    w1, w2 = layer.squeeze_kernel.numpy(), layer.excite_kernel.numpy()
    assert w1.shape == (16, 4) and w2.shape == (4, 16)
    for training in (False, True):
        hidden = np.maximum(bn_ref((x @ w1).astype(np.float64), layer.batch_norm, training), 0)
        np.testing.assert_allclose(layer(x, training=training).numpy(),
                                   x * sigmoid(hidden @ w2), **TOL)
    with pytest.raises(ValueError, match="input size 10 is not divisible by gating_reduction=4"):
        layers.SEGating(reduction=4)(np.zeros((1, 10), np.float32))


# ---------------------------------------------------------------- frame pooling

def netvlad_ref(x, layer, training):
    """v[d,k] = sum_i a_ik (x_id - C_dk) over valid frames; intra-norm over d; flatten d*K+k; L2."""
    mask = valid_mask()
    w, c = layer.cluster_kernel.numpy(), layer.centroids.numpy()
    logits = bn_ref(x.astype(np.float64) @ w, layer.cluster_bn, training, mask)
    out = []
    for b, n in enumerate(NUM_FRAMES):
        v = np.zeros_like(c, dtype=np.float64)
        for i in range(n):
            a = softmax(logits[b, i])
            for k in range(c.shape[1]):
                v[:, k] += a[k] * (x[b, i] - c[:, k])
        out.append(l2n(l2n(v, axis=0).reshape(-1), axis=0))
    return np.stack(out)


@pytest.mark.parametrize("training", [False, True])
def test_netvlad(training):
    rng = np.random.default_rng(8)
    clean, garbage = frames_with_garbage(rng, 5)
    layer = layers.NetVLAD(cluster_size=3)
    layer.build([(None, None, 5), (None,)])
    randomize_batch_norms(layer, rng)
    expected = netvlad_ref(clean, layer, training)
    np.testing.assert_allclose(run(layer, garbage, training), expected, **TOL)
    np.testing.assert_allclose(run(layer, clean, training), expected, **TOL)
    assert layer.get_prunable_weights() == [layer.cluster_kernel, layer.centroids]


def nextvlad_ref(x, layer, training):
    """SPEC NeXtVLAD: expansion, group attention, per-group soft assignment, grouped residuals."""
    mask = valid_mask()
    groups, clusters, width = layer.groups, layer.cluster_size, layer.group_size
    x = x.astype(np.float64)
    expanded = x @ layer.expansion_kernel.numpy() + layer.expansion_bias.numpy()
    attention = sigmoid(expanded @ layer.attention_kernel.numpy() + layer.attention_bias.numpy())
    logits = bn_ref(expanded @ layer.cluster_kernel.numpy(), layer.cluster_bn, training, mask)
    centroids = layer.centroids.numpy()
    vlads = []
    for b, n in enumerate(NUM_FRAMES):
        v = np.zeros((width, clusters))
        for i in range(n):
            for g in range(groups):
                a = softmax(logits[b, i, g * clusters:(g + 1) * clusters]) * attention[b, i, g]
                part = expanded[b, i, g * width:(g + 1) * width]
                for k in range(clusters):
                    v[:, k] += a[k] * (part - centroids[:, k])
        vlads.append(l2n(v, axis=0).reshape(-1))
    return bn_ref(np.stack(vlads), layer.output_bn, training)


@pytest.mark.parametrize("training", [False, True])
def test_nextvlad(training):
    rng = np.random.default_rng(9)
    clean, garbage = frames_with_garbage(rng, 6)
    layer = layers.NeXtVLAD(cluster_size=3, groups=4, expansion=2)
    layer.build([(None, None, 6), (None,)])
    randomize_batch_norms(layer, rng)
    assert layer.group_size == 3 and layer.centroids.shape == (3, 3)
    expected = nextvlad_ref(clean, layer, training)
    np.testing.assert_allclose(run(layer, garbage, training), expected, **TOL)
    assert len(layer.get_prunable_weights()) == 4
    with pytest.raises(ValueError, match="expansion\\*feature_size = 10 is not divisible by "
                                         "groups=4"):
        layers.NeXtVLAD(3, groups=4, expansion=2)([tf.zeros([1, 2, 5]), tf.constant([2])])


@pytest.mark.parametrize("pooling,activation", [("max", "sigmoid"), ("average", "sigmoid"),
                                                ("max", "relu6")])
def test_dbof_pooling(pooling, activation):
    rng = np.random.default_rng(10)
    clean, garbage = frames_with_garbage(rng, 5)
    layer = layers.DbofPooling(cluster_size=7, pooling_method=pooling, activation=activation)
    layer.build([(None, None, 5), (None,)])
    randomize_batch_norms(layer, rng)
    mask = valid_mask()
    for training in (False, True):
        normed = bn_ref(clean.astype(np.float64), layer.input_bn, training, mask)
        act = bn_ref(normed @ layer.cluster_kernel.numpy(), layer.cluster_bn, training, mask)
        act = sigmoid(act) if activation == "sigmoid" else np.clip(act, 0, 6)
        pool = np.max if pooling == "max" else np.mean
        expected = np.stack([pool(act[b, :n], axis=0) for b, n in enumerate(NUM_FRAMES)])
        np.testing.assert_allclose(run(layer, garbage, training), expected, **TOL)
    with pytest.raises(ValueError, match="dbof_activation='relu' is not one of sigmoid, relu6"):
        layers.DbofPooling(cluster_size=7, activation="relu")


@pytest.mark.parametrize("state_output", ["last_h", "all"])
def test_lstm_encoder_stops_at_last_valid_frame(state_output):
    rng = np.random.default_rng(11)
    clean, garbage = frames_with_garbage(rng, 3)
    units = 4
    layer = layers.LstmEncoder(cells=units, num_layers=2, state_output=state_output)
    layer.build([(None, None, 3), (None,)])
    expected = []
    for b, n in enumerate(NUM_FRAMES):
        sequence, states = clean[b, :n].astype(np.float64), []
        for lstm in layer.lstms:
            w, u, bias = (v.numpy() for v in (lstm.cell.kernel, lstm.cell.recurrent_kernel,
                                              lstm.cell.bias))
            h, c, outputs = np.zeros(units), np.zeros(units), []
            for x in sequence:  # Keras gate order: input, forget, cell, output
                z = x @ w + h @ u + bias
                i, f = sigmoid(z[:units]), sigmoid(z[units:2 * units])
                c = f * c + i * np.tanh(z[2 * units:3 * units])
                h = sigmoid(z[3 * units:]) * np.tanh(c)
                outputs.append(h)
            sequence = np.array(outputs)
            states += [c, h]
        # "all": Willow's MultiRNNCell(state_is_tuple=False) state [c_0, h_0, c_1, h_1].
        expected.append(sequence[-1] if state_output == "last_h" else np.concatenate(states))
    np.testing.assert_allclose(run(layer, garbage), np.stack(expected), **TOL)
    # forget-gate bias starts at 1 (starter BasicLSTMCell forget_bias=1.0)
    np.testing.assert_array_equal(layer.lstms[0].cell.bias.numpy()[units:2 * units], 1.0)
    assert len(layer.get_prunable_weights()) == 4


def test_lstm_encoder_initialisation_is_tf1_basic_lstm_cell():
    """BasicLSTMCell draws its joint kernel [input + units, 4 units] from Glorot uniform,
    +-sqrt(6 / (input + 5 units)): both Keras kernels within that range and spreading over it."""
    keras.utils.set_random_seed(5)
    layer = layers.LstmEncoder(cells=64, num_layers=2)
    layer.build([(None, None, 200), (None,)])
    for lstm, input_size in zip(layer.lstms, (200, 64)):
        limit = np.sqrt(6.0 / (input_size + 64 + 4 * 64))
        for kernel in (lstm.cell.kernel.numpy(), lstm.cell.recurrent_kernel.numpy()):
            assert np.abs(kernel).max() <= limit
            assert np.abs(kernel).max() > 0.99 * limit
            assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.05)


def test_wide_dense_gradients():
    """WideDense computes x W + b and the usual gradients (its input gradient is rearranged)."""
    rng = np.random.default_rng(12)
    x = tf.constant(rng.normal(size=(3, 7)).astype(np.float32))
    upstream = rng.normal(size=(3, 5)).astype(np.float32)
    layer = layers.WideDense(5)
    layer.build((None, 7))
    layer.bias.assign(rng.normal(size=5))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * upstream)
    dx, dw, db = tape.gradient(loss, [x, layer.kernel, layer.bias])
    w, xs = layer.kernel.numpy(), x.numpy()
    np.testing.assert_allclose(y.numpy(), xs @ w + layer.bias.numpy(), **TOL)
    np.testing.assert_allclose(dx.numpy(), upstream @ w.T, **TOL)
    np.testing.assert_allclose(dw.numpy(), xs.T @ upstream, **TOL)
    np.testing.assert_allclose(db.numpy(), upstream.sum(0), **TOL)
    assert layer.get_prunable_weights() == [layer.kernel]
