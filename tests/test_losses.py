"""yt8m.losses against numpy arithmetic written out in the tests."""
import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m import losses

EPS = losses.PROBABILITY_EPSILON


def value(tensor):
    return float(tensor.numpy())


def test_cross_entropy_on_probabilities():
    predictions = np.array([[0.8, 0.1], [0.3, 0.6]], np.float32)
    labels = np.array([[1, 0], [0, 1]], np.float32)
    # per example: -(log(p_pos + eps) + log(1 - p_neg + eps)), summed over classes; mean over 2
    example0 = -(np.log(0.8 + EPS) + np.log(1 - 0.1 + EPS))
    example1 = -(np.log(1 - 0.3 + EPS) + np.log(0.6 + EPS))
    loss = losses.CrossEntropyLoss().calculate_loss(predictions, labels)
    assert value(loss) == pytest.approx((example0 + example1) / 2, rel=1e-6)


def test_cross_entropy_is_the_starters_even_when_the_model_has_logits():
    """The starter's CrossEntropyLoss on fixed probabilities, by hand: it never reads logits."""
    predictions = np.array([[0.9, 0.2, 0.9999]], np.float32)
    labels = np.array([[1, 0, 0]], np.float32)
    # -log(0.9 + 1e-5) - log(0.8 + 1e-5) - log(1 - 0.9999 + 1e-5) = 0.10535 + 0.22313 + 9.11503:
    # the confident mistake costs -log(1.1e-4) (with logits of 50 it would cost 50).
    expected = -(np.log(0.9 + 1e-5) + np.log(0.8 + 1e-5) + np.log(1.1e-4))
    assert expected == pytest.approx(9.44351, abs=1e-4)
    loss = losses.CrossEntropyLoss().calculate_loss(predictions, labels,
                                                    logits=np.full((1, 3), 50.0, np.float32))
    assert value(loss) == pytest.approx(expected, rel=1e-4)
    # The reference oracle (tests/reference/starter_numpy.py, from the starter's losses.py).
    from reference import starter_numpy
    assert value(loss) == pytest.approx(starter_numpy.cross_entropy_loss(predictions, labels),
                                        rel=1e-5)
    # linrongc's / MOD's epsilon 1e-8 (the NeXtVLAD and mixture models register it).
    linrongc = losses.get_label_loss("CrossEntropyLoss", probability_epsilon=1e-8)
    assert value(linrongc.calculate_loss(predictions, labels)) == pytest.approx(
        starter_numpy.cross_entropy_loss(predictions, labels, epsilon=1e-8), rel=1e-4)
    with pytest.raises(ValueError, match="CrossEntropyLoss: epsilon must be > 0, got 0"):
        losses.CrossEntropyLoss(0)


def test_logits_cross_entropy_option_is_exact_and_stable():
    logits = np.array([[2.0, -1.0, 100.0]], np.float32)
    labels = np.array([[1, 0, 0]], np.float32)
    # log(1 + e^-2) for the positive, log(1 + e^-1) for the negative at -1,
    # and the negative at logit 100 costs log(1 + e^100) ~= 100, finite.
    expected = np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0)) + 100.0
    predictions = tf.sigmoid(logits)
    loss = losses.LogitsCrossEntropyLoss().calculate_loss(predictions, labels, logits=logits)
    assert value(loss) == pytest.approx(expected, rel=1e-6)
    # The starter's probability form saturates at -log(eps) for that class instead; the logits
    # option falls back to it for a model without logits (MoE).
    on_probabilities = np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0)) - np.log(EPS)
    assert value(losses.CrossEntropyLoss().calculate_loss(predictions, labels, logits=logits)) \
        == pytest.approx(on_probabilities, rel=1e-4)
    assert value(losses.LogitsCrossEntropyLoss().calculate_loss(predictions, labels)) == \
        pytest.approx(on_probabilities, rel=1e-4)


def test_label_weights_select_class_terms():
    predictions = np.array([[0.8, 0.1], [0.3, 0.6]], np.float32)
    labels = np.array([[1, 0], [0, 1]], np.float32)
    weights = np.array([[1, 0], [0, 2]], np.float32)
    # example 0 keeps only class 0; example 1 counts class 1 twice; mean over both examples
    expected = (-np.log(0.8 + EPS) - 2 * np.log(0.6 + EPS)) / 2
    loss = losses.CrossEntropyLoss().calculate_loss(predictions, labels, label_weights=weights)
    assert value(loss) == pytest.approx(expected, rel=1e-6)
    # hinge: example 0 class 0 -> max(0, 1 - 0.8) = 0.2; example 1 class 1 -> 2 * (1 - 0.6)
    hinge = losses.HingeLoss().calculate_loss(predictions, labels, label_weights=weights)
    assert value(hinge) == pytest.approx((0.2 + 0.8) / 2, rel=1e-6)


def test_hinge_loss():
    predictions = np.array([[0.8, 0.3], [-0.5, 2.0]], np.float32)
    labels = np.array([[1, 0], [0, 1]], np.float32)
    # example 0: max(0, 1 - 0.8) + max(0, 1 + 0.3) = 1.5
    # example 1: max(0, 1 - 0.5) + max(0, 1 - 2.0) = 0.5      mean = 1.0
    assert value(losses.HingeLoss().calculate_loss(predictions, labels)) == pytest.approx(1.0)
    # margin 0.5: example 0: 0 + 0.8, example 1: 0 + 0 -> mean 0.4
    assert value(losses.HingeLoss(margin=0.5).calculate_loss(predictions, labels)) == \
        pytest.approx(0.4)


def log_softmax(row):
    row = np.asarray(row, np.float64)
    return row - np.log(np.exp(row - row.max()).sum()) - row.max()


def test_softmax_loss():
    probabilities = np.array([[0.2, 0.5, 0.9], [0.1, 0.1, 0.1]], np.float32)
    labels = np.array([[1, 0, 1], [0, 0, 0]], np.float32)
    # The starter's: a softmax over the PREDICTIONS; example 0: target [1/2, 0, 1/2]; example 1
    # has no positive and contributes 0. Logits, when given, are not read.
    ls = log_softmax([0.2, 0.5, 0.9])
    expected = -(0.5 * ls[0] + 0.5 * ls[2]) / 2
    loss = losses.SoftmaxLoss().calculate_loss(probabilities, labels,
                                               logits=np.zeros((2, 3), np.float32))
    assert value(loss) == pytest.approx(expected, rel=1e-6)
    from reference import starter_numpy
    assert value(loss) == pytest.approx(starter_numpy.softmax_loss(probabilities, labels),
                                        rel=1e-6)
    # The named option LogitsSoftmaxLoss softmaxes the logits where the model has them.
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
    ls = log_softmax([1.0, 2.0, 3.0])
    loss = losses.LogitsSoftmaxLoss().calculate_loss(tf.sigmoid(logits), labels, logits=logits)
    assert value(loss) == pytest.approx(-(0.5 * ls[0] + 0.5 * ls[2]) / 2, rel=1e-6)


def test_hinge_loss_is_the_starters():
    from reference import starter_numpy
    predictions = np.array([[0.8, 0.3, 0.5], [0.1, 0.9, 0.0]], np.float32)
    labels = np.array([[1, 0, 1], [0, 1, 0]], np.float32)
    assert value(losses.HingeLoss().calculate_loss(predictions, labels)) == pytest.approx(
        starter_numpy.hinge_loss(predictions, labels), rel=1e-6)


def test_softmax_loss_label_weights_mask_classes():
    logits = tf.constant([[1.0, 2.0, 3.0]])
    labels = np.array([[1, 0, 1]], np.float32)
    weights = np.array([[1, 1, 0]], np.float32)
    # class 2 is unrated: it leaves the softmax and the target -> -log(e^1 / (e^1 + e^2))
    expected = -(1.0 - np.log(np.exp(1.0) + np.exp(2.0)))
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = losses.LogitsSoftmaxLoss().calculate_loss(tf.sigmoid(logits), labels,
                                                         label_weights=weights, logits=logits)
    assert value(loss) == pytest.approx(expected, rel=1e-6)
    gradient = tape.gradient(loss, logits).numpy()
    # d/dz = softmax over {0, 1} - target; the masked class gets no gradient
    p = np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum()
    np.testing.assert_allclose(gradient, [[p[0] - 1.0, p[1], 0.0]], atol=1e-6)
    # The starter's SoftmaxLoss on the predictions, with the same class mask.
    scores = 1 / (1 + np.exp(-np.array([1.0, 2.0])))
    assert value(losses.SoftmaxLoss().calculate_loss(tf.sigmoid(logits), labels,
                                                     label_weights=weights)) == \
        pytest.approx(-(scores[0] - np.log(np.exp(scores).sum())), rel=1e-6)


def test_registry():
    assert isinstance(losses.get_label_loss("CrossEntropyLoss"), losses.CrossEntropyLoss)
    assert isinstance(losses.get_label_loss("HingeLoss"), losses.HingeLoss)
    assert isinstance(losses.get_label_loss("SoftmaxLoss"), losses.SoftmaxLoss)
    assert type(losses.get_label_loss("LogitsCrossEntropyLoss")) is losses.LogitsCrossEntropyLoss
    assert type(losses.get_label_loss("LogitsSoftmaxLoss")) is losses.LogitsSoftmaxLoss
    assert losses.get_label_loss("CrossEntropyLoss").epsilon == 1e-5  # the starter's
    with pytest.raises(ValueError, match=r"Unknown label loss 'Xent' \(--label_loss\); choose one "
                                         r"of: CrossEntropyLoss, HingeLoss, LogitsCrossEntropyLoss, "
                                         r"LogitsSoftmaxLoss, SoftmaxLoss"):
        losses.get_label_loss("Xent")


def test_losses_work_inside_tf_function():
    loss = losses.get_label_loss("CrossEntropyLoss")

    @tf.function
    def step(predictions, labels, weights):
        return loss.calculate_loss(predictions, labels, label_weights=weights)

    predictions = tf.constant([[0.8, 0.1]])
    labels = tf.constant([[1.0, 0.0]])
    expected = -(np.log(0.8 + EPS) + np.log(1 - 0.1 + EPS))
    assert value(step(predictions, labels, tf.ones([1, 2]))) == pytest.approx(expected, rel=1e-6)
