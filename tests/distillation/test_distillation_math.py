"""Distillation building blocks (yt8m.distillation, the KL terms of yt8m.losses, frame selection)
against numpy on fixed inputs."""
import itertools

import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

from frame_level_models.composite import frame_selection
from yt8m import losses as base_losses
from yt8m.distillation import bilinear, graph
from yt8m.distillation import losses as dl

RNG = np.random.default_rng(1234)
TEACHER_A = RNG.normal(size=(3, 5)).astype(np.float32)
TEACHER_B = RNG.normal(size=(3, 5)).astype(np.float32)
STUDENT = RNG.normal(size=(3, 5)).astype(np.float32)
LABELS = np.array([[1, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 1, 1, 1, 0]], np.float32)


# ----------------------------------------------------------------------------- numpy references

def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_kl(p, q):
    """[B]: sum_c p log(p / q)."""
    return (p * (np.log(p) - np.log(q))).sum(axis=-1)


def np_binary_kl(p, q):
    return (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))).sum(axis=-1)


def np_count_sketch_of_outer_product(x, y, h1, s1, h2, s2, size):
    """Builds x (outer) y explicitly and count-sketches its d1*d2 entries with
    H(i, j) = (h1[i] + h2[j]) mod size and S(i, j) = s1[i] * s2[j]."""
    out = np.zeros((x.shape[0], size))
    for b in range(x.shape[0]):
        outer = np.outer(x[b], y[b])
        for i, j in itertools.product(range(x.shape[1]), range(y.shape[1])):
            out[b, (h1[i] + h2[j]) % size] += s1[i] * s2[j] * outer[i, j]
    return out


def np_signed_sqrt_l2(z):
    z = np.sign(z) * np.sqrt(np.abs(z))
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def np_mmd(x, y, sigma):
    def k(a, b):
        return np.mean([[np.exp(-np.sum((u - v) ** 2) / (2 * sigma ** 2)) for v in b] for u in a])
    return k(x, x) + k(y, y) - 2 * k(x, y)


# ----------------------------------------------------------------------------- frame selection

LENGTHS = tf.constant([10, 3, 7, 0])
EXPECTED_INDICES = {  # k = 5; a 3-frame and an empty video keep what they have, -1 pads
    "uniform": [[0, 2, 4, 6, 8], [0, 1, 2, -1, -1], [0, 1, 2, 4, 5], [-1] * 5],  # (j * n) // 5
    "first": [[0, 1, 2, 3, 4], [0, 1, 2, -1, -1], [0, 1, 2, 3, 4], [-1] * 5],
    "middle": [[2, 3, 4, 5, 6], [0, 1, 2, -1, -1], [1, 2, 3, 4, 5], [-1] * 5],   # (n - 5) // 2
    "last": [[5, 6, 7, 8, 9], [0, 1, 2, -1, -1], [2, 3, 4, 5, 6], [-1] * 5],
    # 5 = 2 first + 2 middle + 1 last; n=10: middle starts at (10 - 2) // 2 = 4;
    # n=7: (7 - 2) // 2 = 2
    "first-middle-last": [[0, 1, 4, 5, 9], [0, 1, 2, -1, -1], [0, 1, 2, 3, 6], [-1] * 5],
}


@pytest.mark.parametrize("strategy", sorted(EXPECTED_INDICES))
def test_frame_indices_on_known_lengths(strategy):
    indices = frame_selection.frame_indices(LENGTHS, 5, strategy)
    assert indices.numpy().tolist() == EXPECTED_INDICES[strategy]


def test_first_middle_last_split_of_k_and_long_videos():
    # k = 10 -> 4 first + 3 middle + 3 last; n = 300: middle starts at (300 - 3) // 2 = 148
    indices = frame_selection.frame_indices(tf.constant([300, 10]), 10, "first-middle-last")
    assert indices.numpy().tolist() == [[0, 1, 2, 3, 148, 149, 150, 297, 298, 299],
                                        list(range(10))]


def test_random_frames_are_distinct_sorted_valid_and_seeded():
    lengths = tf.constant([12, 6, 4])
    seed = tf.constant([3, 4])
    first = frame_selection.frame_indices(lengths, 6, "random", max_frames=15, seed=seed).numpy()
    again = frame_selection.frame_indices(lengths, 6, "random", max_frames=15, seed=seed).numpy()
    np.testing.assert_array_equal(first, again)
    assert first[1].tolist() == list(range(6))            # n == k: every frame
    assert first[2].tolist() == [0, 1, 2, 3, -1, -1]      # n < k
    seen = set()
    for s in range(40):
        row = frame_selection.frame_indices(lengths, 6, "random", max_frames=15,
                                            seed=tf.constant([s, 0])).numpy()[0]
        assert len(set(row)) == 6 and list(row) == sorted(row) and row.max() < 12
        seen.update(row.tolist())
    assert seen == set(range(12))                          # padded frames 12..14 never drawn


def test_select_frames_gathers_every_stream_and_zero_pads():
    # frame t of video b holds the value 100 * b + t + 1 (never 0), so padding is visible
    values = (100 * np.arange(2)[:, None] + np.arange(8)[None, :] + 1).astype(np.float32)
    rgb = np.repeat(values[:, :, None], 3, axis=2)         # [2, 8, 3]
    audio = values[:, :, None].astype(np.uint8)            # [2, 8, 1], uint8 stays uint8
    selected, num_frames = frame_selection.select_frames(
        {"rgb": rgb, "audio": audio}, tf.constant([8, 2]), 4, "uniform")
    assert num_frames.numpy().tolist() == [4, 2]
    # video 0: frames (j * 8) // 4 = 0, 2, 4, 6 -> values 1, 3, 5, 7; video 1: frames 0, 1, pad
    expected = np.array([[1, 3, 5, 7], [101, 102, 0, 0]], np.float32)
    np.testing.assert_array_equal(selected["rgb"].numpy(), np.repeat(expected[:, :, None], 3, 2))
    assert selected["audio"].dtype == tf.uint8
    np.testing.assert_array_equal(selected["audio"].numpy()[:, :, 0], expected.astype(np.uint8))


def test_select_frames_inside_tf_function_with_unknown_shapes():
    @tf.function(input_signature=[tf.TensorSpec([None, None, 2]), tf.TensorSpec([None], tf.int32)])
    def pick(features, num_frames):
        return frame_selection.select_frames(features, num_frames, 3, "random")

    features = np.ones([2, 5, 2], np.float32)
    selected, num_frames = pick(features, tf.constant([5, 1]))
    assert selected.shape == (2, 3, 2) and num_frames.numpy().tolist() == [3, 1]
    np.testing.assert_array_equal(selected.numpy()[1, :, 0], [1, 0, 0])


def test_frame_selection_errors():
    with pytest.raises(ValueError, match="Unknown frame selection strategy 'every'; choose one "
                                         "of: uniform, random, first, middle, last, "
                                         "first-middle-last"):
        frame_selection.frame_indices(LENGTHS, 5, "every")
    with pytest.raises(ValueError, match="number of frames to select must be a positive "
                                         "integer, got 0"):
        frame_selection.frame_indices(LENGTHS, 0)


# ----------------------------------------------------------------------------- teacher-student

def test_representation_loss_and_teacher_gradient_stopped():
    teacher = tf.Variable(TEACHER_A)
    student = tf.Variable(STUDENT)
    with tf.GradientTape() as tape:
        loss = dl.representation_loss(teacher, student)
    # mean over the 3 examples of the squared L2 distance
    expected = np.mean(np.sum((TEACHER_A - STUDENT) ** 2, axis=1))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    teacher_grad, student_grad = tape.gradient(loss, [teacher, student])
    assert teacher_grad is None
    np.testing.assert_allclose(student_grad.numpy(), 2 * (STUDENT - TEACHER_A) / 3, rtol=1e-5)


def test_prediction_loss_distances():
    p_t, p_s = np_sigmoid(TEACHER_A), np_sigmoid(STUDENT)
    # kl: rows L1-normalised into distributions across classes
    q_t, q_s = p_t / p_t.sum(1, keepdims=True), p_s / p_s.sum(1, keepdims=True)
    assert float(dl.prediction_loss(p_t, p_s, "kl")) == pytest.approx(
        np.mean(np_kl(q_t, q_s)), rel=1e-5)
    assert float(dl.prediction_loss(p_t, p_s, "squared_error")) == pytest.approx(
        np.mean(np.sum((p_t - p_s) ** 2, axis=1)), rel=1e-5)
    assert float(dl.prediction_loss(p_t, p_s, "binary_kl")) == pytest.approx(
        np.mean(np_binary_kl(p_t, p_s)), rel=1e-4)
    assert float(dl.prediction_loss(p_t, p_t, "kl")) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="Unknown prediction distance 'l1'; choose one of: kl, "
                                         "squared_error, binary_kl"):
        dl.prediction_loss(p_t, p_s, "l1")


def test_kl_from_logits_with_temperature():
    t = 2.5
    assert float(base_losses.softmax_kl(TEACHER_A, STUDENT, t)) == pytest.approx(
        np.mean(np_kl(np_softmax(TEACHER_A / t), np_softmax(STUDENT / t))), rel=1e-5)
    assert float(base_losses.binary_kl(TEACHER_A, STUDENT, t)) == pytest.approx(
        np.mean(np_binary_kl(np_sigmoid(TEACHER_A / t), np_sigmoid(STUDENT / t))), rel=1e-5)
    # saturated logits stay finite in the logits form: p = sigmoid(60) ~= 1, so
    # KL ~= 1 * (log 1 - log sigmoid(-60)) = softplus(60) ~= 60 (clipped probabilities give ~16)
    assert float(base_losses.binary_kl([[60.0]], [[-60.0]])) == pytest.approx(60.0, rel=1e-6)


def test_mixture_kl():
    t = 3.0
    mixture = tf.Variable(STUDENT)
    with tf.GradientTape() as tape:
        loss = base_losses.mixture_kl(mixture, [TEACHER_A, TEACHER_B], t)
    # mean over the batch of sum over the 2 branches of KL(softmax(z/T) || softmax(z_i/T))
    p = np_softmax(STUDENT / t)
    expected = np.mean(np_kl(p, np_softmax(TEACHER_A / t)) + np_kl(p, np_softmax(TEACHER_B / t)))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert tape.gradient(loss, mixture) is not None  # no stop-gradient on the mixture side
    assert float(base_losses.mixture_kl(STUDENT, [TEACHER_A], 0)) == 0.0  # T = 0: no distillation


# ----------------------------------------------------------------------------- multi-teacher

def test_multi_teacher_soft_labels_both_forms():
    t, mu = 2.0, [3.0, 1.0]
    softmax_labels = dl.multi_teacher_soft_labels([TEACHER_A, TEACHER_B], t, mu, "softmax")
    # (3 * softmax(a/2) + 1 * softmax(b/2)) / 4
    np.testing.assert_allclose(
        softmax_labels.numpy(),
        (3 * np_softmax(TEACHER_A / t) + np_softmax(TEACHER_B / t)) / 4, rtol=1e-5)
    sigmoid_labels = dl.multi_teacher_soft_labels([TEACHER_A, TEACHER_B], t, mu, "sigmoid")
    np.testing.assert_allclose(
        sigmoid_labels.numpy(),
        (3 * np_sigmoid(TEACHER_A / t) + np_sigmoid(TEACHER_B / t)) / 4, rtol=1e-5)
    with pytest.raises(ValueError, match="got 1 teacher weights for 2 teachers"):
        dl.multi_teacher_soft_labels([TEACHER_A, TEACHER_B], t, [1.0])
    with pytest.raises(ValueError, match="Unknown distribution form 'relu'"):
        dl.multi_teacher_soft_labels([TEACHER_A], t, form="relu")


def test_multi_teacher_loss_softmax_form():
    t, lam, mu = 4.0, 0.7, [1.0, 2.0]
    result = dl.multi_teacher_loss(STUDENT, [TEACHER_A, TEACHER_B], LABELS, t, lam, mu)
    q = (np_softmax(TEACHER_A / t) + 2 * np_softmax(TEACHER_B / t)) / 3
    soft = np.mean(np_kl(q, np_softmax(STUDENT / t)))
    # hard: cross-entropy with the L1-normalised labels
    targets = LABELS / LABELS.sum(1, keepdims=True)
    hard = np.mean(-(targets * np.log(np_softmax(STUDENT))).sum(1))
    assert float(result["soft_loss"]) == pytest.approx(soft, rel=1e-5)
    assert float(result["hard_loss"]) == pytest.approx(hard, rel=1e-5)
    assert float(result["loss"]) == pytest.approx(lam * t * t * soft + (1 - lam) * hard, rel=1e-5)


def test_multi_teacher_loss_sigmoid_form():
    t, lam = 2.0, 0.5
    result = dl.multi_teacher_loss(STUDENT, [TEACHER_A, TEACHER_B], LABELS, t, lam,
                                   form="sigmoid")
    q = (np_sigmoid(TEACHER_A / t) + np_sigmoid(TEACHER_B / t)) / 2
    soft = np.mean(np_binary_kl(q, np_sigmoid(STUDENT / t)))
    p = np_sigmoid(STUDENT)
    hard = np.mean(-(LABELS * np.log(p) + (1 - LABELS) * np.log(1 - p)).sum(1))
    assert float(result["soft_loss"]) == pytest.approx(soft, rel=1e-5)
    assert float(result["hard_loss"]) == pytest.approx(hard, rel=1e-5)
    assert float(result["loss"]) == pytest.approx(lam * t * t * soft + (1 - lam) * hard, rel=1e-5)


def test_soft_label_loss_is_zero_at_the_teacher_and_has_cross_entropy_gradient():
    t = 3.0
    q = dl.multi_teacher_soft_labels([TEACHER_A], t)
    assert float(dl.soft_label_loss(q, TEACHER_A, t)) == pytest.approx(0.0, abs=1e-6)
    student = tf.Variable(STUDENT)
    with tf.GradientTape(persistent=True) as tape:
        kl = dl.soft_label_loss(q, student, t)
        cross_entropy = tf.reduce_mean(
            -tf.reduce_sum(q * tf.nn.log_softmax(student / t), axis=-1))
    np.testing.assert_allclose(tape.gradient(kl, student).numpy(),
                               tape.gradient(cross_entropy, student).numpy(), atol=1e-6)


# ----------------------------------------------------------------------------- MMD and EMD

def test_gaussian_mmd():
    x, y = RNG.normal(size=(4, 3)), RNG.normal(loc=0.5, size=(6, 3))
    assert float(dl.gaussian_mmd(x, y, bandwidth=1.5)) == pytest.approx(np_mmd(x, y, 1.5),
                                                                         rel=1e-6)
    assert float(dl.gaussian_mmd(x, x)) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="MMD kernel bandwidth must be > 0, got 0"):
        dl.gaussian_mmd(x, y, 0)


def test_total_variation_is_emd_under_0_1_metric():
    p = np.array([[0.5, 0.3, 0.2]])
    q = np.array([[0.2, 0.3, 0.5]])
    # moving 0.3 of mass from class 0 to class 2 at cost 1: EMD = 0.3 = 0.5 * (0.3 + 0 + 0.3)
    assert float(dl.total_variation(p, q)[0]) == pytest.approx(0.3)


# ----------------------------------------------------------------------------- bilinear

def test_compact_bilinear_pooling_equals_sketch_of_outer_product():
    x, y = RNG.normal(size=(2, 6)), RNG.normal(size=(2, 4))
    raw = bilinear.CompactBilinearPooling(7, seed=5, signed_sqrt=False, l2_normalize=False)
    out = raw([tf.constant(x, tf.float32), tf.constant(y, tf.float32)]).numpy()
    (h1, h2), (s1, s2) = raw.hashes, raw.signs
    expected = np_count_sketch_of_outer_product(x, y, h1, s1, h2, s2, 7)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # full layer: signed square root then L2 normalisation of the same sketch
    full = bilinear.CompactBilinearPooling(7, seed=5)
    np.testing.assert_allclose(full([x, y]).numpy(), np_signed_sqrt_l2(expected), atol=1e-5)
    # same seed -> same hashes; another seed -> others
    assert all((a == b).all() for a, b in zip(full.hashes, raw.hashes))
    other = bilinear.CompactBilinearPooling(7, seed=6)
    other.build([(None, 6), (None, 4)])
    assert any((a != b).any() for a, b in zip(other.hashes, raw.hashes))
    # rebuilt from its config, the layer computes the same function
    clone = bilinear.CompactBilinearPooling.from_config(full.get_config())
    np.testing.assert_allclose(clone([x, y]).numpy(), full([x, y]).numpy(), atol=1e-6)


def test_compact_bilinear_pooling_sums_over_positions_and_has_finite_gradients():
    x, y = RNG.normal(size=(2, 3, 6)), RNG.normal(size=(2, 3, 4))
    raw = bilinear.CompactBilinearPooling(8, seed=1, signed_sqrt=False, l2_normalize=False)
    out = raw([x, y]).numpy()
    (h1, h2), (s1, s2) = raw.hashes, raw.signs
    expected = sum(np_count_sketch_of_outer_product(x[:, p], y[:, p], h1, s1, h2, s2, 8)
                   for p in range(3))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # exact zeros in the sketch (zero input) keep the signed-sqrt gradient finite
    zeros = tf.Variable(np.zeros((1, 6), np.float32))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(bilinear.CompactBilinearPooling(8)([zeros, tf.ones([1, 4])]))
    assert np.isfinite(tape.gradient(value, zeros).numpy()).all()


# ----------------------------------------------------------------------------- graphs

def set_edge_logits(layer, values):
    layer.edge_logits.assign(np.asarray(values, np.float32))


@pytest.mark.parametrize("distance,form", [("kl", "softmax"), ("emd", "softmax"),
                                           ("kl", "sigmoid"), ("emd", "sigmoid")])
def test_logits_graph_against_numpy(distance, form):
    layer = graph.LogitsGraph(2, distance=distance, form=form, teacher_temperatures=[2.0, 4.0],
                              edge_temperature=0.5)
    layer([TEACHER_A, TEACHER_B, STUDENT])  # builds the edge parameters
    set_edge_logits(layer, [[0.0, 0.3, 0.4], [0.0, 0.0, -0.1]])
    # teacher -> student weights: softmax over the sources of edge_logits[:, 2] / 0.5
    w = np_softmax(np.array([0.4, -0.1]) / 0.5)
    np.testing.assert_allclose(layer.teacher_weights().numpy(), w, rtol=1e-6)
    soften = np_softmax if form == "softmax" else np_sigmoid
    p_a, p_b, p_s = soften(TEACHER_A / 2.0), soften(TEACHER_B / 4.0), soften(STUDENT)

    def d(p, q):
        if distance == "kl":
            return np_kl(p, q) if form == "softmax" else np_binary_kl(p, q)
        return 0.5 * np.abs(p - q).sum(-1) if form == "softmax" else np.abs(p - q).sum(-1)

    expected = np.mean(w[0] * d(p_a, p_s) + w[1] * d(p_b, p_s))
    loss = layer([TEACHER_A, TEACHER_B, STUDENT])
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(layer.soft_target([TEACHER_A, TEACHER_B]).numpy(),
                               w[0] * p_a + w[1] * p_b, rtol=1e-5)


def test_logits_graph_edges_and_gradients():
    layer = graph.LogitsGraph(3, teacher_edges=True)
    teachers = [tf.Variable(RNG.normal(size=(3, 5)).astype(np.float32)) for _ in range(3)]
    student = tf.Variable(STUDENT)
    layer(teachers + [student])
    set_edge_logits(layer, RNG.normal(size=(3, 4)))
    weights = layer.edge_weights().numpy()
    assert (weights >= 0).all() and np.allclose(np.diag(weights[:, :3]), 0.0)
    np.testing.assert_allclose(weights.sum(axis=0), np.ones(4), rtol=1e-6)
    with tf.GradientTape() as tape:
        loss = layer(teachers + [student])
    # every edge n -> m (n a teacher, n != m): weight * KL(source || target), mean over the batch
    probabilities = [np_softmax(t.numpy()) for t in teachers] + [np_softmax(STUDENT)]
    expected = np.mean(sum(weights[n, m] * np_kl(probabilities[n], probabilities[m])
                           for n in range(3) for m in range(4) if n != m))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    gradients = tape.gradient(loss, teachers + [student, layer.edge_logits])
    # a teacher gets gradient only as an edge's target; edges and student always do
    assert all(g is not None for g in gradients)
    with tf.GradientTape() as tape:
        student_only = graph.LogitsGraph(3)(teachers + [student])
    assert tape.gradient(student_only, teachers) == [None, None, None]


def test_representation_graph_against_numpy():
    features = [RNG.normal(size=(4, d)).astype(np.float32) for d in (3, 4, 2)]
    student = RNG.normal(size=(4, 6)).astype(np.float32)
    layer = graph.RepresentationGraph(3, vertex_temperatures=[1.0, 2.0, 0.5], bandwidth=0.8,
                                      seed=11)
    layer(features + [student])
    set_edge_logits(layer, [0.2, -0.4, 0.1])
    loss = float(layer(features + [student]))
    expected = 0.0
    w = np_softmax(np.array([0.2, -0.4, 0.1]))
    for k, ((m, n), t) in enumerate(zip([(0, 1), (0, 2), (1, 2)], [1.0, 2.0, 0.5])):
        pooling = layer.poolings[k]
        (h1, h2), (s1, s2) = pooling.hashes, pooling.signs
        vertex = np_signed_sqrt_l2(np_count_sketch_of_outer_product(
            features[m], features[n], h1, s1, h2, s2, 6))
        expected += w[k] * np_mmd(np_softmax(student), np_softmax(vertex / t), 0.8)
    assert loss == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="RepresentationGraph pairs teachers: it needs at least 2"):
        graph.RepresentationGraph(1)
