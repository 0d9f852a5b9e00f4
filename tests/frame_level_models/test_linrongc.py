"""linrongc's NeXtVLADModel / MixNeXtVladModel and MOD's tree against the reference, written from
its source in tests/reference (nextvlad_numpy: forward passes; param_counts: variable shapes):
reverse whitening from the reference's (2048, 1) eigenvalue file and formula, the classifier
choice (LogisticModel with He init and L2 on weights and biases, or MoeModel with 4 mixtures), the
mixture gate (bias, no L2, whitened input), the MixNeXtVladModel alias, parameter counts at the
scripts' configurations."""
import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras
from tensorflow.python.ops import resource_variable_ops

import frame_level_models
from frame_level_models.composite.mixture import MixtureModel
from frame_level_models.layers import frame_ops
from reference import common as ref
from reference import nextvlad_numpy
from reference import param_counts

V = 5
RGB, AUDIO = 1024, 128  # the reference splits the 1152-d input at 1024
FEATURES = dict(feature_names="rgb,audio", feature_sizes="1024,128")
SMALL = dict(FEATURES, nextvlad_cluster_size=4, nextvlad_hidden_size=16, groups=4, expansion=2,
             gating_reduction=4, drop_rate=0.5)
ORACLE_FLAGS = dict(cluster_size=4, groups=4, expansion=2, gating_reduction=4)
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def eigenvalue_file(tmp_path_factory):
    """A file in the reference's format: float32, shape (2048, 1), descending."""
    rng = np.random.default_rng(0)
    values = np.sort(rng.uniform(0.001, 15.0, 2048))[::-1].astype(np.float32).reshape(2048, 1)
    path = tmp_path_factory.mktemp("pca") / "eigenvals.npy"
    np.save(path, values)
    return str(path)


def frames(num_frames, length, seed=1):
    """Dequantized-range frames [B, T, 1152] with the padding zero (what the readers give)."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(-2.0, 2.0, (len(num_frames), length, RGB + AUDIO))
    for row, count in enumerate(num_frames):
        values[row, count:] = 0.0
    return values


def model_inputs(values, num_frames):
    return {"rgb": tf.constant(values[..., :RGB], tf.float32),
            "audio": tf.constant(values[..., RGB:], tf.float32),
            "num_frames": tf.constant(num_frames, tf.int32)}


def randomize(model, seed):
    """Every weight random (kernels ~ N(0, 1/fan_in), batch-norm statistics away from 0/1), so a
    wrong mapping or wiring cannot pass."""
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        shape = variable.shape.as_list()
        if "moving_variance" in variable.name:
            value = rng.uniform(0.5, 2.0, shape)
        elif len(shape) >= 2:
            value = rng.normal(0.0, 1.0, shape) / np.sqrt(shape[-2])
        else:
            value = rng.normal(0.0, 0.3, shape) + (1.0 if "gamma" in variable.name else 0.0)
        variable.assign(value.astype(np.float32))


def bn(norm, scope):
    return {f"{scope}/{part}": getattr(norm, part).numpy()
            for part in ("gamma", "beta", "moving_mean", "moving_variance")}


def reference_weights(model, prefix="", vlad_scopes=("video_VLAD", "audio_VLAD")):
    """Our NeXtVLADModel's weights under the reference's variable names (nextvlad.py)."""
    weights = {}
    for stream, scope in zip(("rgb", "audio"), vlad_scopes):
        layer = model.get_layer(f"{stream}_nextvlad")
        s = f"{prefix}{scope}/"
        weights.update({s + "fully_connected/weights": layer.expansion_kernel.numpy(),
                        s + "fully_connected/biases": layer.expansion_bias.numpy(),
                        s + "fully_connected_1/weights": layer.attention_kernel.numpy(),
                        s + "fully_connected_1/biases": layer.attention_bias.numpy(),
                        s + "cluster_weights": layer.cluster_kernel.numpy(),
                        s + "cluster_weights2": layer.centroids.numpy()[None]})
        weights.update(bn(layer.cluster_bn, s + "cluster_bn"))
        weights.update(bn(layer.output_bn, s + "vlad_bn"))
    weights[prefix + "hidden1_weights"] = model.get_layer("hidden").kernel.numpy()
    weights.update(bn(model.get_layer("hidden_bn"), prefix + "hidden1_bn"))
    gating = model.get_layer("se_gating")
    weights[prefix + "gating_weights_1"] = gating.squeeze_kernel.numpy()
    weights[prefix + "gating_weights_2"] = gating.excite_kernel.numpy()
    weights.update(bn(gating.batch_norm, prefix + "gating_bn"))
    names = [layer.name for layer in model.layers]
    if "logistic" in names:
        logistic = model.get_layer("logistic")
        weights[prefix + "fully_connected/weights"] = logistic.kernel.numpy()
        weights[prefix + "fully_connected/biases"] = logistic.bias.numpy()
    else:
        moe = model.get_layer("moe")
        weights[prefix + "gates/weights"] = moe.gate_kernel.numpy()
        weights[prefix + "experts/weights"] = moe.expert_kernel.numpy()
        weights[prefix + "experts/biases"] = moe.expert_bias.numpy()
    return weights


# ---------------------------------------------------------------- reverse whitening


def test_reverse_whitening_reads_the_reference_file_and_formula(eigenvalue_file):
    eigenvalues = frame_ops.load_eigenvalues(eigenvalue_file, RGB)
    assert eigenvalues.shape == (RGB,)
    num_frames = [4, 2]
    values = frames(num_frames, 4)
    layer = frame_ops.ReverseWhitening(eigenvalues)
    got = layer([tf.constant(values[..., :RGB], tf.float32),
                 tf.constant(num_frames, tf.int32)]).numpy()
    expected = nextvlad_numpy.reverse_whitening(
        values, nextvlad_numpy.load_eigenvalues(eigenvalue_file))[..., :RGB]
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1, :2], expected[1, :2], rtol=1e-5, atol=1e-6)
    # Padded frames stay 0 (the reference makes them -4/512 * scale; a listed deviation).
    np.testing.assert_array_equal(got[1, 2:], 0.0)
    assert np.abs(expected[1, 2:]).min() > 0
    clone = frame_ops.ReverseWhitening.from_config(layer.get_config())
    np.testing.assert_array_equal(
        clone([tf.constant(values[..., :RGB], tf.float32), tf.constant(num_frames)]).numpy(), got)


def test_eigenvalue_file_errors(tmp_path):
    path = tmp_path / "eigen.npy"
    np.save(path, np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"has shape \(3, 2\); expected \(N,\) or \(N, 1\)"):
        frame_ops.load_eigenvalues(str(path), 3)
    np.save(path, np.ones((100, 1), np.float32))
    with pytest.raises(ValueError, match="holds 100 eigenvalues; the rgb feature has 1024"):
        frame_ops.load_eigenvalues(str(path), RGB)


# ---------------------------------------------------------------- NeXtVLADModel


@pytest.mark.parametrize("classifier", ["LogisticModel", "MoeModel"])
def test_nextvlad_model_matches_the_reference_forward(classifier, eigenvalue_file):
    """Whitened input, both streams, hidden layer, SE gating and the classifier in the reference's
    order; padded frames included (they must not count)."""
    keras.utils.set_random_seed(2)
    model = frame_level_models.build("NeXtVLADModel", V, pca_eigenvalues_file=eigenvalue_file,
                                     video_level_classifier_model=classifier, **SMALL)
    randomize(model, 3)
    num_frames = [6, 3, 1]
    values = frames(num_frames, 6)
    outputs = model(model_inputs(values, num_frames), training=False)
    whitened = nextvlad_numpy.reverse_whitening(values,
                                                nextvlad_numpy.load_eigenvalues(eigenvalue_file))
    predictions, logits = nextvlad_numpy.nextvlad_model(
        whitened, num_frames, reference_weights(model), video_level_classifier_model=classifier,
        **ORACLE_FLAGS)  # num_mixtures: the reference's default 4, as ours
    np.testing.assert_allclose(outputs["predictions"].numpy(), predictions, **TOL)
    if classifier == "LogisticModel":
        np.testing.assert_allclose(outputs["logits"].numpy(), logits, rtol=1e-5, atol=1e-4)
    else:
        assert "logits" not in outputs  # linrongc's MoeModel returns none either
        assert model.get_layer("moe").num_mixtures == 4


def test_nextvlad_classifier_has_he_init_and_l2_on_weights_and_biases():
    model = frame_level_models.build("NeXtVLADModel", V, **SMALL)
    logistic = model.get_layer("logistic")
    initializer = logistic.kernel_initializer.get_config()
    assert (initializer["scale"], initializer["mode"], initializer["distribution"]) == (
        2.0, "fan_in", "truncated_normal")
    randomize(model, 4)
    # slim.l2_regularizer(1e-5) on fully_connected/weights and fully_connected/biases.
    expected = (ref.slim_l2_loss(logistic.kernel.numpy(), 1e-5)
                + ref.slim_l2_loss(logistic.bias.numpy(), 1e-5))
    np.testing.assert_allclose(float(tf.add_n(model.losses)), expected, rtol=1e-5)


# ---------------------------------------------------------------- MixNeXtVladModel


def mixture_reference_weights(model):
    """The mixture's weights under MixNeXtVladModel's names. Our gate reads the features in
    sorted name order (audio, rgb), the reference's in input order (rgb, audio)."""
    weights = {}
    for index, branch in enumerate(model.branch_models):
        weights.update(reference_weights(branch, f"branch_{index}/", ("video_vlad", "audio_vlad")))

    def to_reference(value):  # [audio 128 | rgb 1024] rows -> [rgb | audio]
        return np.concatenate([value[AUDIO:], value[:AUDIO]], axis=0)

    gate = model.gate
    weights.update({key: to_reference(value)
                    for key, value in bn(gate.norm, "mix_weights_bn").items()})
    weights["mix_weights/weights"] = to_reference(gate.dense.kernel.numpy())
    weights["mix_weights/biases"] = gate.dense.bias.numpy()
    return weights


@pytest.fixture(scope="module")
def mixture(eigenvalue_file):
    keras.utils.set_random_seed(5)
    model = frame_level_models.build("MixNeXtVladModel", V, mix_number=2,
                                     pca_eigenvalues_file=eigenvalue_file, **SMALL)
    randomize(model, 6)
    return model


def test_mixnextvlad_alias_is_the_registered_model(mixture):
    assert isinstance(mixture, MixtureModel) and mixture.name == "MixNeXtVLADModel"
    assert frame_level_models.canonical_name("MixNeXtVladModel") == "MixNeXtVLADModel"
    assert "MixNeXtVladModel" not in frame_level_models.model_names()  # an alias, not a copy
    assert (frame_level_models.hparam_names("MixNeXtVladModel")
            == frame_level_models.hparam_names("MixNeXtVLADModel"))


def test_mixnextvlad_matches_the_reference_forward_on_full_videos(mixture, eigenvalue_file):
    """Every frame valid: the gate (whitened input, BN, dense with bias), the branches and the
    mixture logits equal MixNeXtVladModel's."""
    num_frames = [5, 5]
    values = frames(num_frames, 5, seed=7)
    outputs = mixture(model_inputs(values, num_frames), training=False)
    whitened = nextvlad_numpy.reverse_whitening(values,
                                                nextvlad_numpy.load_eigenvalues(eigenvalue_file))
    predictions, logits, branch_logits, _, gate = nextvlad_numpy.mix_nextvlad_model(
        whitened, num_frames, mixture_reference_weights(mixture), mix_number=2, **ORACLE_FLAGS)
    np.testing.assert_allclose(outputs["gate_weights"].numpy(), gate, **TOL)
    np.testing.assert_allclose(outputs["branch_logits"].numpy(), branch_logits, rtol=1e-5,
                               atol=1e-4)
    np.testing.assert_allclose(outputs["logits"].numpy(), logits, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(outputs["predictions"].numpy(), predictions, **TOL)


def test_mixnextvlad_gate_ignores_padding(mixture, eigenvalue_file):
    """With padded videos each row equals the reference run on that video alone (its own frames
    only): the reference would average the padded frames into the gate input (not repeated)."""
    num_frames = [6, 2, 4]
    values = frames(num_frames, 6, seed=8)
    outputs = mixture(model_inputs(values, num_frames), training=False)
    eigenvalues = nextvlad_numpy.load_eigenvalues(eigenvalue_file)
    weights = mixture_reference_weights(mixture)
    for row, count in enumerate(num_frames):
        video = nextvlad_numpy.reverse_whitening(values[row:row + 1, :count], eigenvalues)
        predictions, logits, _, _, gate = nextvlad_numpy.mix_nextvlad_model(
            video, [count], weights, mix_number=2, **ORACLE_FLAGS)
        np.testing.assert_allclose(outputs["gate_weights"].numpy()[row], gate[0], **TOL)
        np.testing.assert_allclose(outputs["logits"].numpy()[row], logits[0], rtol=1e-5,
                                   atol=1e-4)


def test_mixture_gate_defaults_are_the_references(mixture):
    """mix_weights/weights + mix_weights/biases, no regularizer."""
    dense = mixture.gate.dense
    assert dense.use_bias and dense.bias.shape == (2,)
    assert dense.kernel_regularizer is None and not mixture.gate.losses
    clone = MixtureModel.from_config(mixture.get_config())
    assert clone.gate.use_bias and clone.gate_whitening is not None


def test_mixture_of_moe_branches_is_refused_at_build():
    with pytest.raises(ValueError, match="has no 'logits' output.*LogisticModel"):
        frame_level_models.build("MixNeXtVladModel", V, mix_number=2,
                                 video_level_classifier_model="MoeModel", **SMALL)


# ---------------------------------------------------------------- parameter counts


def uninitialized_variable(next_creator, **kwargs):
    del next_creator
    return resource_variable_ops.UninitializedVariable(
        shape=kwargs["shape"], dtype=kwargs["dtype"], name=kwargs.get("name"),
        trainable=kwargs.get("trainable", True))


def shapes_of(variables):
    """Sorted shapes, leading 1s dropped (the reference's centroids are [1, D, K])."""
    result = []
    for shape in variables:
        shape = tuple(int(d) for d in shape)
        while len(shape) > 1 and shape[0] == 1:
            shape = shape[1:]
        result.append(shape)
    return sorted(result)


CONFIGS = [
    # linrongc's flag defaults: K64 G8 x2 H1024 r8, MoeModel with 4 mixtures (58,034,020).
    ("NeXtVLADModel", dict(nextvlad_cluster_size=64, nextvlad_hidden_size=1024,
                           video_level_classifier_model="MoeModel"),
     param_counts.nextvlad_model, dict()),
    # scripts/train_nextvlad_local.sh (the paper: 88,889,378).
    ("NeXtVLADModel", dict(nextvlad_cluster_size=128, nextvlad_hidden_size=2048,
                           video_level_classifier_model="LogisticModel"),
     *param_counts.LINRONGC_SCRIPT_CONFIGS["nextvlad_local"]),
    # scripts/train_mix_nextvlad_final_submission.sh (235,935,273).
    ("MixNeXtVladModel", dict(mix_number=3, nextvlad_cluster_size=112, nextvlad_hidden_size=2048,
                              gating_reduction=16),
     *param_counts.LINRONGC_SCRIPT_CONFIGS["mix_nextvlad_final"]),
    # MOD parallel_script/train_mix_nextvlad_final_submission.sh: --num_gpu=4 --mix_number=3.
    ("MODNeXtVLADModel", dict(mod_tree="4x3", nextvlad_cluster_size=128,
                              nextvlad_hidden_size=2048, gating_reduction=16),
     *param_counts.LINRONGC_SCRIPT_CONFIGS["mod_tree_final"]),
]


@pytest.mark.parametrize("name,hparams,reference,flags", CONFIGS,
                         ids=["linrongc_defaults", "nextvlad_local", "mix_final", "mod_tree_final"])
def test_parameter_counts_at_the_scripts_configurations(name, hparams, reference, flags):
    shapes = reference(**flags)
    with tf.variable_creator_scope(uninitialized_variable):
        model = frame_level_models.build(name, param_counts.STARTER_VOCAB, **FEATURES, **hparams)
    trainable = [v.shape for v in model.trainable_variables]
    assert sum(int(np.prod(s)) for s in trainable) == param_counts.count(shapes)
    assert shapes_of(trainable) == shapes_of(
        s for key, s in shapes.items() if param_counts.is_trainable(key))
    assert shapes_of(v.shape for v in model.variables) == shapes_of(shapes.values())


def test_known_totals():
    """The totals reference_notes.md reports, from the reference's shapes."""
    assert param_counts.count(param_counts.nextvlad_model()) == 58_034_020
    function, flags = param_counts.LINRONGC_SCRIPT_CONFIGS["nextvlad_local"]
    assert param_counts.count(function(**flags)) == 88_889_378
    function, flags = param_counts.LINRONGC_SCRIPT_CONFIGS["mix_nextvlad_final"]
    assert param_counts.count(function(**flags)) == 235_935_273
