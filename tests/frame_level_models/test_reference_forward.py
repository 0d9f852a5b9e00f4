"""Whole models against the numpy forward passes written from the reference source
(tests/reference: the starter, Willow, linrongc), fed the Keras model's own weights converted to
the reference's variable layout: same predictions (1e-5) in inference mode (batch-norm moving
statistics, dropout off), input normalisation, sampled frames, batch norm and gating order
included. And the parameter counts of DbofModel and LstmModel at the starter's defaults, term by
term against the starter's variables."""
import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras
from tensorflow.python.ops import resource_variable_ops

import frame_level_models
from reference import common as ref_common
from reference import nextvlad_numpy
from reference import param_counts
from reference import starter_numpy
from reference import willow_numpy

NUM_CLASSES = 5
SIZES = (1024, 128)  # the Willow / linrongc oracles slice rgb and audio at 1024
FRAMES = dict(feature_names="rgb,audio", feature_sizes=SIZES)
VIDEO = dict(feature_names="mean_rgb,mean_audio", feature_sizes=SIZES)
T = 7
NUM_FRAMES = np.array([7, 3, 5, 1], np.int32)
TOL = dict(rtol=1e-5, atol=1e-5)


def dequantized(rng, shape):
    """Features as the reader gives them: dequantized uint8 values."""
    return ref_common.dequantize(rng.integers(0, 256, shape)).astype(np.float32)


def frame_batch(rng, num_frames=NUM_FRAMES):
    """rgb / audio [B, T, size] zero-padded after each video's num_frames (the starter's reader)."""
    batch = {}
    for name, size in zip(("rgb", "audio"), SIZES):
        values = dequantized(rng, (len(num_frames), T, size))
        values[np.arange(T)[None, :] >= num_frames[:, None]] = 0.0
        batch[name] = values
    batch["num_frames"] = np.asarray(num_frames, np.int32)
    return batch


def concatenated(batch, names=("rgb", "audio")):
    return np.concatenate([batch[name] for name in names], axis=-1).astype(np.float64)


def build(name, seed=0, **hparams):
    keras.utils.set_random_seed(seed)
    model = frame_level_models.build(name, NUM_CLASSES, **hparams)
    randomize_batch_norms(model, np.random.default_rng(seed + 100))
    return model


def randomize_batch_norms(model, rng):
    """Non-trivial BN parameters and moving statistics, so the oracle must apply them."""
    for module in model.submodules:
        if isinstance(module, keras.layers.BatchNormalization):
            n = module.gamma.shape[0]
            module.gamma.assign(rng.uniform(0.5, 1.5, n))
            module.beta.assign(rng.normal(0, 0.3, n))
            module.moving_mean.assign(rng.normal(0, 0.3, n))
            module.moving_variance.assign(rng.uniform(0.5, 1.5, n))


def bn(layer, scope):
    """A Keras BatchNormalization's variables under the slim names <scope>/{beta,gamma,...}."""
    return {f"{scope}/beta": layer.beta.numpy(), f"{scope}/gamma": layer.gamma.numpy(),
            f"{scope}/moving_mean": layer.moving_mean.numpy(),
            f"{scope}/moving_variance": layer.moving_variance.numpy()}


def moe(layer, prefix=""):
    """MoeClassifier -> the starter's gates/weights, experts/weights, experts/biases (+ Willow's
    gating_prob_weights, gating_prob_bn)."""
    weights = {f"{prefix}gates/weights": layer.gate_kernel.numpy(),
               f"{prefix}experts/weights": layer.expert_kernel.numpy(),
               f"{prefix}experts/biases": layer.expert_bias.numpy()}
    if layer.prob_gating:
        weights["gating_prob_weights"] = layer.prob_gating_kernel.numpy()
        weights.update(bn(layer.prob_gating_bn, "gating_prob_bn"))
    return weights


def logistic(layer, prefix=""):
    return {f"{prefix}fully_connected/weights": layer.kernel.numpy(),
            f"{prefix}fully_connected/biases": layer.bias.numpy()}


def classifier(model, name):
    if name == "MoeModel":
        return moe(model.get_layer("moe"))
    return logistic(model.get_layer("logistic"))


def predict(model, batch):
    return model({key: tf.constant(value) for key, value in batch.items()},
                 training=False)["predictions"].numpy()


# ---------------------------------------------------------------- the starter's models


@pytest.mark.parametrize("name", ["LogisticModel", "MoeModel"])
def test_video_level_models_are_the_starters(name):
    rng = np.random.default_rng(1)
    model = build(name, moe_num_mixtures=3, **VIDEO)
    batch = {"mean_rgb": dequantized(rng, (4, 1024)) * 0.1,
             "mean_audio": dequantized(rng, (4, 128)) * 0.1}
    x = starter_numpy.starter_input(concatenated(batch, ("mean_rgb", "mean_audio")))
    if name == "LogisticModel":
        expected = starter_numpy.logistic_model(x, logistic(model.get_layer("logistic")))
    else:
        expected = starter_numpy.moe_model(x, moe(model.get_layer("moe")), num_mixtures=3)
    np.testing.assert_allclose(predict(model, batch), expected, **TOL)


def test_frame_level_logistic_model_is_the_starters():
    rng = np.random.default_rng(2)
    model = build("FrameLevelLogisticModel", **FRAMES)
    batch = frame_batch(rng)
    expected = starter_numpy.frame_level_logistic_model(
        starter_numpy.starter_input(concatenated(batch)), batch["num_frames"],
        logistic(model.get_layer("logistic")))
    np.testing.assert_allclose(predict(model, batch), expected, **TOL)


def dbof_weights(model, add_batch_norm, classifier_name):
    dbof, hidden = model.get_layer("dbof"), model.get_layer("hidden")
    weights = {"cluster_weights": dbof.cluster_kernel.numpy(),
               "hidden1_weights": hidden.kernel.numpy()}
    if add_batch_norm:
        weights.update(bn(dbof.input_bn, "input_bn"))
        weights.update(bn(dbof.cluster_bn, "cluster_bn"))
        weights.update(bn(model.get_layer("hidden_bn"), "hidden1_bn"))
    else:
        weights["cluster_biases"] = dbof.cluster_bias.numpy()
        weights["hidden1_biases"] = hidden.bias.numpy()
    weights.update(classifier(model, classifier_name))
    return weights


@pytest.mark.parametrize("sample_random_frames,activation,add_batch_norm,pooling,classifier_name", [
    (True, "sigmoid", True, "max", "MoeModel"),       # the starter's defaults
    (False, "sigmoid", True, "max", "MoeModel"),      # SampleRandomSequence
    (True, "relu6", False, "average", "LogisticModel"),
])
def test_dbof_model_is_the_starters(sample_random_frames, activation, add_batch_norm, pooling,
                                    classifier_name):
    """Evaluation samples frames too (the starter's DbofModel does); the draws are fixed here and
    the oracle takes the indices the starter computes from the same draws."""
    rng = np.random.default_rng(3)
    iterations = 4
    model = build("DbofModel", dbof_cluster_size=16, dbof_hidden_size=8, iterations=iterations,
                  sample_random_frames=sample_random_frames, dbof_activation=activation,
                  dbof_add_batch_norm=add_batch_norm, dbof_pooling_method=pooling,
                  video_level_classifier_model=classifier_name, **FRAMES)
    batch = frame_batch(rng)
    if sample_random_frames:
        uniform = rng.uniform(size=(len(NUM_FRAMES), iterations)).astype(np.float32)
        frame_index = ref_common.random_frames_index(uniform, NUM_FRAMES)
    else:
        uniform = rng.uniform(size=len(NUM_FRAMES)).astype(np.float32)
        frame_index = ref_common.random_sequence_index(uniform, NUM_FRAMES, iterations)
    model.get_layer("frame_sampler").draw_uniform = lambda shape: tf.constant(uniform)
    expected = starter_numpy.dbof_model(
        starter_numpy.starter_input(concatenated(batch)), NUM_FRAMES,
        dbof_weights(model, add_batch_norm, classifier_name), frame_index=frame_index,
        add_batch_norm=add_batch_norm, dbof_activation=activation, pooling_method=pooling,
        video_level_classifier_model=classifier_name)
    np.testing.assert_allclose(predict(model, batch), expected, **TOL)


def test_dbof_model_deterministic_eval_pools_every_valid_frame():
    """--deterministic_eval: outside training the pooling sees every valid frame (max pooling:
    the same as indices that repeat each video's last frame), and predictions repeat."""
    rng = np.random.default_rng(4)
    model = build("DbofModel", dbof_cluster_size=16, dbof_hidden_size=8, deterministic_eval=True,
                  **FRAMES)
    batch = frame_batch(rng)
    frame_index = np.minimum(np.arange(T)[None, :], NUM_FRAMES[:, None] - 1)
    expected = starter_numpy.dbof_model(
        starter_numpy.starter_input(concatenated(batch)), NUM_FRAMES,
        dbof_weights(model, True, "MoeModel"), frame_index=frame_index)
    np.testing.assert_allclose(predict(model, batch), expected, **TOL)
    np.testing.assert_array_equal(predict(model, batch), predict(model, batch))
    # Without it, evaluation samples: two calls differ.
    sampling = build("DbofModel", dbof_cluster_size=16, dbof_hidden_size=8, iterations=2,
                     **FRAMES)
    assert not np.array_equal(predict(sampling, batch), predict(sampling, batch))


def lstm_weights(model, classifier_name):
    weights = {}
    for index, lstm in enumerate(model.get_layer("lstm").lstms):
        kernel, bias = starter_numpy.keras_lstm_to_basic_lstm(
            lstm.cell.kernel.numpy(), lstm.cell.recurrent_kernel.numpy(), lstm.cell.bias.numpy())
        scope = f"rnn/multi_rnn_cell/cell_{index}/basic_lstm_cell/"
        weights[scope + "kernel"], weights[scope + "bias"] = kernel, bias
    weights.update(classifier(model, classifier_name))
    return weights


@pytest.mark.parametrize("classifier_name", ["MoeModel", "LogisticModel"])
def test_lstm_model_is_the_starters(classifier_name):
    rng = np.random.default_rng(5)
    model = build("LstmModel", lstm_cells=6, lstm_layers=2,
                  video_level_classifier_model=classifier_name, **FRAMES)
    # A non-zero forget bias (Keras starts it at 1) checks the +1.0 conversion.
    for lstm in model.get_layer("lstm").lstms:
        lstm.cell.bias.assign(rng.normal(0, 0.5, lstm.cell.bias.shape))
    batch = frame_batch(rng)
    expected = starter_numpy.lstm_model(
        starter_numpy.starter_input(concatenated(batch)), NUM_FRAMES,
        lstm_weights(model, classifier_name), lstm_cells=6,
        video_level_classifier_model=classifier_name)
    np.testing.assert_allclose(predict(model, batch), expected, **TOL)


# ---------------------------------------------------------------- the winners' models


def test_netvlad_model_lf_is_willows():
    """Gated NetVLAD (the README configuration: no ReLU, context gating, probability gating).
    Willow's oracle has no frame mask: every video is T frames long."""
    rng = np.random.default_rng(6)
    model = build("NetVLADModelLF", netvlad_cluster_size=4, netvlad_hidden_size=8,
                  netvlad_relu=False, gating=True, moe_prob_gating=True, **FRAMES)
    batch = frame_batch(rng, num_frames=np.full(4, T, np.int32))
    weights = bn(model.get_layer("input_bn").batch_norm, "input_bn")
    for stream, scope in (("rgb", "video_VLAD/"), ("audio", "audio_VLAD/")):
        vlad = model.get_layer(f"{stream}_netvlad")
        weights[scope + "cluster_weights"] = vlad.cluster_kernel.numpy()
        weights[scope + "cluster_weights2"] = vlad.centroids.numpy()[None]
        weights.update(bn(vlad.cluster_bn, scope + "cluster_bn"))
    hidden, gating = model.get_layer("hidden"), model.get_layer("context_gating")
    weights.update({"hidden1_weights": hidden.kernel.numpy(), "hidden1_biases": hidden.bias.numpy(),
                    "gating_weights_2": gating.kernel.numpy()})
    weights.update(bn(gating.batch_norm, "gating_bn"))
    weights.update(moe(model.get_layer("moe")))
    expected = willow_numpy.netvlad_model_lf(
        starter_numpy.starter_input(concatenated(batch)), batch["num_frames"], weights,
        netvlad_relu=False, gating=True, moe_prob_gating=True)
    np.testing.assert_allclose(predict(model, batch), expected, **TOL)


def test_nextvlad_model_is_linrongcs():
    """NeXtVLAD with the logistic classifier (linrongc's scripts), no input normalisation, the
    frame mask from num_frames; dropout is off at inference."""
    rng = np.random.default_rng(7)
    model = build("NeXtVLADModel", nextvlad_cluster_size=4, nextvlad_hidden_size=16, groups=4,
                  expansion=2, gating_reduction=4, drop_rate=0.5, **FRAMES)
    batch = frame_batch(rng)
    weights = {}
    for stream, scope in (("rgb", "video_VLAD/"), ("audio", "audio_VLAD/")):
        vlad = model.get_layer(f"{stream}_nextvlad")
        weights.update({scope + "fully_connected/weights": vlad.expansion_kernel.numpy(),
                        scope + "fully_connected/biases": vlad.expansion_bias.numpy(),
                        scope + "fully_connected_1/weights": vlad.attention_kernel.numpy(),
                        scope + "fully_connected_1/biases": vlad.attention_bias.numpy(),
                        scope + "cluster_weights": vlad.cluster_kernel.numpy(),
                        scope + "cluster_weights2": vlad.centroids.numpy()[None]})
        weights.update(bn(vlad.cluster_bn, scope + "cluster_bn"))
        weights.update(bn(vlad.output_bn, scope + "vlad_bn"))
    gating = model.get_layer("se_gating")
    weights.update({"hidden1_weights": model.get_layer("hidden").kernel.numpy(),
                    "gating_weights_1": gating.squeeze_kernel.numpy(),
                    "gating_weights_2": gating.excite_kernel.numpy()})
    weights.update(bn(model.get_layer("hidden_bn"), "hidden1_bn"))
    weights.update(bn(gating.batch_norm, "gating_bn"))
    weights.update(logistic(model.get_layer("logistic")))
    expected, _ = nextvlad_numpy.nextvlad_model(
        concatenated(batch), batch["num_frames"], weights, cluster_size=4, groups=4,
        expansion=2, gating_reduction=4, video_level_classifier_model="LogisticModel")
    np.testing.assert_allclose(predict(model, batch), expected, **TOL)


# ---------------------------------------------------------------- parameter counts


def uninitialized_variable(next_creator, **kwargs):
    del next_creator
    return resource_variable_ops.UninitializedVariable(
        shape=kwargs["shape"], dtype=kwargs["dtype"], name=kwargs.get("name"),
        trainable=kwargs.get("trainable", True))


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_dbof_and_lstm_parameter_counts_are_the_starters():
    """At the starter's defaults (1152-d input, 8192 clusters, hidden 1024, LSTM 2 x 1024, MoE
    with 2 mixtures) and 3862 classes, term by term: the starter's variables (shapes from
    tests/reference/param_counts.py) against the Keras model's."""
    V = 3862
    with tf.variable_creator_scope(uninitialized_variable):
        dbof = frame_level_models.build("DbofModel", V)
        lstm = frame_level_models.build("LstmModel", V)
    dbof_terms = {
        "input_bn": 2 * 1152,                   # beta, gamma
        "cluster_weights": 1152 * 8192,         # 9,437,184
        "cluster_bn": 2 * 8192,
        "hidden1_weights": 8192 * 1024,         # 8,388,608
        "hidden1_bn": 2 * 1024,
        "gates/weights": 1024 * V * 3,          # 11,864,064
        "experts/weights": 1024 * V * 2,        # 7,909,376
        "experts/biases": V * 2,
    }
    assert sum(dbof_terms.values()) == 37_627_692
    assert param_counts.count(param_counts.dbof_model()) == 37_627_692
    assert trainable_count(dbof) == 37_627_692
    layer, hidden = dbof.get_layer("dbof"), dbof.get_layer("hidden")
    moe_layer = dbof.get_layer("moe")
    keras_terms = {
        "input_bn": layer.input_bn.beta.shape.num_elements() * 2,
        "cluster_weights": layer.cluster_kernel.shape.num_elements(),
        "cluster_bn": layer.cluster_bn.beta.shape.num_elements() * 2,
        "hidden1_weights": hidden.kernel.shape.num_elements(),
        "hidden1_bn": dbof.get_layer("hidden_bn").beta.shape.num_elements() * 2,
        "gates/weights": moe_layer.gate_kernel.shape.num_elements(),
        "experts/weights": moe_layer.expert_kernel.shape.num_elements(),
        "experts/biases": moe_layer.expert_bias.shape.num_elements(),
    }
    assert keras_terms == dbof_terms
    assert tuple(layer.cluster_kernel.shape) == param_counts.dbof_model()["cluster_weights"]
    assert not hasattr(hidden, "bias")  # batch norm instead of hidden1_biases

    lstm_terms = {
        "cell_0/kernel": (1152 + 1024) * 4096,  # 8,912,896
        "cell_0/bias": 4096,
        "cell_1/kernel": (1024 + 1024) * 4096,  # 8,388,608
        "cell_1/bias": 4096,
        "gates/weights": 1024 * V * 3,
        "experts/weights": 1024 * V * 2,
        "experts/biases": V * 2,
    }
    assert sum(lstm_terms.values()) == 37_090_860
    assert param_counts.count(param_counts.lstm_model()) == 37_090_860
    assert trainable_count(lstm) == 37_090_860 == lstm.count_params()  # no moving statistics
    cells = lstm.get_layer("lstm").lstms
    keras_terms = {}
    for index, cell in enumerate(lstm.get_layer("lstm").lstms):
        cell = cell.cell  # BasicLSTMCell kernel [in + u, 4u] = Keras kernel [in, 4u] + recurrent
        keras_terms[f"cell_{index}/kernel"] = (cell.kernel.shape.num_elements()
                                               + cell.recurrent_kernel.shape.num_elements())
        keras_terms[f"cell_{index}/bias"] = cell.bias.shape.num_elements()
    moe_layer = lstm.get_layer("moe")
    keras_terms.update({"gates/weights": moe_layer.gate_kernel.shape.num_elements(),
                        "experts/weights": moe_layer.expert_kernel.shape.num_elements(),
                        "experts/biases": moe_layer.expert_bias.shape.num_elements()})
    assert keras_terms == lstm_terms
    assert tuple(cells[0].cell.kernel.shape) == (1152, 4096)
    assert lstm.get_layer("moe").gate_kernel.shape[0] == 1024  # the last layer's h only
