"""Datasets for training, evaluation and inference (over yt8m.data.readers), and the mapping from
a reader batch to the model's input dict.
"""
import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.data import bucketing, readers
from yt8m.core import model_flags as model_flags_lib
from yt8m.core.config import DataConfig
from yt8m.core import errors

NUM_FRAMES = "num_frames"


def require_files(pattern, flag_name):
    """The files of a data-pattern flag; errors name the flag."""
    if not pattern:
        raise errors.InvalidInputError(f"{flag_name} is empty: give a glob of TFRecord files")
    try:
        return readers.list_files(pattern)
    except FileNotFoundError as error:
        raise errors.MissingInputError(
            f"{flag_name}={pattern!r} matches no file ({error})") from None


def data_config_from_model_flags(model_flags, segment_labels, num_readers, frame_buckets=()):
    """The DataConfig a train dir's model reads (feature names/sizes come from model_flags.json;
    bucketing is a reading choice of the caller, not part of the model)."""
    names, sizes = model_flags_lib.features(model_flags)
    return DataConfig(
        feature_names=names, feature_sizes=sizes,
        frame_features=bool(model_flags["frame_features"]),
        segment_labels=bool(segment_labels),
        num_classes=int(model_flags["num_classes"]),
        max_frames=int(model_flags["max_frames"]),
        num_readers=int(num_readers),
        frame_buckets=tuple(frame_buckets))


def _dataset(files, data, batch_size, **reading):
    try:
        return _reader_dataset(files, data, batch_size, **reading)
    except IsADirectoryError as error:  # the readers stat every file first
        raise errors.InvalidInputError(
            f"{error}: the data pattern matched it; give a pattern of TFRecord files only"
        ) from None


def _reader_dataset(files, data, batch_size, *, shuffle, num_epochs, seed, dequantize,
                    drop_remainder, shard=None):
    common = dict(num_classes=data.num_classes, feature_names=data.feature_names,
                  feature_sizes=data.feature_sizes, shuffle=shuffle, num_epochs=num_epochs,
                  seed=seed, drop_remainder=drop_remainder, num_parallel_reads=data.num_readers,
                  shard=shard)
    if data.frame_buckets and (data.segment_labels or not data.frame_features):
        raise errors.InvalidInputError(
            "--frame_buckets applies to frame-level videos (--frame_features); "
            "segments (--segment_labels) and video-level means have no frame axis "
            "to bucket")
    if data.segment_labels:
        if not data.frame_features:
            raise errors.InvalidInputError(
                "--segment_labels needs frame-level data and a frame-level model "
                "(--frame_features)")
        return readers.segment_dataset(files, batch_size, mode="rated", dequantize=dequantize,
                                       **common)
    if data.frame_features:
        return readers.frame_dataset(
            files, batch_size, max_frames=data.max_frames, dequantize=dequantize,
            frame_buckets=bucketing.parse_boundaries(data.frame_buckets, data.max_frames),
            **common)
    return readers.video_dataset(files, batch_size, **common)


def training_dataset(files, data, batch_size, num_epochs, seed=None, dequantize=False,
                     shard=None):
    """Shuffled, `num_epochs` passes, full batches only (they split evenly over replicas).

    `batch_size` is what one step of this process consumes: the global batch, or this worker's
    share of it when `shard=(worker index, workers)` gives each worker its own part of the data
    (multi-worker training: yt8m.training.distribution.input_shard).
    With dequantize=False frame features stay uint8 (4x less to copy to the devices); the train
    step dequantizes them (`model_inputs`).
    """
    return _dataset(files, data, batch_size, shuffle=True, num_epochs=num_epochs, seed=seed,
                    dequantize=dequantize, drop_remainder=True, shard=shard)


def evaluation_dataset(files, data, batch_size):
    """One pass in file order, every example (last batch may be smaller)."""
    return _dataset(files, data, batch_size, shuffle=False, num_epochs=1, seed=None,
                    dequantize=True, drop_remainder=False)


def inference_dataset(files, data, batch_size):
    """Like evaluation_dataset; test files carry no labels, which the readers accept."""
    return evaluation_dataset(files, data, batch_size)


def model_inputs(batch, data):
    """Reader batch -> the model's input dict (feature names, plus num_frames at frame level).

    uint8 frame features (readers with dequantize=False) are dequantized here, inside the step,
    exactly as the reader would have (padding frames set to 0).
    """
    features = {}
    for name in data.feature_names:
        value = batch[name]
        if value.dtype == tf.uint8:
            value = readers.dequantize_padded(value, batch[NUM_FRAMES])
        features[name] = value
    if data.frame_features:
        features[NUM_FRAMES] = batch[NUM_FRAMES]
    return features
