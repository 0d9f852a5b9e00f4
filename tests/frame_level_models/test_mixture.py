"""MixtureModel / MOD tree maths: the loss terms against numpy, the gate, gradients, flags."""
import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

import frame_level_models
from frame_level_models.composite import mixture_models
from frame_level_models.composite import mod_tree
from frame_level_models.composite.mixture import MixtureModel
from reference import nextvlad_numpy
from yt8m.training import objective
from yt8m.training.model_builder import label_loss_for

V = 4
FEATURES = dict(feature_names="rgb,audio", feature_sizes="6,3")


def np_log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_kl(teacher, student, temperature):
    """Per example: sum_c p_c (log p_c - log q_c), p = softmax(teacher/T), q = softmax(z/T)."""
    log_p = np_log_softmax(teacher / temperature)
    log_q = np_log_softmax(student / temperature)
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)


def np_bce(labels, logits, weights=None):
    """sum over classes of -[y log s + (1-y) log(1-s)], mean over the batch."""
    s = 1.0 / (1.0 + np.exp(-logits))
    per_class = -(labels * np.log(s) + (1 - labels) * np.log(1 - s))
    if weights is not None:
        per_class = per_class * weights
    return per_class.sum(axis=-1).mean()


def batch(seed=0, num_frames=(5, 2, 1)):
    rng = np.random.default_rng(seed)
    size = len(num_frames)
    return {"rgb": tf.constant(rng.normal(size=(size, 5, 6)), tf.float32),
            "audio": tf.constant(rng.normal(size=(size, 5, 3)), tf.float32),
            "num_frames": tf.constant(num_frames, tf.int32)}


def build(model="MixtureModel", **hparams):
    settings = dict(mixture_base_model="FrameLevelLogisticModel", l2_penalty=1e-3, **FEATURES)
    settings.update(hparams)
    return mixture_models.build(model, V, **settings)


@pytest.fixture(scope="module")
def one_level():
    return build(mix_number=2, cl_temperature=2.0, cl_lambda=0.7)


@pytest.fixture(scope="module")
def tree():
    return build(mod_tree="2x2", mod_temperatures="3.0,2.0", mod_lambdas="0.5,0.25",
                 mix_gate_l2_penalty=1e-5)


LOGITS = np.array([[1.0, -2.0, 0.5, 0.0], [0.3, 3.0, -1.0, 2.0]], np.float32)
BRANCH_A = np.array([[0.5, -1.0, 0.0, 1.0], [1.0, 2.0, -2.0, 0.5]], np.float32)
BRANCH_B = np.array([[2.0, 0.0, -1.0, -0.5], [-1.0, 1.5, 0.0, 3.0]], np.float32)
LABELS = np.array([[1, 0, 0, 1], [0, 1, 0, 0]], np.float32)


def np_kl_reference(teacher, student, temperature, epsilon=1e-8):
    """linrongc's KL: sum_c q (log(q + 1e-8) - log(p + 1e-8)), q, p softmaxes at T."""
    q = np.exp(np_log_softmax(teacher / temperature))
    p = np.exp(np_log_softmax(student / temperature))
    return (q * (np.log(q + epsilon) - np.log(p + epsilon))).sum(axis=-1)


def test_distillation_term_is_a_regularisation_term_matching_the_reference(one_level):
    outputs = {"logits": tf.constant(LOGITS),
               "branch_logits": tf.constant(np.stack([BRANCH_A, BRANCH_B], axis=1))}
    got = float(one_level.regularization_terms(outputs))
    kl = (np_kl_reference(LOGITS, BRANCH_A, 2.0) + np_kl_reference(LOGITS, BRANCH_B, 2.0)).mean()
    assert kl > 0.01
    np.testing.assert_allclose(got, 0.7 * kl, rtol=1e-5)
    # The reference oracle (tests/reference, from linrongc's nextvlad.py) agrees.
    np.testing.assert_allclose(got, nextvlad_numpy.distillation_loss(
        LOGITS, np.stack([BRANCH_A, BRANCH_B], axis=1), 2.0, 0.7), rtol=1e-5)
    # The branches are auxiliary predictions, scored with the trainer's label loss.
    pairs = one_level.auxiliary_predictions(outputs)
    assert len(pairs) == 2
    for (predictions, logits), expected in zip(pairs, (BRANCH_A, BRANCH_B)):
        np.testing.assert_allclose(logits.numpy(), expected)
        np.testing.assert_allclose(predictions.numpy(), 1 / (1 + np.exp(-expected)), rtol=1e-6)


def test_training_loss_is_linrongcs(one_level):
    """objective.training_loss of a mixture = linrongc's train.py: CE(p) + sum_i CE(p_i) (eps 1e-8,
    the epsilon the mixtures register) + regularization_penalty * (L2 + lambda * KL)."""
    outputs = {"predictions": tf.sigmoid(LOGITS), "logits": tf.constant(LOGITS),
               "branch_logits": tf.constant(np.stack([BRANCH_A, BRANCH_B], axis=1))}
    label_loss = label_loss_for("CrossEntropyLoss", "MixtureModel")
    assert label_loss.epsilon == 1e-8
    penalty = 3.0
    losses = objective.training_loss(one_level, outputs, tf.constant(LABELS), None, label_loss,
                                     penalty)
    sigmoid = lambda z: 1 / (1 + np.exp(-z.astype(np.float64)))  # noqa: E731
    label_terms = nextvlad_numpy.mixture_label_loss(
        sigmoid(LOGITS), sigmoid(np.stack([BRANCH_A, BRANCH_B], axis=1)), LABELS)
    kl = nextvlad_numpy.distillation_loss(LOGITS, np.stack([BRANCH_A, BRANCH_B], axis=1), 2.0,
                                          0.7)
    l2 = float(tf.add_n(one_level.losses))
    np.testing.assert_allclose(float(losses["total_loss"]), label_terms + penalty * (l2 + kl),
                               rtol=1e-5)
    np.testing.assert_allclose(float(losses["regularization_loss"]), l2 + kl, rtol=1e-5)


def test_zero_temperature_leaves_only_the_branch_label_terms():
    model = build(mix_number=2, cl_temperature=0.0, cl_lambda=5.0)
    outputs = {"predictions": tf.sigmoid(LOGITS), "logits": tf.constant(LOGITS),
               "branch_logits": tf.constant(np.stack([BRANCH_A, BRANCH_B], axis=1))}
    assert float(model.regularization_terms(outputs)) == 0.0
    weights = np.array([[1, 1, 0, 0], [0, 1, 1, 1]], np.float32)
    losses = objective.training_loss(model, outputs, tf.constant(LABELS), tf.constant(weights),
                                     label_loss_for("LogitsCrossEntropyLoss", "MixtureModel"),
                                     0.0)
    np.testing.assert_allclose(float(losses["auxiliary_loss"]),
                               np_bce(LABELS, BRANCH_A, weights) + np_bce(LABELS, BRANCH_B, weights),
                               rtol=1e-6)


def test_tree_loss_sums_every_level_with_its_own_temperature(tree):
    rng = np.random.default_rng(3)
    subs = rng.normal(size=(2, 2, V)).astype(np.float32)        # z_t, t = 0, 1
    leaves = [rng.normal(size=(2, 2, V)).astype(np.float32) for _ in range(2)]  # z_ti
    outputs = {"logits": tf.constant(LOGITS), "branch_logits": tf.constant(subs),
               "branch_logits/0": tf.constant(leaves[0]),
               "branch_logits/1": tf.constant(leaves[1])}
    kl, aux_logits = 0.0, []
    for t in range(2):
        kl += 0.5 * np_kl_reference(LOGITS, subs[:, t], 3.0).mean()
        aux_logits.append(subs[:, t])
    for t in range(2):
        for i in range(2):
            kl += 0.25 * np_kl_reference(subs[:, t], leaves[t][:, i], 2.0).mean()
            aux_logits.append(leaves[t][:, i])
    np.testing.assert_allclose(float(tree.regularization_terms(outputs)), kl, rtol=1e-5)
    got = [logits.numpy() for _, logits in tree.auxiliary_predictions(outputs)]
    assert len(got) == len(aux_logits) == 6  # every sub-mixture and every leaf, once
    for value, expected in zip(got, aux_logits):
        np.testing.assert_array_equal(value, expected)


def test_mixture_logits_are_the_gate_weighted_sum(tree):
    outputs = tree(batch(), training=False)
    weights = outputs["gate_weights"].numpy()
    branch_logits = outputs["branch_logits"].numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    expected = (weights[:, :, None] * branch_logits).sum(axis=1)
    np.testing.assert_allclose(outputs["logits"].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["predictions"].numpy(), 1 / (1 + np.exp(-expected)),
                               rtol=1e-5)
    # A sub-mixture's logits are its own gate-weighted sum of its leaves.
    sub_weights = outputs["gate_weights/1"].numpy()
    np.testing.assert_allclose(branch_logits[:, 1],
                               (sub_weights[:, :, None] * outputs["branch_logits/1"].numpy())
                               .sum(axis=1), rtol=1e-5, atol=1e-6)


def test_gate_ignores_padded_frames(tree):
    inputs = batch()
    padded = dict(inputs)
    noise = np.random.default_rng(7).normal(size=(3, 5, 6)).astype(np.float32) * 50
    valid = np.arange(5)[None, :] < inputs["num_frames"].numpy()[:, None]
    padded["rgb"] = tf.where(valid[:, :, None], inputs["rgb"], noise)
    clean = tree(inputs, training=False)
    noisy = tree(padded, training=False)
    for key in ("gate_weights", "gate_weights/0", "logits"):
        np.testing.assert_allclose(noisy[key].numpy(), clean[key].numpy(), rtol=1e-5, atol=1e-6)
    # The gate input is the mean of the valid frames of [rgb, audio] (sorted feature names).
    features = np.concatenate([inputs["audio"].numpy(), inputs["rgb"].numpy()], axis=-1)
    expected = np.stack([features[b, :n].mean(axis=0)
                         for b, n in enumerate(inputs["num_frames"].numpy())])
    np.testing.assert_allclose(tree.gate_inputs(padded).numpy(), expected, rtol=1e-5, atol=1e-6)


def _total_loss(model, inputs, labels):
    outputs = model(inputs, training=True)
    return objective.training_loss(model, outputs, labels, None,
                                   label_loss_for("CrossEntropyLoss", "MixtureModel"),
                                   1.0)["total_loss"]


def test_every_branch_and_gate_receives_gradient(tree):
    labels = tf.constant(np.eye(3, V, dtype=np.float32))
    with tf.GradientTape() as tape:
        loss = _total_loss(tree, batch(), labels)
    variables = tree.trainable_variables
    gradients = tree.compute_gradients(tape, loss, variables)
    leaves = [tree.subtree((t, i)) for t in range(2) for i in range(2)]
    gates = [tree.gate, tree.subtree((0,)).gate, tree.subtree((1,)).gate]
    for part in leaves + gates:
        ids = {id(v) for v in part.trainable_variables}
        norms = [float(tf.norm(g)) for v, g in zip(variables, gradients) if id(v) in ids]
        assert norms and all(norm > 0 for norm in norms), part.name


def test_stop_teacher_gradient_keeps_the_kl_term_off_the_gate():
    def gate_gradient_of_kl(stop):
        model = build(mix_number=2, cl_temperature=2.0, cl_lambda=1.0,
                      cl_stop_teacher_gradient=stop)
        with tf.GradientTape() as tape:
            kl_term = model.regularization_terms(model(batch(), training=True))
        return tape.gradient(kl_term, model.gate.dense.kernel)

    assert float(tf.norm(gate_gradient_of_kl(False))) > 1e-6
    stopped = gate_gradient_of_kl(True)
    assert stopped is None or float(tf.norm(stopped)) == 0.0


def test_gate_batch_norm_statistics_are_updated_in_training(tree):
    before = tree.gate.norm.moving_mean.numpy().copy()
    tree(batch(seed=5), training=True)
    assert not np.allclose(tree.gate.norm.moving_mean.numpy(), before)
    after = tree.gate.norm.moving_mean.numpy().copy()
    tree(batch(seed=6), training=False)
    np.testing.assert_array_equal(tree.gate.norm.moving_mean.numpy(), after)


def test_each_regularisation_loss_is_counted_once(tree):
    # Leaves: logistic kernel, penalty 1e-3 -> 1e-3/2 * sum(w^2); gates (--mix_gate_l2_penalty,
    # off by default as in the reference): 1e-5 -> 1e-5/2 * sum(w^2).
    leaves = [tree.subtree((t, i)) for t in range(2) for i in range(2)]
    gates = [tree.gate, tree.subtree((0,)).gate, tree.subtree((1,)).gate]
    expected = sum(1e-3 / 2 * np.sum(v.numpy() ** 2) for leaf in leaves
                   for v in leaf.trainable_variables if "kernel" in v.name)
    expected += sum(1e-5 / 2 * np.sum(gate.dense.kernel.numpy() ** 2) for gate in gates)
    assert len(tree.losses) == len(leaves) + len(gates)
    np.testing.assert_allclose(float(tf.add_n(tree.losses)), expected, rtol=1e-5)


def test_tree_shape_and_level_settings_from_flags():
    assert mod_tree.parse_tree_shape("4x3") == (4, 3)
    assert mod_tree.parse_tree_shape("2x2x3") == (2, 2, 3)
    settings = mod_tree.level_settings(3, 3.0, 9.0, final_temperature=20.0, final_lambda=400.0)
    assert [(s.temperature, s.distill_lambda) for s in settings] == [
        (20.0, 400.0), (3.0, 9.0), (3.0, 9.0)]
    with pytest.raises(ValueError, match=r"--mod_tree='4xa' is not a tree shape"):
        mod_tree.parse_tree_shape("4xa")
    with pytest.raises(ValueError, match=r"--mod_temperatures='1,2' has 2 values; the tree has 3"):
        mod_tree.level_settings(3, 1.0, 1.0, mod_temperatures="1,2")
    with pytest.raises(ValueError, match="mixture_base_model='NoSuchModel' is not a zoo model"):
        build(mixture_base_model="NoSuchModel")
    with pytest.raises(ValueError, match="mod_tree='2x3' needs MODNeXtVLADModel"):
        mixture_models.build("MixNeXtVLADModel", V, mod_tree="2x3", **FEATURES)


def test_registered_mixnextvlad_has_three_nextvlad_branches():
    for name in ("MixtureModel", "MixNeXtVLADModel", "MODNeXtVLADModel"):
        assert name in frame_level_models.MODEL_NAMES and frame_level_models.is_frame_level(name)
        assert {"mix_number", "mod_tree", "cl_temperature"} <= set(
            frame_level_models.hparam_names(name))
    assert "nextvlad_cluster_size" in frame_level_models.hparam_names("MODNeXtVLADModel")
    model = frame_level_models.build("MixNeXtVLADModel", V, nextvlad_cluster_size=4,
                                     nextvlad_hidden_size=8, groups=2, expansion=2, **FEATURES)
    assert isinstance(model, MixtureModel)
    assert [branch.name for branch in model.branch_models] == ["NeXtVLADModel"] * 3
    assert len({id(v) for b in model.branch_models for v in b.variables}) == sum(
        len(b.variables) for b in model.branch_models)  # own weights per branch
    outputs = model(batch(), training=False)
    assert outputs["branch_logits"].shape == (3, 3, V)


def test_placed_gradients_equal_the_tape_gradients():
    # Explicit devices (the one CPU here) switch compute_gradients to tf.gradients in a graph.
    leaves = [frame_level_models.build("FrameLevelLogisticModel", V, **FEATURES) for _ in range(2)]
    model = MixtureModel(leaves, V, temperature=2.0, distill_lambda=4.0,
                         branch_devices=["/device:CPU:0"] * 2)
    assert model.is_model_parallel
    labels = tf.constant(np.eye(3, V, dtype=np.float32))

    @tf.function
    def both_gradients(inputs):
        with tf.GradientTape(persistent=True) as tape:
            loss = _total_loss(model, inputs, labels)
        variables = model.trainable_variables
        return model.compute_gradients(tape, loss, variables), tape.gradient(loss, variables)

    placed, plain = both_gradients(batch())
    for a, b in zip(placed, plain):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
