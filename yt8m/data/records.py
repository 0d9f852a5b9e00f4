"""The YouTube-8M record format (SPEC section 1): feature names, quantization and record builders.

Readers (`yt8m.data.readers`) and writers (`yt8m.synthetic`, tests) share these definitions so the
two sides cannot drift apart.
"""
import numpy as np

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

# The feature streams are shared with the models (which must not load the readers).
from yt8m.features import (DEFAULT_FEATURE_NAMES, DEFAULT_FEATURE_SIZES,  # noqa: F401
                           VIDEO_FEATURE_NAMES)

MAX_QUANTIZED_VALUE = 2.0
MIN_QUANTIZED_VALUE = -2.0
_QUANTIZED_RANGE = MAX_QUANTIZED_VALUE - MIN_QUANTIZED_VALUE
# Starter-code dequantization: x = q * scalar + bias, q in [0, 255].
DEQUANTIZE_SCALE = _QUANTIZED_RANGE / 255.0
DEQUANTIZE_BIAS = _QUANTIZED_RANGE / 512.0 + MIN_QUANTIZED_VALUE

DEFAULT_MAX_FRAMES = 300
DEFAULT_NUM_CLASSES = 3862
SEGMENT_SIZE = 5  # frames per rated segment (2019 challenge)

VOCABULARY_HEADER = ("Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,"
                     "Vertical1,Vertical2,Vertical3,WikiDescription")
SEGMENT_WHITELIST_HEADER = "Index"


def quantize(features):
    """float features -> uint8 codes exactly as the public files store them."""
    # In place on one float64 copy: the generator quantizes every frame it writes.
    values = np.array(features, np.float64)
    np.clip(values, MIN_QUANTIZED_VALUE, MAX_QUANTIZED_VALUE, out=values)
    values -= MIN_QUANTIZED_VALUE
    values *= 255.0 / _QUANTIZED_RANGE
    np.rint(values, out=values)
    return values.astype(np.uint8)


def dequantize_np(codes):
    """uint8 codes -> float32 features (numpy)."""
    return (np.asarray(codes, np.float32) * np.float32(DEQUANTIZE_SCALE)
            + np.float32(DEQUANTIZE_BIAS)).astype(np.float32)


def dequantize(codes):
    """uint8 codes -> float32 features (TensorFlow; used in tf.data or inside a model)."""
    return tf.cast(codes, tf.float32) * DEQUANTIZE_SCALE + DEQUANTIZE_BIAS


def _bytes_feature(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int64_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float_feature(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def make_sequence_example(video_id, labels, frame_features, id_key="id", segments=None):
    """Builds a frame-level `tf.train.SequenceExample`.

    Args:
      video_id: str.
      labels: iterable of int class indices (video-level labels).
      frame_features: dict name -> uint8 array [T, size] (one bytes value per frame).
      id_key: "id" (2018+) or "video_id" (2017 files).
      segments: optional (segment_labels, segment_start_times, segment_scores) parallel arrays,
        one entry per rated (segment, class) pair (2019 validate/test files).
    """
    context = {
        id_key: _bytes_feature([video_id.encode("utf-8")]),
        "labels": _int64_feature(labels),
    }
    if segments is not None:
        seg_labels, seg_starts, seg_scores = segments
        context["segment_labels"] = _int64_feature(seg_labels)
        context["segment_start_times"] = _int64_feature(seg_starts)
        context["segment_scores"] = _float_feature(seg_scores)
    feature_lists = {}
    for name, codes in frame_features.items():
        codes = np.asarray(codes)
        if codes.dtype != np.uint8:
            raise TypeError(f"frame feature {name!r} must be uint8 codes, got {codes.dtype}")
        feature_lists[name] = tf.train.FeatureList(
            feature=[_bytes_feature([frame.tobytes()]) for frame in codes])
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list=feature_lists))


def make_video_example(video_id, labels, mean_features, id_key="id"):
    """Builds a video-level `tf.train.Example` (`mean_rgb`, `mean_audio` as float lists)."""
    feature = {
        id_key: _bytes_feature([video_id.encode("utf-8")]),
        "labels": _int64_feature(labels),
    }
    for name, values in mean_features.items():
        feature[name] = _float_feature(np.asarray(values, np.float32).ravel())
    return tf.train.Example(features=tf.train.Features(feature=feature))
