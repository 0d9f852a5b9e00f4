"""--mixed_precision and --jit_compile: every zoo model under mixed_bfloat16 against float32 with
the same weights, the float32 parts found in the traced graph, loss scaling and clipping of
mixed_float16 worked by hand, a mixed run resumed bit-exactly, exported at float16 and served."""
import os
import sys

import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

import frame_level_models
from yt8m.core import files
from yt8m.core import model_flags as model_flags_lib
from yt8m.core.model_flags import ModelFlagsMismatchError
from yt8m.export import exporter
from yt8m.training import checkpoints
from yt8m.training import mixed_precision
from yt8m.training import objective
from yt8m.training import trainer
from yt8m.training.model_builder import build_model, label_loss_for
from yt8m.training.optimizers import make_optimizer

import training_helpers as helpers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "frame_level_models"))
try:
    import test_models as zoo  # TINY: the tiny hparams of every registered model
finally:
    sys.path.pop(0)

# bfloat16 keeps 8 significant bits: each rounding is off by at most u = 2^-8 relative. A tiny
# model's logit |z| <= ~4 passes through at most ~4 16-bit stages (matmuls, activations; the
# softmaxes, L2 norms, batch-norm statistics and frame means run in float32) before the float32
# sigmoid, so |dz| <~ 4 * u * 4 and |dp| <= |dz| / 4 (sigmoid' <= 1/4): |dp| <~ 4u = 2^-6.
BFLOAT16_PREDICTION_TOLERANCE = 2.0 ** -6
# Ops whose result must be float32 under a 16-bit policy: softmaxes (cluster assignment, MoE and
# mixture gates, the KL), the L2 normalisations and batch-norm statistics (their rsqrt and
# moments), the logs of the label loss and the KL.
FLOAT32_OP_TYPES = ("Softmax", "LogSoftmax", "Rsqrt", "Log", "Log1p")
FLOAT32_SCOPES = ("l2_normalize", "moments", "loss_xent")


def _batch(name, rng):
    if frame_level_models.is_frame_level(name):
        return zoo.frame_batch(rng)
    return zoo.video_batch(rng)


def _build(name, policy, seed=1):
    keras.utils.set_random_seed(seed)
    with mixed_precision.policy_scope(policy):
        return frame_level_models.build(name, zoo.NUM_CLASSES, **zoo.TINY[name])


@pytest.fixture(scope="module")
def model_pairs():
    """name -> (float32 model, mixed_bfloat16 model with the float32 model's weights), built on
    first use."""
    pairs = {}

    def pair(name):
        if name not in pairs:
            full = _build(name, "float32")
            mixed = _build(name, "mixed_bfloat16", seed=2)
            mixed.set_weights(full.get_weights())
            pairs[name] = (full, mixed)
        return pairs[name]

    return pair


@pytest.mark.parametrize("name", sorted(zoo.TINY))
def test_bfloat16_predictions_are_close_to_float32_with_the_same_weights(name, model_pairs):
    full, mixed = model_pairs(name)
    assert all(variable.dtype == tf.float32 for variable in mixed.variables)  # master weights
    batch = _batch(name, np.random.default_rng(0))
    expected = full(batch, training=False)
    outputs = mixed(batch, training=False)
    assert {key: value.dtype for key, value in outputs.items()} == {
        key: tf.float32 for key in expected}
    difference = np.abs(outputs["predictions"].numpy() - expected["predictions"].numpy()).max()
    assert difference <= BFLOAT16_PREDICTION_TOLERANCE, difference
    assert difference > 0  # the mixed model did compute in bfloat16


def _traced_graph(model, name, rng):
    """The graph of a training-mode forward pass and the model's training loss."""
    batch = _batch(name, rng)
    labels = zoo.labels(rng)
    label_loss = label_loss_for("CrossEntropyLoss", name)

    @tf.function
    def loss(features, labels):
        outputs = model(features, training=True)
        return objective.training_loss(model, outputs, labels, None, label_loss, 1.0)

    return loss.get_concrete_function(batch, labels).graph


def _floating_outputs(operation):
    return [tensor.dtype for tensor in operation.outputs if tensor.dtype.is_floating]


@pytest.mark.parametrize("name", sorted(zoo.TINY))
def test_sensitive_ops_are_float32_in_the_traced_graph(name, model_pairs):
    _, mixed = model_pairs(name)
    graph = _traced_graph(mixed, name, np.random.default_rng(1))
    operations = graph.get_operations()
    checked = [op for op in operations
               if op.type in FLOAT32_OP_TYPES
               or (any(scope in op.name for scope in FLOAT32_SCOPES)
                   and op.type not in ("Cast", "Const") and _floating_outputs(op))]
    wrong = sorted(f"{op.name} ({op.type}): {_floating_outputs(op)}" for op in checked
                   if any(dtype != tf.float32 for dtype in _floating_outputs(op)))
    assert not wrong, "\n".join(wrong)
    assert any(op.type == "Log" for op in checked)  # the label loss was traced
    # ... while the heavy work runs in bfloat16.
    assert any(op.type in ("MatMul", "BatchMatMulV2", "Einsum")
               and op.outputs[0].dtype == tf.bfloat16 for op in operations)


# ------------------------------------------------------------------------- loss scaling, clipping


def _float16_gradients(optimizer, factor):
    """Gradients of factor * cross-entropy of a tiny float16 LogisticModel, through the
    optimizer's loss scaling (none for a plain optimizer)."""
    keras.utils.set_random_seed(3)
    with mixed_precision.policy_scope("mixed_float16"):
        model = frame_level_models.build("LogisticModel", 4, feature_names="mean_rgb",
                                         feature_sizes="8")
    rng = np.random.default_rng(4)
    inputs = {"mean_rgb": rng.normal(size=(8, 8)).astype(np.float32)}
    labels = (rng.uniform(size=(8, 4)) < 0.5).astype(np.float32)
    with tf.GradientTape() as tape:
        predictions = model(inputs, training=True)["predictions"]
        loss = factor * label_loss_for("CrossEntropyLoss", "LogisticModel").calculate_loss(
            predictions, labels)
        scaled = mixed_precision.scale_loss(optimizer, loss)
    gradients = mixed_precision.unscale_gradients(
        optimizer, tape.gradient(scaled, model.trainable_variables))
    return model, [gradient.numpy() for gradient in gradients], (inputs, labels)


def test_loss_scaling_keeps_gradients_that_float16_flushes_to_zero():
    # dL/dlogit = factor * (p - y) / batch <= 2e-7 / 8 = 2.5e-8: under half of float16's smallest
    # subnormal (2^-25 = 3e-8), so the float16 backward pass of the logits rounds it to zero; times
    # the initial loss scale 2^15 it is a normal float16 (>= 6.1e-5 for |p - y| >= 0.075).
    factor = 2e-7
    plain = make_optimizer("GradientDescentOptimizer", 1.0, 0.0)
    _, unscaled, _ = _float16_gradients(plain, factor)
    assert all(not np.any(gradient) for gradient in unscaled)  # underflow: nothing to learn
    scaling = mixed_precision.with_loss_scaling(
        make_optimizer("GradientDescentOptimizer", 1.0, 0.0), "mixed_float16")
    model, scaled, (inputs, labels) = _float16_gradients(scaling, factor)
    # Reference: the float32 gradients, by hand: kernel x^T (p - y) / B, bias sum (p - y) / B,
    # through the starter's cross-entropy with epsilon 1e-5: dL/dp = -(y/(p+e) - (1-y)/(1-p+e)).
    kernel, bias = (variable.numpy() for variable in model.trainable_variables)
    x = inputs["mean_rgb"] / np.linalg.norm(inputs["mean_rgb"], axis=1, keepdims=True)
    p = 1 / (1 + np.exp(-(x @ kernel + bias)))
    dp = -(labels / (p + 1e-5) - (1 - labels) / (1 - p + 1e-5))
    dz = factor * dp * p * (1 - p) / len(labels)
    expected = [x.T @ dz, dz.sum(axis=0)]
    for got, want in zip(scaled, expected):
        assert np.all(np.isfinite(got)) and np.any(got)
        # float16 keeps 11 significant bits (2^-11 relative per rounding), a few roundings deep.
        np.testing.assert_allclose(got, want, rtol=2e-2, atol=5e-3 * np.abs(want).max())
    before = [variable.numpy() for variable in model.trainable_variables]
    scaling.apply_gradients(zip([tf.constant(g) for g in scaled], model.trainable_variables))
    assert int(scaling.iterations.numpy()) == 1
    for variable, value, gradient in zip(model.trainable_variables, before, scaled):
        np.testing.assert_allclose(variable.numpy(), value - gradient, rtol=1e-6)


@pytest.mark.parametrize("on_variable_devices", [False, True])
@pytest.mark.parametrize("clip, expected_step", [
    # gradient (0.375, 0.5): norm 0.625. Clipped to 0.125: x 0.2; under 1.0: unchanged. Had the
    # optimizer clipped the scaled gradient (norm 0.625 * 32768) the step would be ~1/32768.
    (0.125, (0.075, 0.1)), (1.0, (0.375, 0.5))])
def test_clipping_acts_on_the_unscaled_gradients(clip, expected_step, on_variable_devices):
    optimizer = mixed_precision.with_loss_scaling(
        make_optimizer("GradientDescentOptimizer", 1.0, clip,
                       on_variable_devices=on_variable_devices), "mixed_float16")
    assert float(optimizer.loss_scale) == 32768.0
    with mixed_precision.policy_scope("mixed_float16"):
        layer = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")
    inputs = tf.constant([[0.375, 0.5]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(layer(inputs), tf.float32))  # d loss / d kernel = inputs
        scaled = mixed_precision.scale_loss(optimizer, loss)
    gradients = mixed_precision.unscale_gradients(
        optimizer, tape.gradient(scaled, layer.trainable_variables))
    optimizer.apply_gradients(zip(gradients, layer.trainable_variables))
    np.testing.assert_allclose(layer.kernel.numpy()[:, 0], -np.array(expected_step), rtol=1e-6)


# ---------------------------------------------------------------------------- train, resume, export


NEXTVLAD = dict(nextvlad_cluster_size=4, nextvlad_hidden_size=8, groups=2, gating_reduction=4,
                drop_rate=0.0)  # no dropout: a resumed run draws no random numbers


def _config(train_dir, data_dir, **overrides):
    return helpers.train_config(train_dir, data_dir, frame_level=True, model="NeXtVLADModel",
                                model_hparams=NEXTVLAD, mixed_precision="mixed_bfloat16",
                                **overrides)


def test_mixed_run_resumes_bit_exactly_then_exports_at_float16_and_serves(small_dataset,
                                                                          tmp_path):
    reference = trainer.Trainer(_config(tmp_path / "uninterrupted", small_dataset, max_steps=6))
    reference_result = reference.run()
    first = trainer.Trainer(_config(tmp_path / "resumed", small_dataset, max_steps=3))
    assert first.run().step == 3
    resumed = trainer.Trainer(_config(tmp_path / "resumed", small_dataset, max_steps=6))
    assert resumed.restored_from.endswith("ckpt-3")
    result = resumed.run()
    assert (result.step, result.last_loss) == (6, reference_result.last_loss)
    # Checkpoints hold the float32 master weights, equal bit for bit.
    names = [name for name, _ in tf.train.list_variables(result.checkpoint)
             if name.startswith(("model/", "optimizer/"))]
    assert len(names) > 10
    for name in names:
        value = tf.train.load_variable(result.checkpoint, name)
        assert value.dtype != np.float16 and str(value.dtype) != "bfloat16", name
        np.testing.assert_array_equal(value, tf.train.load_variable(reference_result.checkpoint,
                                                                    name), err_msg=name)
    train_dir = str(tmp_path / "resumed")
    assert model_flags_lib.read_model_flags(train_dir)["mixed_precision"] == "mixed_bfloat16"

    # Export at float16 and serve: the SavedModel's predictions match the checkpoint's model
    # evaluated in float32 (bfloat16 compute: BFLOAT16_PREDICTION_TOLERANCE; float16 storage of
    # the large matrices adds 2^-11 relative on the weights).
    export_dir = str(tmp_path / "export")
    report = exporter.export_ensemble(exporter.ExportConfig(
        members=[train_dir], weights=[1.0], output_dir=export_dir, precision="float16",
        min_low_precision_elements=16))
    assert report["precision"] == "float16"
    float32_flags = dict(model_flags_lib.read_model_flags(train_dir), mixed_precision="float32")
    full = build_model(float32_flags)
    checkpoints.restore_model_weights(full, result.checkpoint, "the mixed run")
    rng = np.random.default_rng(5)
    frames = {"rgb": rng.normal(size=(3, helpers.MAX_FRAMES, 1024)).astype(np.float32),
              "audio": rng.normal(size=(3, helpers.MAX_FRAMES, 128)).astype(np.float32)}
    num_frames = np.array([helpers.MAX_FRAMES, 7, 1], np.int32)
    for values in frames.values():  # zero padding, as the readers give
        values[np.arange(helpers.MAX_FRAMES)[None, :] >= num_frames[:, None]] = 0.0
    served = tf.saved_model.load(export_dir).signatures["serving_default"](
        **frames, num_frames=num_frames)["predictions"].numpy()
    expected = full(dict(frames, num_frames=num_frames), training=False)["predictions"].numpy()
    np.testing.assert_allclose(served, expected, atol=BFLOAT16_PREDICTION_TOLERANCE)


def test_mixed_precision_is_recorded_and_a_different_policy_refused(small_dataset, tmp_path):
    trainer.train(helpers.train_config(tmp_path, small_dataset, max_steps=1))
    assert model_flags_lib.read_model_flags(str(tmp_path))["mixed_precision"] == "float32"
    with pytest.raises(ModelFlagsMismatchError,
                       match="mixed_precision: 'float32' in the file, 'mixed_float16' now"):
        trainer.train(helpers.train_config(tmp_path, small_dataset, max_steps=2,
                                           mixed_precision="mixed_float16"))
    # A model_flags.json written before the option existed means float32.
    flags_file = model_flags_lib.model_flags_path(str(tmp_path))
    recorded = model_flags_lib.read_model_flags(str(tmp_path))
    del recorded["mixed_precision"]
    files.write_json_atomically(flags_file, recorded)
    assert trainer.train(helpers.train_config(tmp_path, small_dataset, max_steps=2)).step == 2


def test_mixed_float16_run_trains_with_a_loss_scale_in_its_checkpoint(small_dataset, tmp_path):
    result = trainer.train(helpers.train_config(tmp_path, small_dataset, max_steps=3,
                                                mixed_precision="mixed_float16"))
    assert result.step == 3 and np.isfinite(result.last_loss)
    names = dict(tf.train.list_variables(result.checkpoint))
    scale = [name for name in names if "loss_scale" in name and "current" in name]
    assert scale, sorted(names)


def test_jit_compiled_steps_match_the_plain_ones(small_dataset, tmp_path):
    results = {}
    for jit in (False, True):
        # Plain SGD: XLA reorders float sums (~1e-7 relative), which Adam's division by the
        # running RMS would magnify where a gradient is ~0.
        run = trainer.Trainer(helpers.train_config(
            tmp_path / str(jit), small_dataset, max_steps=3, jit_compile=jit,
            optimizer="GradientDescentOptimizer"))
        results[jit] = (run.run(), [variable.numpy() for variable in run.model.variables])
    assert results[True][0].last_loss == pytest.approx(results[False][0].last_loss, rel=1e-5)
    for got, want in zip(results[True][1], results[False][1]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_distillation_trains_a_mixed_student_from_teachers_of_either_policy(
        small_dataset, frame_logistic_run, tmp_path):
    """A mixed_float16 student (loss-scaled) distilled from a float32 teacher and a
    mixed_bfloat16 one (each rebuilt from its train dir, under its recorded policy)."""
    from yt8m.distillation import training_setup
    from yt8m.distillation.config import DistillConfig

    def config(name, policy):
        return helpers.train_config(tmp_path / name, small_dataset, frame_level=True,
                                    max_steps=2, mixed_precision=policy)

    trainer.train(config("bfloat16_teacher", "mixed_bfloat16"))
    teachers = (frame_logistic_run, str(tmp_path / "bfloat16_teacher"))
    student, factory = training_setup.prepare(
        config("student", "mixed_float16"),
        DistillConfig(mode="multi_teacher", teacher_dirs=teachers))
    run = trainer.Trainer(student, training_model_factory=factory)
    assert mixed_precision.is_loss_scaled(run.optimizer)
    result = run.run()
    assert result.step == 2 and np.isfinite(result.last_loss)
    assert model_flags_lib.read_model_flags(teachers[1])["mixed_precision"] == "mixed_bfloat16"


def test_gradual_pruning_works_under_mixed_precision(small_dataset, tmp_path):
    from yt8m.core.config import PruningConfig
    train_dir = tmp_path / "pruned"
    result = trainer.train(_config(train_dir, small_dataset, max_steps=4, pruning=PruningConfig(
        pruning_target_sparsity=0.5, pruning_begin_step=0, pruning_end_step=3,
        pruning_frequency=1)))
    assert result.step == 4 and np.isfinite(result.last_loss)
    model = checkpoints.load_model(str(train_dir))  # the pruning wrappers stripped
    kernel = model.get_layer("rgb_nextvlad").expansion_kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=1e-3)
    rng = np.random.default_rng(6)
    frames = {"rgb": rng.normal(size=(2, 5, 1024)).astype(np.float32),
              "audio": rng.normal(size=(2, 5, 128)).astype(np.float32),
              "num_frames": np.array([5, 3], np.int32)}
    assert model(frames, training=False)["predictions"].dtype == tf.float32
