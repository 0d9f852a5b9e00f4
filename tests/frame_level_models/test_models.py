"""The model registry, hyper-parameters and pruning of frame_level_models: registry errors, flag
round trip, outputs and masking of every model, analytic parameter counts of the two paper
configurations, training makes the loss fall, pruning reaches its sparsity."""
import numpy as np
import pytest
from absl import flags

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras
from tensorflow.python.ops import resource_variable_ops

import frame_level_models
from frame_level_models import hparams, pruning

NUM_CLASSES = 6
SIZES = (8, 4)  # tiny rgb / audio widths keep every model small
FRAME_FEATURES = dict(feature_names="rgb,audio", feature_sizes=SIZES)
VIDEO_FEATURES = dict(feature_names=("mean_rgb", "mean_audio"), feature_sizes=SIZES)
SMALL = {
    "LogisticModel": dict(VIDEO_FEATURES),
    "MoeModel": dict(VIDEO_FEATURES, moe_prob_gating=True),
    "FrameLevelLogisticModel": dict(FRAME_FEATURES),
    # Deterministic evaluation: these tests compare outputs of repeated calls (the starter's
    # sampling at evaluation is checked in test_reference_forward.py).
    "DbofModel": dict(FRAME_FEATURES, dbof_cluster_size=16, dbof_hidden_size=8,
                      deterministic_eval=True),
    "LstmModel": dict(FRAME_FEATURES, lstm_cells=6, lstm_layers=2,
                      video_level_classifier_model="LogisticModel"),  # MoE: DbofModel
    "NetVLADModelLF": dict(FRAME_FEATURES, netvlad_cluster_size=4, netvlad_hidden_size=8),
    "NeXtVLADModel": dict(FRAME_FEATURES, nextvlad_cluster_size=4, nextvlad_hidden_size=8,
                          groups=2, gating_reduction=4, drop_rate=0.2),
    "NetFVModelLF": dict(FRAME_FEATURES, fv_cluster_size=4, fv_hidden_size=8, gating=True,
                         moe_prob_gating=True, fv_couple_weights=False),
    "SoftDbofModelLF": dict(FRAME_FEATURES, dbof_cluster_size=16, dbof_hidden_size=8,
                            softdbof_maxpool=True),
    "GatedDbofModelLF": dict(FRAME_FEATURES, dbof_cluster_size=16, dbof_hidden_size=8,
                             dbof_relu=False, moe_prob_gating=True),
    "GruModel": dict(FRAME_FEATURES, gru_cells=5, gru_layers=2, moe_l2=1e-6),
}
FRAME_MODELS = [name for name in SMALL if frame_level_models.is_frame_level(name)]
# Tiny hparams of every registered model; the registry-wide tests fail for a model missing here.
TINY = {
    **SMALL,
    "MixtureModel": dict(FRAME_FEATURES, mixture_base_model="FrameLevelLogisticModel",
                         mod_tree="2x2"),
    "MixNeXtVLADModel": dict(SMALL["NeXtVLADModel"], mix_number=2),
    "MODNeXtVLADModel": dict(SMALL["NeXtVLADModel"], mod_tree="2x2"),
    "HierarchicalLstmModel": dict(FRAME_FEATURES, lstm_cells=4, lstm_layers=1,
                                  hlstm_block_frames=2, moe_prob_gating=True),
    "FrameSkippingModel": dict(SMALL["NeXtVLADModel"], student_base_model="NeXtVLADModel",
                               student_frames=3, frame_selection="uniform"),
}
NUM_FRAMES = np.array([3, 5, 1, 4, 5, 2, 5, 4], np.int32)


def frame_batch(rng, length=5, garbage=False):
    batch = {}
    for name, size in zip(("rgb", "audio"), SIZES):
        values = rng.normal(0, 1, (len(NUM_FRAMES), length, size)).astype(np.float32)
        for b, n in enumerate(NUM_FRAMES):
            values[b, n:] = rng.normal(10, 20, values[b, n:].shape) if garbage else 0.0
        batch[name] = values
    batch["num_frames"] = NUM_FRAMES
    return batch


def video_batch(rng):
    return {name: rng.normal(0, 1, (len(NUM_FRAMES), size)).astype(np.float32)
            for name, size in zip(("mean_rgb", "mean_audio"), SIZES)}


def labels(rng):
    return (rng.uniform(size=(len(NUM_FRAMES), NUM_CLASSES)) < 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def small_models():
    keras.utils.set_random_seed(1)
    return {name: frame_level_models.build(name, NUM_CLASSES, **hp) for name, hp in SMALL.items()}


# ---------------------------------------------------------------- registry and hparams

def test_registry_names_and_errors():
    # The zoo's own models come first; the composite models register after them.
    assert frame_level_models.MODEL_NAMES[:len(SMALL)] == tuple(SMALL)
    with pytest.raises(ValueError) as error:
        frame_level_models.build("NetVLAD", 10)
    assert str(error.value) == ("unknown model 'NetVLAD'; choose one of: "
                                + ", ".join(frame_level_models.MODEL_NAMES))
    with pytest.raises(ValueError) as error:
        frame_level_models.build("NeXtVLADModel", 10, cluster_size=3, hiden_size=2)
    assert str(error.value) == ("NeXtVLADModel: unknown hparams cluster_size, hiden_size; known "
                                "hparams: " + ", ".join(hparams.all_names()))
    assert {"nextvlad_cluster_size", "feature_names", "groups"} <= set(hparams.all_names())
    with pytest.raises(ValueError, match=r"^MoeModel: hparam moe_num_mixtures=0 must be >= 1$"):
        frame_level_models.build("MoeModel", 10, moe_num_mixtures=0)
    with pytest.raises(TypeError, match=r"^LstmModel: hparam lstm_cells=2.5 must be an integer$"):
        frame_level_models.build("LstmModel", 10, lstm_cells=2.5)
    with pytest.raises(ValueError, match="video_level_classifier_model='Svm' is not one of"):
        frame_level_models.build("DbofModel", 10, video_level_classifier_model="Svm")
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got 0"):
        frame_level_models.build("LogisticModel", 0)
    with pytest.raises(ValueError, match="NeXtVLADModel is a frame-level model but feature_names "
                                         "has video-level features"):
        frame_level_models.build("NeXtVLADModel", 10, feature_names="mean_rgb,mean_audio")
    with pytest.raises(ValueError, match=r"feature_names=\('rgb',\) and feature_sizes=\(8, 4\) "
                                         "need one size per name"):
        frame_level_models.build("NeXtVLADModel", 10, feature_names="rgb", feature_sizes="8,4")


def test_hparam_flags_round_trip():
    flag_values = flags.FlagValues()
    hparams.define_flags(flag_values)
    flag_values(["prog", "--nextvlad_cluster_size=32", "--l2_penalty=0.5"])
    values = hparams.hparams_from_flags(flag_values)
    assert set(values) == {hparam.name for hparam in hparams.all_hparams()}
    assert values["nextvlad_cluster_size"] == 32 and values["groups"] == 8
    assert values["moe_prob_gating"] is None  # per-model default
    only = hparams.hparams_from_flags(flag_values, model_name="NeXtVLADModel")
    assert set(only) == set(frame_level_models.hparam_names("NeXtVLADModel"))
    assert "lstm_cells" not in only and only["l2_penalty"] == 0.5
    # Reference defaults, and the per-model ones.
    assert hparams.default_value("NeXtVLADModel", "l2_penalty") == 1e-5
    assert hparams.default_value("NetVLADModelLF", "l2_penalty") == 1e-6
    assert hparams.default_value("NetVLADModelLF", "moe_prob_gating") is True
    assert hparams.default_value("MoeModel", "moe_prob_gating") is False
    assert hparams.default_value("DbofModel", "l2_penalty") == 1e-8
    assert (hparams.default_value("DbofModel", "dbof_cluster_size"),
            hparams.default_value("LstmModel", "lstm_cells")) == (8192, 1024)
    # The starter's DbofModel samples (random frames) at training and evaluation, with sigmoid;
    # models whose reference does not sample do not by default.
    assert hparams.default_value("DbofModel", "sample_random_frames") is True
    assert hparams.default_value("DbofModel", "dbof_activation") == "sigmoid"
    assert hparams.default_value("DbofModel", "deterministic_eval") is False
    assert hparams.default_value("LstmModel", "sample_random_frames") is False
    assert hparams.default_value("NeXtVLADModel", "sample_random_frames") is False


# ---------------------------------------------------------------- outputs and masking

@pytest.mark.parametrize("name", FRAME_MODELS)
def test_frame_models_mask_padding_and_take_any_length(small_models, name):
    model = small_models[name]
    rng = np.random.default_rng(2)
    batch = frame_batch(rng, length=5)
    outputs = {key: value.numpy() for key, value in model(batch).items()}
    expected_keys = {"predictions", "embedding"} | (
        {"logits"} if name in ("FrameLevelLogisticModel", "NeXtVLADModel", "LstmModel") else set())
    assert set(outputs) == expected_keys
    assert outputs["predictions"].shape == (len(NUM_FRAMES), NUM_CLASSES)
    assert ((outputs["predictions"] >= 0) & (outputs["predictions"] <= 1)).all()
    if "logits" in outputs:
        np.testing.assert_allclose(outputs["predictions"], 1 / (1 + np.exp(-outputs["logits"])),
                                   rtol=1e-5, atol=1e-6)
    # Longer padding filled with garbage: the same valid frames give the same outputs.
    longer = frame_batch(np.random.default_rng(3), length=9, garbage=True)
    for key in ("rgb", "audio"):
        longer[key][:, :5] = np.where(np.arange(5)[None, :, None] < NUM_FRAMES[:, None, None],
                                      batch[key], longer[key][:, :5])
    again = model(longer)
    for key, value in outputs.items():
        np.testing.assert_allclose(again[key].numpy(), value, rtol=1e-4, atol=1e-5)


def test_video_logistic_model_is_logistic_regression(small_models):
    model = small_models["LogisticModel"]
    batch = video_batch(np.random.default_rng(4))
    outputs = model(batch)
    layer = model.get_layer("logistic")
    features = np.concatenate([batch["mean_rgb"], batch["mean_audio"]], axis=1)
    # The starter's input: the concatenation L2-normalised (tf.nn.l2_normalize).
    features = features / np.linalg.norm(features, axis=1, keepdims=True)
    logits = features @ layer.kernel.numpy() + layer.bias.numpy()
    np.testing.assert_allclose(outputs["logits"].numpy(), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["embedding"].numpy(), features, rtol=1e-6)
    # starter default L2 1e-8, slim meaning: 1e-8 / 2 * sum(w^2)
    np.testing.assert_allclose(float(sum(model.losses)),
                               1e-8 / 2 * np.sum(layer.kernel.numpy().astype(np.float64) ** 2),
                               rtol=1e-5)


def test_nextvlad_embedding_feeds_logistic_with_its_l2(small_models):
    model = small_models["NeXtVLADModel"]
    outputs = model(frame_batch(np.random.default_rng(5)))
    layer = model.get_layer("logistic")
    kernel = layer.kernel.numpy()
    np.testing.assert_allclose(outputs["logits"].numpy(),
                               outputs["embedding"].numpy() @ kernel + layer.bias.numpy(),
                               rtol=1e-5, atol=1e-5)
    # linrongc's LogisticModel: slim L2 1e-5 on the weights and the biases.
    layer.bias.assign(np.linspace(-1.0, 1.0, NUM_CLASSES))
    squares = np.sum(kernel.astype(np.float64) ** 2) + np.sum(layer.bias.numpy() ** 2)
    np.testing.assert_allclose(float(sum(model.losses)), 1e-5 / 2 * squares, rtol=1e-5)


def test_random_frame_sampling_only_when_training():
    keras.utils.set_random_seed(6)
    model = frame_level_models.build("FrameLevelLogisticModel", NUM_CLASSES,
                                     sample_random_frames=True, iterations=4, **FRAME_FEATURES)
    batch = frame_batch(np.random.default_rng(7), garbage=True)
    first, second = model(batch)["logits"].numpy(), model(batch)["logits"].numpy()
    np.testing.assert_array_equal(first, second)
    frames = np.concatenate([batch["rgb"], batch["audio"]], axis=-1).astype(np.float64)
    frames /= np.linalg.norm(frames, axis=-1, keepdims=True)  # the starter's input
    means = np.stack([frames[b, :n].mean(axis=0) for b, n in enumerate(NUM_FRAMES)])
    layer = model.get_layer("logistic")
    np.testing.assert_allclose(first, means @ layer.kernel.numpy() + layer.bias.numpy(),
                               rtol=1e-5, atol=1e-5)
    trained_a = model(batch, training=True)["logits"].numpy()
    trained_b = model(batch, training=True)["logits"].numpy()
    assert not np.allclose(trained_a, trained_b)  # a fresh draw of 4 frames each call


def test_reverse_whitening_option(tmp_path):
    eigen = np.arange(1, 2 * SIZES[0] + 1, dtype=np.float64)
    path = tmp_path / "eigenvalues.npy"
    np.save(path, eigen.reshape(-1, 1))  # more rows than rgb dimensions: the first ones count
    hp = dict(SMALL["NeXtVLADModel"], drop_rate=0.0)
    plain = frame_level_models.build("NeXtVLADModel", NUM_CLASSES, **hp)
    whitened = frame_level_models.build("NeXtVLADModel", NUM_CLASSES, pca_eigenvalues_file=str(path),
                                        **hp)
    whitened.set_weights(plain.get_weights())
    batch = frame_batch(np.random.default_rng(8))
    mask = (np.arange(batch["rgb"].shape[1])[None, :] < NUM_FRAMES[:, None])[..., None]
    scale = np.sqrt(eigen[:SIZES[0]]) + 1e-4
    scaled = dict(batch, rgb=((batch["rgb"] - 4 / 512) * scale * mask).astype(np.float32))
    np.testing.assert_allclose(whitened(batch)["logits"].numpy(), plain(scaled)["logits"].numpy(),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"holds 16 eigenvalues; the rgb feature has 1024"):
        frame_level_models.build("NeXtVLADModel", NUM_CLASSES, pca_eigenvalues_file=str(path))


def test_models_clone_and_save_with_their_config(small_models, tmp_path):
    """Every custom layer serialises its config (clone_model, .keras files, tfmot rely on it)."""
    model = small_models["NetVLADModelLF"]
    batch = frame_batch(np.random.default_rng(12))
    expected = model(batch)["predictions"].numpy()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(batch)["predictions"].numpy(), expected)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded(batch)["predictions"].numpy(), expected)


def tiny_model_and_batch(name, **hparams):
    assert name in TINY, (f"{name} is registered but has no entry in TINY (tests/frame_level_models/test_models.py): "
                          "add its tiny hparams so the registry-wide tests cover it")
    keras.utils.set_random_seed(13)
    model = frame_level_models.build(name, NUM_CLASSES, **TINY[name], **hparams)
    rng = np.random.default_rng(14)
    batch = frame_batch(rng) if frame_level_models.is_frame_level(name) else video_batch(rng)
    return model, batch


def assert_same_outputs(model, batch, expected):
    outputs = model(batch)
    assert set(outputs) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(outputs[key].numpy(), value, err_msg=key)


@pytest.mark.parametrize("name", frame_level_models.model_names())
def test_every_registered_model_round_trips_config_and_keras_file(name, tmp_path):
    """get_config/from_config with the weights copied, and a .keras file, give a model of the same
    class with identical outputs (after a training call moved the batch-norm statistics)."""
    model, batch = tiny_model_and_batch(name)
    model(batch, training=True)
    expected = {key: value.numpy() for key, value in model(batch).items()}
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    assert type(clone) is type(model)
    assert_same_outputs(clone, batch, expected)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert_same_outputs(loaded, batch, expected)


@pytest.mark.parametrize("name", frame_level_models.model_names())
def test_bn_momentum_reaches_every_batch_norm(name):
    model, _ = tiny_model_and_batch(name, bn_momentum=0.5)
    norms = [module for module in model.submodules
             if isinstance(module, keras.layers.BatchNormalization)]
    if "bn_momentum" not in frame_level_models.hparam_names(name):
        assert not norms, f"{name} has batch norms but no bn_momentum hparam"
    assert [norm.momentum for norm in norms] == [0.5] * len(norms)
    default, _ = tiny_model_and_batch(name)
    assert {module.momentum for module in default.submodules
            if isinstance(module, keras.layers.BatchNormalization)} <= {0.999}


# ---------------------------------------------------------------- parameter counts

def test_paper_configurations_parameter_counts():
    """Analytic counts (BatchNormalization holds 4 numbers per channel: gamma, beta and the two
    moving statistics) against Keras' count_params of the built models."""
    V = 3862

    def nextvlad(n, groups, clusters, expansion=2):
        wide = expansion * n
        width = wide // groups
        return (n * wide + wide             # expansion dense with bias
                + wide * groups + groups    # group attention with bias
                + wide * groups * clusters  # cluster assignment, no bias
                + 4 * groups * clusters     # its BN
                + width * clusters          # centroids
                + 4 * width * clusters)     # BN of the flattened VLAD

    vlad_dim = 256 * 128 + 64 * 64  # rgb: (2*1024/8) * 128, audio: (2*128/4) * 64
    nextvlad_total = (nextvlad(1024, 8, 128) + nextvlad(128, 4, 64)
                      + vlad_dim * 2048 + 4 * 2048               # hidden (no bias) + BN
                      + 2048 * 256 + 4 * 256 + 256 * 2048        # SE gating, r = 8
                      + 2048 * V + V)                            # logistic
    assert nextvlad_total == 88_970_274

    netvlad_total = (4 * 1152                                    # input BN
                     + 1024 * 256 + 4 * 256 + 1024 * 256         # rgb NetVLAD K=256
                     + 128 * 128 + 4 * 128 + 128 * 128           # audio NetVLAD K=128
                     + (1024 * 256 + 128 * 128) * 1024 + 1024    # hidden with bias
                     + 1024 * 1024 + 4 * 1024                    # context gating
                     + 1024 * V * 3 + 1024 * V * 2 + V * 2       # MoE gates, experts + bias
                     + V * V + 4 * V)                            # probability gating
    assert netvlad_total == 321_541_224

    # Variables created uninitialised: the ~410M initial values are never drawn or stored.
    with tf.variable_creator_scope(uninitialized_variable):
        nextvlad_model = frame_level_models.build(
            "NeXtVLADModel", V, groups=8, nextvlad_cluster_size=128, expansion=2,
            nextvlad_hidden_size=2048, gating_reduction=8)
        netvlad_model = frame_level_models.build(
            "NetVLADModelLF", V, netvlad_cluster_size=256, netvlad_hidden_size=1024,
            moe_num_mixtures=2)
    assert nextvlad_model.count_params() == nextvlad_total
    assert netvlad_model.count_params() == netvlad_total
    assert nextvlad_model.get_layer("hidden").kernel.shape == (vlad_dim, 2048)  # 75.5M of 89M


def uninitialized_variable(next_creator, **kwargs):
    del next_creator
    return resource_variable_ops.UninitializedVariable(
        shape=kwargs["shape"], dtype=kwargs["dtype"], name=kwargs.get("name"),
        trainable=kwargs.get("trainable", True))


# ---------------------------------------------------------------- training and pruning

def make_train_step(model, optimizer):
    # Eager: for these few steps of tiny models, tracing a tf.function costs more than it saves
    # (tracing a tfmot-wrapped model takes ~25 s).
    def step(batch, target):
        with tf.GradientTape() as tape:
            predictions = model(batch, training=True)["predictions"]
            bce = keras.backend.binary_crossentropy(target, predictions)
            loss = tf.reduce_mean(tf.reduce_sum(bce, axis=1)) + tf.add_n(model.losses + [0.0])
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss
    return step


@pytest.mark.parametrize("name", list(SMALL))
def test_loss_decreases(small_models, name):
    rng = np.random.default_rng(9)
    model = small_models[name]
    batch = (frame_batch(rng) if frame_level_models.is_frame_level(name) else video_batch(rng))
    target = labels(rng)
    step = make_train_step(model, keras.optimizers.Adam(0.02))
    losses = [float(step(batch, target)) for _ in range(8)]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.9 * losses[0], losses  # 0.75-0.8 of the first loss when measured


def test_pruning_reaches_target_sparsity_and_strips():
    keras.utils.set_random_seed(10)
    model = frame_level_models.build("NeXtVLADModel", NUM_CLASSES, **SMALL["NeXtVLADModel"])
    with pytest.raises(ValueError, match="--pruning_end_step=3 must be after "
                                         "--pruning_begin_step=3"):
        pruning.prune(model, 0.5, begin_step=3, end_step=3)
    pruned = pruning.prune(model, target_sparsity=0.7, begin_step=0, end_step=4, frequency=1)
    # Only the layers with large matrices are wrapped (not the inputs, concatenation, dropout,
    # batch norm, activation).
    assert sorted(layer.layer.name for layer in pruning.pruning_layers(pruned)) == [
        "audio_nextvlad", "hidden", "logistic", "rgb_nextvlad", "se_gating"]
    rng = np.random.default_rng(11)
    batch, target = frame_batch(rng), labels(rng)
    step = make_train_step(pruned, keras.optimizers.Adam(0.01))
    for _ in range(6):
        step(batch, target)
    stripped = pruning.strip(pruned)
    assert [type(layer) for layer in stripped.layers] == [type(layer) for layer in model.layers]
    weights = pruning.prunable_weights(stripped)
    names = {name.split("/")[0] for name, _ in weights}
    assert {"rgb_nextvlad", "audio_nextvlad", "hidden", "se_gating", "logistic"} <= names
    for name, weight in weights:  # tfmot zeroes round(0.7 * size) entries of each matrix
        zeros = np.count_nonzero(weight.numpy() == 0)
        assert abs(zeros - 0.7 * weight.shape.num_elements()) <= 1, (name, zeros)
    assert abs(pruning.sparsity(stripped) - 0.7) < 0.01
    np.testing.assert_allclose(stripped(batch)["predictions"].numpy(),
                               pruned(batch)["predictions"].numpy(), rtol=1e-5, atol=1e-6)
