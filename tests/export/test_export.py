"""Ensemble export: checkpoint averaging, float16/int8 storage, signatures, budget, atomic output.

Three tiny members are trained-by-hand (random weights written with a CheckpointManager, as
train.py writes them): a frame-level logistic model with three checkpoints, a gated NetVLAD model
(batch norm, gating, MoE) and a video-level logistic model fed with frame means. References are
computed with the plain Keras models and numpy, not with the exporter's code.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import flags as absl_flags

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

import export_helpers
import frame_level_models
from yt8m import metrics
from yt8m.data import records
from yt8m.export import budget
from yt8m.export import demo
from yt8m.export import exporter
from yt8m.export import member_module
from yt8m.export import members as members_lib
from yt8m.export import precision as precision_lib
from yt8m.export import requests
from yt8m.export import saved_model_predictor
from yt8m.export import serving
from yt8m.export import tuning
from yt8m.export import validation_data
from yt8m.inference import video_inference
from yt8m.training import checkpoints
from yt8m.core import files
from yt8m.core import options
from yt8m.core.config import InferenceConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_CLASSES = 6
MAX_FRAMES = 30
MIN_ELEMENTS = 1000  # small enough that the tiny models have float16 and float32 matrices
WEIGHTS = (0.5, 0.3, 0.2)
MEMBER_MODELS = {  # name -> (model, feature names, hparams, checkpoint steps)
    "logistic": ("FrameLevelLogisticModel", "rgb,audio", {}, (100, 200, 300)),
    "netvlad": ("NetVLADModelLF", "rgb,audio",
                {"netvlad_cluster_size": 2, "netvlad_hidden_size": 4}, (50,)),
    "video": ("LogisticModel", "mean_rgb,mean_audio", {}, (10,)),
}


def _write_train_dir(train_dir, model_name, feature_names, hparams, steps, seed):
    """A train dir as train.py leaves it; returns {step: [variable values]}."""
    flags = {"model": model_name, "feature_names": feature_names,
             "feature_sizes": "1024,128", "frame_features": feature_names == "rgb,audio",
             "num_classes": NUM_CLASSES, "max_frames": MAX_FRAMES,
             "label_loss": "CrossEntropyLoss", "hparams": hparams}
    files.write_json_atomically(os.path.join(train_dir, "model_flags.json"), flags)
    keras.utils.set_random_seed(seed)  # the same initial weights every run (float16 error bounds)
    model = frame_level_models.build(model_name, NUM_CLASSES, feature_names=feature_names,
                                     feature_sizes="1024,128", **hparams)
    manager = checkpoints.make_checkpoint_manager(
        tf.train.Checkpoint(model=model, optimizer=keras.optimizers.Adam()), train_dir, 5)
    rng = np.random.default_rng(seed)
    initial = [variable.numpy() for variable in model.variables]
    saved = {}
    for step in steps:
        values = [value + rng.normal(0, 0.3, value.shape).astype(value.dtype) for value in initial]
        values = [np.abs(value) if "variance" in variable.name else value
                  for variable, value in zip(model.variables, values)]
        for variable, value in zip(model.variables, values):
            variable.assign(value)
        manager.save(checkpoint_number=step)
        saved[step] = values
    return saved


def _videos(count, seed):
    """uint8 frames of random lengths (some beyond MAX_FRAMES) and 1-2 labels per video."""
    rng = np.random.default_rng(seed)
    videos = []
    for index in range(count):
        length = int(rng.integers(1, MAX_FRAMES + 12))
        codes = {name: rng.integers(0, 256, (length, size), dtype=np.uint8)
                 for name, size in zip(records.DEFAULT_FEATURE_NAMES,
                                       records.DEFAULT_FEATURE_SIZES)}
        labels = sorted(rng.choice(NUM_CLASSES, size=int(rng.integers(1, 3)), replace=False))
        videos.append((f"vid{index}", [int(label) for label in labels], codes))
    return videos


def _padded_inputs(videos, max_frames=MAX_FRAMES):
    """Numpy model inputs as the readers define them: dequantize, truncate, zero-pad."""
    count = len(videos)
    frames = {name: np.zeros((count, max_frames, size), np.float32)
              for name, size in zip(records.DEFAULT_FEATURE_NAMES, records.DEFAULT_FEATURE_SIZES)}
    num_frames = np.zeros(count, np.int32)
    for row, (_, _, codes) in enumerate(videos):
        length = min(len(codes["rgb"]), max_frames)
        num_frames[row] = length
        for name in frames:
            frames[name][row, :length] = records.dequantize_np(codes[name][:length])
    return frames, num_frames


def _labels(videos):
    labels = np.zeros((len(videos), NUM_CLASSES), np.float32)
    for row, (_, video_labels, _) in enumerate(videos):
        labels[row, video_labels] = 1.0
    return labels


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def train_dirs(workdir):
    dirs, saved = {}, {}
    for seed, (name, (model, features, hparams, steps)) in enumerate(MEMBER_MODELS.items()):
        dirs[name] = str(workdir / name)
        saved[name] = _write_train_dir(dirs[name], model, features, hparams, steps, seed)
    return dirs, saved


@pytest.fixture(scope="module")
def validation(workdir):
    videos = _videos(10, seed=7)
    path = str(workdir / "validate0000.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for video_id, labels, codes in videos:
            writer.write(records.make_sequence_example(video_id, labels, codes)
                         .SerializeToString())
    return path, videos


def _reference_models(train_dirs):
    """Plain Keras models with the expected member weights (the mean of the 3 logistic ones)."""
    dirs, saved = train_dirs
    models = {}
    for name, (model_name, features, hparams, steps) in MEMBER_MODELS.items():
        model = frame_level_models.build(model_name, NUM_CLASSES, feature_names=features,
                                         feature_sizes="1024,128", **hparams)
        values = [np.mean(np.stack([saved[name][step][index] for step in steps]).astype(
            np.float64), axis=0) for index in range(len(model.variables))]
        for variable, value in zip(model.variables, values):
            variable.assign(value.astype(np.float32))
        models[name] = model
    return models


def _reference_predictions(models, frames, num_frames):
    """0.5 logistic + 0.3 netvlad + 0.2 video-level (inputs: numpy means of the valid frames)."""
    frame_inputs = dict(frames, num_frames=num_frames)
    counts = np.maximum(num_frames, 1)[:, None].astype(np.float32)
    video_inputs = {f"mean_{name}": frames[name].sum(axis=1) / counts for name in frames}
    outputs = [models["logistic"](frame_inputs)["predictions"].numpy(),
               models["netvlad"](frame_inputs)["predictions"].numpy(),
               models["video"](video_inputs)["predictions"].numpy()]
    return sum(weight * output for weight, output in zip(WEIGHTS, outputs))


def _export(train_dirs, output_dir, precision, **options):
    dirs, _ = train_dirs
    config = exporter.ExportConfig(
        members=[dirs["logistic"] + "@last:3", dirs["netvlad"], dirs["video"]],
        weights=list(WEIGHTS), output_dir=str(output_dir), precision=precision,
        min_low_precision_elements=MIN_ELEMENTS, **options)
    return exporter.export_ensemble(config)


@pytest.fixture(scope="module")
def exports(workdir, train_dirs, validation):
    """float32, float16 (verified and GAP-checked on the validation file) and int8 exports."""
    pattern, _ = validation
    result = {}
    for precision in precision_lib.PRECISIONS:
        output_dir = workdir / f"export_{precision}"
        data = {"eval_data_pattern": pattern} if precision == precision_lib.FLOAT16 else {}
        result[precision] = (str(output_dir), _export(train_dirs, output_dir, precision, **data))
    return result


# ------------------------------------------------------------------------------- checkpoints


def test_averaging_three_checkpoints_equals_numpy_mean(train_dirs):
    dirs, saved = train_dirs
    member = members_lib.load_member(members_lib.parse_member(dirs["logistic"] + "@last:3", None))
    assert [checkpoints.checkpoint_step(path) for path in member.checkpoints] == [100, 200, 300]
    for index, variable in enumerate(member.model.variables):
        expected = ((saved["logistic"][100][index].astype(np.float64)
                     + saved["logistic"][200][index] + saved["logistic"][300][index]) / 3)
        np.testing.assert_array_equal(variable.numpy(), expected.astype(np.float32))


def test_checkpoint_selection(train_dirs):
    dirs, _ = train_dirs
    default = members_lib.parse_selection("latest", "--average_checkpoints")

    def steps(text):
        spec = members_lib.parse_member(text, default)
        return [checkpoints.checkpoint_step(path) for path in members_lib.select_checkpoints(spec)]

    logistic = dirs["logistic"]
    assert steps(logistic) == [300]
    assert steps(logistic + "@last:2") == [200, 300]
    assert steps(logistic + "@150:300") == [200, 300]
    assert steps(logistic + "@:200") == [100, 200]
    assert steps(logistic + "@100") == [100]
    with pytest.raises(ValueError, match=r"asks for 4 checkpoints but .* holds 3 "
                                         r"\(steps 100, 200, 300\)"):
        steps(logistic + "@last:4")
    with pytest.raises(ValueError, match=r"@150 matches no checkpoint"):
        steps(logistic + "@150")
    with pytest.raises(ValueError, match=r"step range '300:100' starts after it ends"):
        members_lib.parse_selection("300:100", "--average_checkpoints")
    with pytest.raises(ValueError, match=r"cannot read checkpoint selection 'first:2'"):
        members_lib.parse_member(logistic + "@first:2", default)
    with pytest.raises(ValueError, match=r"--members lists .*logistic@latest more than once"):
        members_lib.parse_members([logistic, logistic + "@latest"], default)


# ---------------------------------------------------------------------------------- exports


def test_float32_export_matches_keras_ensemble(exports, train_dirs, validation):
    export_dir, report = exports[precision_lib.FLOAT32]
    _, videos = validation
    loaded = tf.saved_model.load(export_dir)
    frames, num_frames = _padded_inputs(videos)
    expected = _reference_predictions(_reference_models(train_dirs), frames, num_frames)
    outputs = loaded.signatures["serving_default"](**frames, num_frames=num_frames)
    np.testing.assert_allclose(outputs["predictions"].numpy(), expected, atol=1e-5)
    assert report["max_abs_prediction_diff"] < 1e-5
    assert report["verified_on"] == "random videos" and "gap_exported" not in report
    assert loaded.num_classes.numpy() == NUM_CLASSES
    assert loaded.max_frames.numpy() == MAX_FRAMES
    np.testing.assert_allclose(loaded.member_weights.numpy(), WEIGHTS, rtol=1e-6)
    with open(os.path.join(export_dir, "export_report.json")) as handle:
        assert json.load(handle) == report


def test_float16_export_dtypes_size_and_accuracy(exports, train_dirs, validation):
    export_dir, report = exports[precision_lib.FLOAT16]
    float32_dir, float32_report = exports[precision_lib.FLOAT32]
    dtypes = export_helpers.saved_dtypes(export_dir)
    large = {name: dtype for name, (dtype, shape) in dtypes.items()
             if len(shape) >= 2 and np.prod(shape) >= MIN_ELEMENTS}
    # logistic kernel, NetVLAD rgb cluster kernel + centroids + hidden kernel, video kernel.
    assert len(large) == 5 and set(large.values()) == {tf.float16}
    assert all(dtype in (tf.float32, tf.int32) for name, (dtype, shape) in dtypes.items()
               if name not in large)
    # Every large matrix saves 2 of its 4 bytes per value; nothing else changes size.
    large_values = sum(int(np.prod(dtypes[name][1])) for name in large)
    float32_bytes = export_helpers.tensor_bytes(float32_dir)
    assert export_helpers.tensor_bytes(export_dir) == float32_bytes - 2 * large_values
    assert report["size_bytes"]["float16"] == report["size_bytes"]["float32"] - 2 * large_values
    assert report["on_disk_bytes"] < float32_report["on_disk_bytes"]
    assert report["max_abs_prediction_diff"] < 1e-3
    _, videos = validation
    frames, num_frames = _padded_inputs(videos)
    expected = _reference_predictions(_reference_models(train_dirs), frames, num_frames)
    loaded = tf.saved_model.load(export_dir)
    predictions = loaded.signatures["serving_default"](**frames, num_frames=num_frames)
    assert np.max(np.abs(predictions["predictions"].numpy() - expected)) < 1e-3
    # GAP before (float32 ensemble) and after (the export), on the validation file.
    assert report["verified_on"] == validation[0] and report["verified_videos"] == len(videos)
    expected_gap = metrics.gap(expected, _labels(videos), top_k=20)
    assert report["gap_float32"] == pytest.approx(expected_gap, abs=1e-6)
    exported_gap = metrics.gap(predictions["predictions"].numpy(), _labels(videos), top_k=20)
    assert report["gap_exported"] == pytest.approx(exported_gap, abs=1e-6)


def test_int8_export_equals_numpy_dequantization(exports, train_dirs, validation):
    """The int8 export's predictions against the Keras members whose large matrices are the
    numpy dequantization (codes x per-channel scales) of the int8 variables read back from the
    SavedModel; the exporter's own verification bound cannot fail a test (it refuses first)."""
    export_dir, _ = exports[precision_lib.INT8]
    _, videos = validation
    loaded = tf.saved_model.load(export_dir)
    models = _reference_models(train_dirs)
    dequantized = 0
    for member, name in zip(loaded.members, ("logistic", "netvlad", "video")):
        variables = {variable.name: variable for variable in models[name].variables}
        for weight in member.stored_weights:
            assert weight.values.dtype == tf.int8 and weight.scales.dtype == tf.float32
            values = weight.values.numpy().astype(np.float32) * weight.scales.numpy()
            variables[weight.values.name.replace("_int8:0", ":0")].assign(values)
            dequantized += 1
    assert dequantized == 5
    frames, num_frames = _padded_inputs(videos)
    expected = _reference_predictions(models, frames, num_frames)
    outputs = loaded.signatures["serving_default"](**frames, num_frames=num_frames)
    np.testing.assert_allclose(outputs["predictions"].numpy(), expected, atol=1e-6, rtol=0)


def test_int8_export_within_tolerance(exports, train_dirs):
    export_dir, report = exports[precision_lib.INT8]
    dtypes = export_helpers.saved_dtypes(export_dir)
    codes = [name for name, (dtype, _) in dtypes.items() if dtype == tf.int8]
    assert len(codes) == 5
    # A matrix of n values and C output channels saves 4n bytes for n codes + C float scales.
    saved = sum(3 * int(np.prod(shape)) - 4 * shape[-1]
                for name, (dtype, shape) in dtypes.items() if dtype == tf.int8)
    assert report["size_bytes"]["int8"] == report["size_bytes"]["float32"] - saved
    assert export_helpers.tensor_bytes(export_dir) == export_helpers.tensor_bytes(exports["float32"][0]) - saved
    # Each int8 weight is within half a quantization step of the float32 weight.
    original = _reference_models(train_dirs)["logistic"].get_layer("logistic").kernel.numpy()
    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    stored = reader.get_tensor("members/0/stored_weights/0/values/.ATTRIBUTES/VARIABLE_VALUE")
    scales = reader.get_tensor("members/0/stored_weights/0/scales/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_allclose(scales, np.abs(original).max(axis=0) / 127, rtol=1e-6)
    assert np.all(np.abs(stored * scales - original) <= scales / 2 + 1e-7)


def test_serve_examples_and_rest_request(exports, train_dirs, validation):
    export_dir, _ = exports[precision_lib.FLOAT32]
    _, videos = validation
    loaded = tf.saved_model.load(export_dir)
    serialized = [records.make_sequence_example(video_id, labels, codes).SerializeToString()
                  for video_id, labels, codes in videos[:4]]
    outputs = loaded.signatures["serve_examples"](example_bytes=tf.constant(serialized))
    assert [value.decode() for value in outputs["id"].numpy()] == ["vid0", "vid1", "vid2", "vid3"]
    frames, num_frames = _padded_inputs(videos[:4])
    expected = _reference_predictions(_reference_models(train_dirs), frames, num_frames)
    np.testing.assert_allclose(outputs["predictions"].numpy(), expected, atol=1e-5)
    order = np.argsort(-expected, axis=1, kind="stable")
    np.testing.assert_array_equal(outputs["top_k_classes"].numpy(), order)
    # The same videos as a TF Serving REST body: padded to a common T beyond max_frames.
    padded, _ = _padded_inputs(videos[:4], max_frames=MAX_FRAMES + 5)
    response = requests.serve_rest_body(loaded, requests.rest_request_body(padded, num_frames))
    np.testing.assert_allclose(response["predictions"], expected, atol=1e-5)
    with pytest.raises(ValueError, match="request input 'rgb' is ragged"):
        body = json.loads(requests.rest_request_body(padded, num_frames))
        body["instances"][0]["rgb"] = body["instances"][0]["rgb"][:3]
        requests.serve_rest_body(loaded, json.dumps(body))


def test_saved_model_cli_run(exports, tmp_path):
    export_dir, _ = exports[precision_lib.FLOAT16]
    inputs = {"rgb": np.zeros((2, 7, 1024), np.float32), "audio": np.zeros((2, 7, 128), np.float32),
              "num_frames": np.array([7, 3], np.int32)}
    outputs = export_helpers.saved_model_cli_run(export_dir, inputs, str(tmp_path))
    loaded = tf.saved_model.load(export_dir)
    expected = loaded.signatures["serving_default"](**inputs)
    for name in ("predictions", "top_k_scores", "top_k_classes"):
        np.testing.assert_allclose(outputs[name], expected[name].numpy(), atol=1e-6)


def test_inference_csv_from_saved_model(exports, train_dirs, validation, tmp_path):
    pattern, videos = validation
    export_dir, _ = exports[precision_lib.FLOAT32]
    predict, data_config = saved_model_predictor.load_saved_model_predictor(export_dir)
    assert (data_config.num_classes, data_config.max_frames) == (NUM_CLASSES, MAX_FRAMES)
    output_file = str(tmp_path / "submission.csv")
    config = InferenceConfig(train_dir="", input_data_pattern=pattern, output_file=output_file,
                             top_k=3, batch_size=4)
    assert video_inference.run_inference(config, predict, data_config) == len(videos)
    frames, num_frames = _padded_inputs(videos)
    expected = _reference_predictions(_reference_models(train_dirs), frames, num_frames)
    with open(output_file) as handle:
        lines = handle.read().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs" and len(lines) == len(videos) + 1
    for line, (video_id, _, _), scores in zip(lines[1:], videos, expected):
        row_id, pairs = line.split(",")
        values = pairs.split(" ")
        assert row_id == video_id
        assert [int(c) for c in values[0::2]] == list(np.argsort(-scores, kind="stable")[:3])
        np.testing.assert_allclose([float(v) for v in values[1::2]],
                                   np.sort(scores)[::-1][:3], rtol=1e-5)
    with pytest.raises(FileNotFoundError, match=r"--saved_model_dir='.*' holds no "
                                                r"saved_model\.pb"):
        saved_model_predictor.load_saved_model_predictor(str(tmp_path))


def test_demo_export_serves_one_rest_request(train_dirs, workdir):
    dirs, _ = train_dirs
    result = demo.demo_export([dirs["video"]], str(workdir / "demo"),
                              min_low_precision_elements=MIN_ELEMENTS)
    assert result["report"]["precision"] == "float16" and result["video_id"] == "random"
    # The request is the random video of the verification (seed 0): compare with the plain model.
    frames, num_frames = validation_data.random_videos(1, MAX_FRAMES)
    model = _reference_models(train_dirs)["video"]
    means = {f"mean_{name}": values.numpy()[:, :num_frames[0]].mean(axis=1)
             for name, values in frames.items()}
    expected = model(means)["predictions"].numpy()[0]
    assert result["top_classes"] == list(np.argsort(-expected, kind="stable"))
    np.testing.assert_allclose(result["top_scores"], np.sort(expected)[::-1], atol=1e-3)


# ------------------------------------------------------------------------- budget, failures


def _leftovers(directory):
    return sorted(name for name in os.listdir(directory) if ".tmp-" in name)


def test_budget_refusal_writes_nothing(train_dirs, workdir):
    output_dir = workdir / "too_big"
    float32_bytes = 4 * (1152 * NUM_CLASSES + NUM_CLASSES)  # the video-level logistic model
    dirs, _ = train_dirs
    config = exporter.ExportConfig(members=[dirs["video"]], output_dir=str(output_dir),
                                   size_budget_mb=float32_bytes / 2 / budget.BYTES_PER_MB)
    with pytest.raises(budget.SizeBudgetError,
                       match=r"the float32 ensemble would take [0-9.]+ MB, over "
                             + re.escape(f"--size_budget_mb={config.size_budget_mb:g}; drop")):
        exporter.export_ensemble(config)
    assert not output_dir.exists() and not _leftovers(workdir)


def test_failed_verification_leaves_no_partial_output(train_dirs, workdir):
    dirs, _ = train_dirs
    output_dir = workdir / "kept"
    output_dir.mkdir()
    earlier = {"saved_model.pb": "earlier export", "export_report.json": "{}"}
    for name, text in earlier.items():  # what --overwrite recognises as an earlier export
        (output_dir / name).write_text(text)
    config = exporter.ExportConfig(members=[dirs["netvlad"]], output_dir=str(output_dir),
                                   precision="int8", min_low_precision_elements=MIN_ELEMENTS,
                                   max_prediction_diff=0.0, overwrite=True)
    with pytest.raises(exporter.PredictionMismatchError, match=r"over the limit 0 "):
        exporter.export_ensemble(config)
    assert {name: (output_dir / name).read_text() for name in os.listdir(output_dir)} == earlier
    assert not _leftovers(workdir)
    with pytest.raises(FileExistsError, match=r"already exists; pass --overwrite"):
        exporter.export_ensemble(exporter.ExportConfig(members=[dirs["netvlad"]],
                                                       output_dir=str(output_dir)))


# Our Gated NetVLAD variables under boliu61's names (its NetVLADModelLF, reference_notes 5).
BOLIU61_NAMES = {
    "rgb_netvlad/cluster_kernel": "video_VLAD/conv2/cluster_weights",
    "rgb_netvlad/centroids": "video_VLAD/cluster_weights2/cluster_weights2",
    "audio_netvlad/cluster_kernel": "audio_VLAD/conv2/cluster_weights",
    "audio_netvlad/centroids": "audio_VLAD/cluster_weights2/cluster_weights2",
    "hidden/kernel": "hidden1_weights/hidden1_weights", "hidden/bias": "hidden1_biases",
    "context_gating/kernel": "gating_weights/gating_weights",
    "moe/gate_kernel": "gates/weights", "moe/expert_kernel": "experts/weights",
    "moe/expert_bias": "experts/biases", "moe/prob_gating_kernel": "gating_prob_weights"}


def test_float16_boliu61_preset_selects_the_four_tensors_of_a_gated_netvlad_member(train_dirs,
                                                                                     workdir):
    from reference import param_counts
    dirs, _ = train_dirs
    member = members_lib.load_member(members_lib.parse_member(dirs["netvlad"] + "@latest", None))
    variables = {v.name.split(":")[0]: v for v in member_module.unique_variables(member.model)}
    selection = precision_lib.Selection(preset=precision_lib.BOLIU61_SELECTION)
    chosen = sorted("tower/model1/" + BOLIU61_NAMES.get(name, name)
                    for name, variable in variables.items() if selection.selects(variable))
    # boliu61's own rule (the variables its --float16_flag creates as float16), as member 1.
    expected = param_counts.boliu_float16_variables(
        ["tower/model1/" + BOLIU61_NAMES.get(name, name) for name in variables])
    assert chosen == sorted(expected) and len(chosen) == 4
    output_dir = workdir / "export_boliu61"
    report = exporter.export_ensemble(exporter.ExportConfig(
        members=[dirs["netvlad"]], output_dir=str(output_dir), precision="float16",
        float16_selection="boliu61"))
    float16 = [name for name, (dtype, _) in export_helpers.saved_dtypes(output_dir).items()
               if dtype == tf.float16]
    assert len(float16) == 4 and report["float16_selection"] == "boliu61"
    assert report["max_abs_prediction_diff"] < 1e-3
    # The size rule with the default minimum keeps every matrix of this tiny member float32.
    size_rule = precision_lib.Selection()
    assert not any(size_rule.selects(variable) for variable in variables.values())
    with pytest.raises(ValueError, match="--float16_selection=boliu61 chooses the float16 "
                                         "tensors; it needs --precision=float16, not int8"):
        exporter.export_ensemble(exporter.ExportConfig(
            members=[dirs["netvlad"]], output_dir=str(workdir / "no"), precision="int8",
            float16_selection="boliu61"))


def test_layer_reading_weights_outside_attributes_is_refused():
    class ListReader(keras.layers.Layer):
        def build(self, shape):
            self.add_weight("kernel", shape=(shape[-1], 4))

        def call(self, inputs):
            return tf.sigmoid(tf.reduce_mean(inputs, axis=1) @ self.weights[0])

    rgb = keras.Input((None, 1024), name="rgb")
    num_frames = keras.Input((), dtype=tf.int32, name="num_frames")
    model = keras.Model({"rgb": rgb, "num_frames": num_frames},
                        {"predictions": ListReader()(rgb)})
    flags = {"max_frames": 5, "feature_names": "rgb", "frame_features": True}
    member = member_module.MemberModule(model, flags, "float16", 100, name="odd")
    ensemble = serving.EnsembleModule([member], [1.0], num_classes=4)
    signature = ensemble.signatures()["serving_default"]
    with pytest.raises(member_module.LowPrecisionFallbackError,
                       match=r"member 'odd': its layers read list_reader/kernel:0"):
        member_module.check_no_float32_reads(signature, [member])


# ------------------------------------------------------------------------------------ tuning


def test_tune_weights_prefers_the_informative_member():
    rng = np.random.default_rng(3)
    labels = (rng.random((200, 8)) < 0.2).astype(np.float32)
    good = np.clip(labels * 0.6 + rng.random(labels.shape) * 0.5, 0, 1)
    noise = rng.random(labels.shape)
    result = tuning.tune_weights([noise, good], labels)
    assert result.weights[1] >= 0.75 and sum(result.weights) == pytest.approx(1.0)
    assert result.gap >= result.equal_weights_gap
    assert result.gap == pytest.approx(metrics.gap(
        result.weights[0] * noise + result.weights[1] * good, labels), abs=1e-6)


def test_subsets_under_budget_are_the_maximal_ones():
    # Sizes 3, 2, 2 under a budget of 4: {0} fits alone, {1, 2} together; {0, 1} is 5.
    assert tuning.maximal_subsets_under_budget([3, 2, 2], 4) == [(0,), (1, 2)]
    labels = np.eye(4, dtype=np.float32)
    perfect = labels * 0.9
    result = tuning.select_under_budget([np.full_like(labels, 0.5), perfect, perfect], labels,
                                        [3, 2, 2], 4)
    assert result.members == [1, 2] and result.gap == pytest.approx(1.0)


def test_members_selected_under_budget(train_dirs, validation, workdir):
    pattern, videos = validation
    dirs, _ = train_dirs
    names = ["logistic", "video", "netvlad"]
    # Each member counts its float16 variables plus a 1 MiB graph allowance: two fit in 2.5 MB.
    report = exporter.export_ensemble(exporter.ExportConfig(
        members=[dirs[name] for name in names], output_dir=str(workdir / "selected"),
        precision="float16", min_low_precision_elements=MIN_ELEMENTS, tune_weights_on=pattern,
        select_under_budget=True, size_budget_mb=2.5))
    candidates = report["selection"]["candidates"]
    assert sorted(sorted(c["members"]) for c in candidates) == sorted(
        sorted([dirs[a], dirs[b]]) for a, b in [("logistic", "video"), ("logistic", "netvlad"),
                                                ("video", "netvlad")])
    best = max(candidates, key=lambda candidate: candidate["gap"])
    assert report["selection"]["chosen"] == best["members"]
    # The export's float32 GAP on the same data is the tuned GAP of the chosen pair.
    assert report["gap_float32"] == pytest.approx(best["gap"], abs=1e-6)
    assert report["verified_videos"] == len(videos)
    assert sum(report["weights"].values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"--select_under_budget needs --tune_weights_on"):
        exporter.export_ensemble(exporter.ExportConfig(
            members=[dirs["video"]], output_dir=str(workdir / "never"), select_under_budget=True))


# ----------------------------------------------------------------------------------- the CLI


def test_cli_exports_with_tuned_weights(train_dirs, validation, workdir):
    dirs, _ = train_dirs
    output_dir = workdir / "cli_export"
    command = [sys.executable, os.path.join(REPO, "export_ensemble.py"),
               f"--members={dirs['logistic']}@last:2,{dirs['video']}", "--float16",
               f"--tune_weights_on={validation[0]}",
               f"--min_low_precision_elements={MIN_ELEMENTS}", f"--output_dir={output_dir}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Exported a float16 ensemble of" in result.stdout
    with open(output_dir / "export_report.json") as handle:
        report = json.load(handle)
    assert f"GAP on {validation[0]}: float32 {report['gap_float32']:.5f}" in result.stdout
    assert [checkpoints.checkpoint_step(path) for path in report["members"][0]["checkpoints"]] \
        == [200, 300]
    assert report["tuning"]["tuned_gap"] >= report["tuning"]["equal_weights_gap"]
    assert report["gap_float32"] == pytest.approx(report["tuning"]["tuned_gap"], abs=1e-6)
    assert sum(report["weights"].values()) == pytest.approx(1.0)


def _config_from(argv):
    flag_values = absl_flags.FlagValues()
    options.define_flags(exporter.ExportConfig, flag_values)
    flag_values(["export_ensemble.py"] + argv)
    return options.from_flags(exporter.ExportConfig, flag_values)


def test_flags_to_config():
    config = _config_from(["--members=a@last:3,b", "--weights=0.6,0.4", "--int8",
                           "--output_dir=out", "--size_budget_mb=512",
                           "--average_checkpoints=1000:3000"])
    assert config.members == ["a@last:3", "b"] and config.weights == [0.6, 0.4]
    assert (config.precision, config.output_dir, config.size_budget_mb) == ("int8", "out", 512)
    assert config.average_checkpoints == "1000:3000" and config.weights is not None
    assert _config_from(["--members=a", "--output_dir=o"]).precision == "float32"
    with pytest.raises(ValueError, match=r"^--float16 and --int8 exclude each other"):
        _config_from(["--members=a", "--output_dir=o", "--float16", "--int8"])
    with pytest.raises(ValueError, match=r"^--weights: 'x' is not a number$"):
        _config_from(["--members=a", "--output_dir=o", "--weights=x"])
    with pytest.raises(ValueError, match=r"--weights has 1 values for 2 --members"):
        exporter.export_ensemble(_config_from(["--members=a,b", "--weights=1",
                                               "--output_dir=/nonexistent/o"]))


@pytest.mark.parametrize("precision", ["float32", "float16", "int8"])
def test_precision_flag(precision, capsys):
    assert _config_from(["--members=a", f"--precision={precision}"]).precision == precision
    assert capsys.readouterr().err == ""


def test_precision_flag_rejects_other_values():
    # The built-in choices first (a precision added later is listed after them).
    with pytest.raises(absl_flags.IllegalFlagValueError,
                       match=re.escape("one of <float32|float16|int8")):
        _config_from(["--members=a", "--precision=fp16"])


@pytest.mark.parametrize("old, precision", [("float16", "float16"), ("int8", "int8")])
def test_deprecated_precision_booleans_print_a_notice(old, precision, capsys):
    assert _config_from(["--members=a", f"--{old}"]).precision == precision
    assert capsys.readouterr().err == (f"warning: --{old} is deprecated; use "
                                       f"--precision={precision}\n")
    # Saying the same thing twice is fine; contradicting --precision is an error.
    assert _config_from(["--members=a", f"--{old}", f"--precision={precision}"]).precision \
        == precision
    with pytest.raises(ValueError, match=rf"^--{old} contradicts --precision=float32: give "
                                         r"only --precision$"):
        _config_from(["--members=a", f"--{old}", "--precision=float32"])
