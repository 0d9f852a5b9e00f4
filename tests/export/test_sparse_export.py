"""Bit-packed sparse weights in the ensemble export (--sparse_weights, issue 19).

The member is a tiny gated NetVLAD model whose large matrices (rank >= 2, >= MIN_ELEMENTS values,
one of them 105 values: not a multiple of 8) have 75% of their values zeroed by magnitude with
numpy, written as train.py writes a train dir. References are the plain Keras model and numpy
(bits read with explicit shifts, values scattered with numpy), never the exporter's code.
"""
import os

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
from yt8m.export import exporter
from yt8m.export import sparse
from yt8m.export import storage
from yt8m.core import files
from yt8m.core import options
from yt8m.training import checkpoints

NUM_CLASSES = 5
MAX_FRAMES = 12
MIN_ELEMENTS = 100
SPARSITY = 0.75
MODEL = "NetVLADModelLF"
HPARAMS = {"netvlad_cluster_size": 3, "netvlad_hidden_size": 7}
PRECISIONS = ("float32", "float16", "int8")


def _bits(packed):
    """uint8 [m] -> 0/1 [8m]: bit k of byte j at position 8j + k (explicit shifts)."""
    packed = np.asarray(packed, np.uint8)
    return ((packed[:, None] >> np.arange(8, dtype=np.uint8)) & 1).reshape(-1)


def _expected_packing(mask):
    """The documented packing computed by hand: byte j = sum_k mask[8j + k] * 2**k."""
    flat = np.asarray(mask, bool).reshape(-1)
    padded = np.zeros(-(-flat.size // 8) * 8, np.int64)
    padded[:flat.size] = flat
    return (padded.reshape(-1, 8) * (2 ** np.arange(8))).sum(axis=1).astype(np.uint8)


def _is_large(variable):
    return (variable.trainable and len(variable.shape) >= 2
            and np.prod(variable.shape) >= MIN_ELEMENTS)


def _prune_by_magnitude(values, sparsity):
    """Zeros the round(sparsity * n) smallest |values| (ties broken by position)."""
    flat = values.reshape(-1).copy()
    flat[np.argsort(np.abs(flat), kind="stable")[:int(round(sparsity * flat.size))]] = 0
    return flat.reshape(values.shape)


def _build_model():
    return frame_level_models.build(MODEL, NUM_CLASSES, feature_names="rgb,audio",
                                    feature_sizes="1024,128", **HPARAMS)


@pytest.fixture(scope="module")
def pruned_member(tmp_path_factory):
    """(train dir, Keras model holding the pruned weights, {variable name: pruned values})."""
    train_dir = str(tmp_path_factory.mktemp("sparse") / "pruned_netvlad")
    files.write_json_atomically(os.path.join(train_dir, "model_flags.json"), {
        "model": MODEL, "feature_names": "rgb,audio", "feature_sizes": "1024,128",
        "frame_features": True, "num_classes": NUM_CLASSES, "max_frames": MAX_FRAMES,
        "label_loss": "CrossEntropyLoss", "hparams": HPARAMS})
    model = _build_model()
    rng = np.random.default_rng(5)
    pruned = {}
    for variable in model.variables:
        value = variable.numpy() + rng.normal(0, 0.3, variable.shape).astype(np.float32)
        if "variance" in variable.name:
            value = np.abs(value)
        if _is_large(variable):
            value = _prune_by_magnitude(value, SPARSITY)
            pruned[variable.name] = value
        variable.assign(value)
    checkpoints.make_checkpoint_manager(
        tf.train.Checkpoint(model=model, optimizer=keras.optimizers.Adam()), train_dir, 1).save(
            checkpoint_number=1)
    assert len(pruned) == 6 and any(values.size % 8 for values in pruned.values())
    return train_dir, model, pruned


@pytest.fixture(scope="module")
def validation(tmp_path_factory):
    """A validation file of 9 videos (some longer than MAX_FRAMES) and its padded inputs/labels."""
    rng = np.random.default_rng(9)
    path = str(tmp_path_factory.mktemp("sparse_data") / "validate0000.tfrecord")
    frames = {name: np.zeros((9, MAX_FRAMES, size), np.float32)
              for name, size in zip(records.DEFAULT_FEATURE_NAMES, records.DEFAULT_FEATURE_SIZES)}
    num_frames = np.zeros(9, np.int32)
    labels = np.zeros((9, NUM_CLASSES), np.float32)
    with tf.io.TFRecordWriter(path) as writer:
        for row in range(9):
            length = int(rng.integers(1, MAX_FRAMES + 5))
            codes = {name: rng.integers(0, 256, (length, size), dtype=np.uint8)
                     for name, size in zip(records.DEFAULT_FEATURE_NAMES,
                                           records.DEFAULT_FEATURE_SIZES)}
            video_labels = [int(label) for label in rng.choice(NUM_CLASSES, 2, replace=False)]
            writer.write(records.make_sequence_example(f"v{row}", video_labels, codes)
                         .SerializeToString())
            num_frames[row] = min(length, MAX_FRAMES)
            for name in frames:
                frames[name][row, :num_frames[row]] = records.dequantize_np(
                    codes[name][:num_frames[row]])
            labels[row, video_labels] = 1.0
    return path, frames, num_frames, labels


@pytest.fixture(scope="module")
def exports(pruned_member, validation, tmp_path_factory):
    """{name: (export dir, report)}: the dense float32 export and a sparse export per precision."""
    train_dir, _, _ = pruned_member
    root = tmp_path_factory.mktemp("sparse_exports")
    result = {}
    for name, precision, sparse_weights in [("dense", "float32", 0.0)] + [
            (f"sparse_{precision}", precision, 0.5) for precision in PRECISIONS]:
        config = exporter.ExportConfig(
            members=[train_dir], output_dir=str(root / name), precision=precision,
            min_low_precision_elements=MIN_ELEMENTS, sparse_weights=sparse_weights,
            eval_data_pattern=validation[0])
        result[name] = (config.output_dir, exporter.export_ensemble(config))
    return result


def _keras_predictions(model, frames, num_frames, replaced=None):
    """The Keras model's predictions, with some variables' values replaced for the call."""
    originals = {variable.name: variable.numpy() for variable in model.variables}
    try:
        for variable in model.variables:
            if replaced and variable.name in replaced:
                variable.assign(replaced[variable.name])
        return model(dict(frames, num_frames=num_frames))["predictions"].numpy()
    finally:
        for variable in model.variables:
            variable.assign(originals[variable.name])


def _served(export_dir, frames, num_frames):
    loaded = tf.saved_model.load(export_dir)
    return loaded.signatures["serving_default"](**frames, num_frames=num_frames)["predictions"]


def _densified(mask_bits, values, scales, shape):
    dense = np.zeros(int(np.prod(shape)), np.float32)
    dense[mask_bits[:dense.size].astype(bool)] = values.astype(np.float32)
    dense = dense.reshape(shape)
    return dense if scales is None else dense * scales


# ------------------------------------------------------------------------------- bit packing


@pytest.mark.parametrize("shape", [(1,), (7,), (9,), (31,), (33,), (13, 7), (3, 5, 11), (1000,)])
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_packing_round_trip_odd_sizes(shape, density):
    rng = np.random.default_rng(int(np.prod(shape)) + int(10 * density))
    values = rng.normal(size=shape).astype(np.float32)
    values[rng.random(shape) >= density] = 0
    mask = values != 0
    packed = sparse.pack_mask(mask)
    np.testing.assert_array_equal(packed, _expected_packing(mask))
    assert packed.dtype == np.uint8 and packed.size == -(-values.size // 8)
    np.testing.assert_array_equal(
        sparse.unpack_mask(tf.constant(packed), values.size).numpy(), mask.reshape(-1))
    for dtype in (np.float32, np.float16, np.int8):
        stored = (values * 50).astype(dtype) if dtype == np.int8 else values.astype(dtype)
        dense = sparse.densify(tf.constant(sparse.pack_mask(stored != 0)),
                               tf.constant(stored[stored != 0]), shape)
        assert dense.dtype == dtype
        np.testing.assert_array_equal(dense.numpy(), stored)


def _variable(values, name="layer/kernel"):
    return tf.Variable(np.asarray(values, np.float32), name=name)


def test_storage_plan_thresholds():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(40, 9)).astype(np.float32)  # 360 values: 45 bytes of mask bits
    pruned = _prune_by_magnitude(values, SPARSITY)        # 270 zeros, 90 non-zeros
    plan = storage.plan(_variable(pruned), "float32", MIN_ELEMENTS, 0.5)
    assert (plan.group, plan.num_zeros) == ("sparse", 270)
    assert (plan.stored_bytes, plan.dense_bytes) == (45 + 90 * 4, 360 * 4)
    assert storage.plan(_variable(pruned), "float16", MIN_ELEMENTS, 0.5).stored_bytes == 45 + 90 * 2
    # int8: codes for the 90 non-zeros and one float32 scale per output channel (9).
    assert storage.plan(_variable(pruned), "int8", MIN_ELEMENTS, 0.5).stored_bytes == 45 + 90 + 36
    # Below the threshold: dense at the precision.
    plan = storage.plan(_variable(pruned), "float16", MIN_ELEMENTS, 0.8)
    assert (plan.group, plan.stored_bytes) == ("low_precision", 720)
    assert storage.plan(_variable(pruned), "float32", MIN_ELEMENTS, 0.0).group == "float32"
    # 10% zeros: above the threshold, but int8 sparse would be larger (45 + 324 + 36 > 360 + 36).
    some_zeros = _prune_by_magnitude(values, 0.1)
    assert storage.plan(_variable(some_zeros), "int8", MIN_ELEMENTS, 0.05).group == "low_precision"
    assert storage.plan(_variable(some_zeros), "float32", MIN_ELEMENTS, 0.05).group == "sparse"
    # Small matrices and biases stay float32 whatever their zeros.
    assert storage.plan(_variable(np.zeros((9, 9))), "float32", MIN_ELEMENTS, 0.5).group == \
        "float32"
    assert storage.plan(_variable(np.zeros(400), "layer/bias"), "int8", MIN_ELEMENTS,
                        0.5).group == "float32"


# ------------------------------------------------------------------------------------ exports


def test_sparse_float32_export_equals_the_dense_model(exports, pruned_member, validation):
    export_dir, report = exports["sparse_float32"]
    _, model, pruned = pruned_member
    _, frames, num_frames, labels = validation
    expected = _keras_predictions(model, frames, num_frames)
    served = _served(export_dir, frames, num_frames).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-6, rtol=0)
    assert report["max_abs_prediction_diff"] <= 1e-6
    # The six pruned matrices are stored sparse (uint8 bits + float32 non-zeros) and nothing else.
    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    dtypes = reader.get_variable_to_dtype_map()
    assert sum(dtype == tf.uint8 for dtype in dtypes.values()) == len(pruned)
    assert sorted(row["variable"] for row in report["sparse_tensors"]) == sorted(pruned)
    for row in report["sparse_tensors"]:
        values = pruned[row["variable"]]
        assert row["sparsity"] == pytest.approx(np.mean(values == 0), abs=1e-9)
        assert row["dense_bytes"] == 4 * values.size
        assert row["stored_bytes"] == -(-values.size // 8) + 4 * np.count_nonzero(values)
    groups = {row["group"]: row for row in report["tensor_groups"]}
    assert set(groups) == {"sparse", "float32"} and groups["sparse"]["tensors"] == len(pruned)
    assert groups["sparse"]["sparsity"] == pytest.approx(
        sum(np.sum(v == 0) for v in pruned.values()) / sum(v.size for v in pruned.values()))
    # GAP before (the dense model) and after (the export) on the validation data.
    assert report["gap_float32"] == pytest.approx(metrics.gap(expected, labels, top_k=20),
                                                  abs=1e-6)
    assert report["gap_exported"] == pytest.approx(metrics.gap(served, labels, top_k=20),
                                                   abs=1e-6)


def test_sparse_float16_export_equals_the_model_with_float16_weights(exports, pruned_member,
                                                                     validation):
    """The only change from the dense model is each large matrix rounded to float16: against a
    Keras model whose matrices are rounded the same way in numpy the export agrees to float32
    rounding (1e-6); against the unrounded model, within the float16 export limit (1e-3)."""
    export_dir, report = exports["sparse_float16"]
    _, model, pruned = pruned_member
    _, frames, num_frames, _ = validation
    rounded = {name: values.astype(np.float16).astype(np.float32)
               for name, values in pruned.items()}
    served = _served(export_dir, frames, num_frames).numpy()
    np.testing.assert_allclose(served, _keras_predictions(model, frames, num_frames, rounded),
                               atol=1e-6, rtol=0)
    assert np.max(np.abs(served - _keras_predictions(model, frames, num_frames))) < 1e-3
    assert report["max_abs_prediction_diff"] < 1e-3
    assert {row["precision"] for row in report["sparse_tensors"]} == {"float16"}


def test_sparse_int8_export_against_numpy_dequantization(exports, pruned_member, validation):
    """Mask bits, int8 codes and scales read back from the SavedModel, rebuilt with numpy."""
    export_dir, _ = exports["sparse_int8"]
    _, model, pruned = pruned_member
    _, frames, num_frames, _ = validation
    loaded = tf.saved_model.load(export_dir)
    rebuilt = {}
    for weight in loaded.members[0].stored_weights:
        name = weight.mask_bits.name.replace("_mask_bits:0", ":0")
        assert weight.values.dtype == tf.int8 and weight.scales.dtype == tf.float32
        rebuilt[name] = _densified(_bits(weight.mask_bits.numpy()), weight.values.numpy(),
                                   weight.scales.numpy(), pruned[name].shape)
    assert sorted(rebuilt) == sorted(pruned)
    for name, values in pruned.items():  # zeros stay exact zeros; others within half a step
        assert np.all(rebuilt[name][values == 0] == 0)
        scales = np.abs(values).max(axis=tuple(range(values.ndim - 1))) / 127
        assert np.all(np.abs(rebuilt[name] - values) <= scales / 2 + 1e-7)
    served = loaded.signatures["serving_default"](**frames, num_frames=num_frames)["predictions"]
    np.testing.assert_allclose(served.numpy(), _keras_predictions(model, frames, num_frames,
                                                                  rebuilt), atol=1e-6, rtol=0)


def test_sparse_exports_are_smaller_by_the_predicted_bytes(exports, pruned_member):
    """Each pruned matrix of n values, z of them zero, takes ceil(n / 8) + (n - z) * b bytes (+ 4
    per output channel for the int8 scales) instead of 4 n in the dense float32 export: the saved
    tensors shrink by exactly that. On disk the graph also holds one densify function per sparse
    matrix, a fixed cost of about 9-12 kB each (bounded at 16 kB; not a per-value cost)."""
    dense_dir, dense_report = exports["dense"]
    _, _, pruned = pruned_member
    for precision, size in {"float32": 4, "float16": 2, "int8": 1}.items():
        export_dir, report = exports[f"sparse_{precision}"]
        predicted = sum(
            4 * v.size - (-(-v.size // 8) + np.count_nonzero(v) * size
                          + (4 * v.shape[-1] if precision == "int8" else 0))
            for v in pruned.values())
        assert export_helpers.tensor_bytes(dense_dir) - export_helpers.tensor_bytes(export_dir) == predicted, precision
        assert report["size_bytes"][precision] == dense_report["size_bytes"]["float32"] - predicted
        assert (report["on_disk_bytes"]
                <= dense_report["on_disk_bytes"] - predicted + 16_000 * len(pruned)), precision


def test_sparse_export_densifies_in_the_session_loader(exports, tmp_path):
    """saved_model_cli runs the SavedModel in a TF1 session (as TF Serving does): the dense copies
    are filled by the SavedModel's init op after the variables are restored."""
    export_dir, _ = exports["sparse_float16"]
    inputs = {"rgb": np.linspace(-1, 1, 2 * 7 * 1024, dtype=np.float32).reshape(2, 7, 1024),
              "audio": np.linspace(1, -1, 2 * 7 * 128, dtype=np.float32).reshape(2, 7, 128),
              "num_frames": np.array([7, 3], np.int32)}
    outputs = export_helpers.saved_model_cli_run(export_dir, inputs, str(tmp_path))
    expected = tf.saved_model.load(export_dir).signatures["serving_default"](**inputs)
    np.testing.assert_allclose(outputs["predictions"], expected["predictions"].numpy(), atol=1e-6)


# --------------------------------------------------------------------------------- the config


def test_sparse_weights_flag_and_errors(pruned_member, tmp_path):
    flag_values = absl_flags.FlagValues()
    options.define_flags(exporter.ExportConfig, flag_values)
    flag_values(["export_ensemble.py", "--members=a", "--output_dir=o", "--precision=float16",
                 "--sparse_weights=0.5"])
    config = options.from_flags(exporter.ExportConfig, flag_values)
    assert (config.sparse_weights, config.precision) == (0.5, "float16")
    with pytest.raises(absl_flags.IllegalFlagValueError, match="sparse_weights"):
        flag_values(["export_ensemble.py", "--sparse_weights=1.5"])
    train_dir, _, _ = pruned_member
    with pytest.raises(ValueError, match=r"--sparse_weights must be a fraction of zeros in "
                                         r"\[0, 1\] \(0: off\), got -0\.1"):
        exporter.export_ensemble(exporter.ExportConfig(
            members=[train_dir], output_dir=str(tmp_path / "never"), sparse_weights=-0.1))
    assert not (tmp_path / "never").exists()
