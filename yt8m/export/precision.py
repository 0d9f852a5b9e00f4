"""Low-precision storage of weight matrices (SPEC 6): float16, or per-channel int8 with float scales.

A `StoredWeight` is a tf.Module that owns the variables written to the SavedModel in place of one
float32 weight matrix, and `read()` returns the float32 tensor the model computes with. The
values stay variables (not graph constants): a graph proto over 2 GB cannot be serialised, and a
checkpoint-backed export loads lazily.

Which variables get the low precision: trainable floating variables of rank >= 2 (kernels,
centroids, gating matrices) with at least `min_elements` values. Biases and batch-norm statistics
(rank 1, or not trainable) stay float32, as in the paper.
"""
import numpy as np

import yt8m  # noqa: F401
import tensorflow as tf
from yt8m.core import errors

FLOAT32 = "float32"
FLOAT16 = "float16"
INT8 = "int8"
PRECISIONS = (FLOAT32, FLOAT16, INT8)

# 16384 values = 64 KiB in float32: below that the saving is not worth a cast per call.
DEFAULT_MIN_ELEMENTS = 16384

_FLOAT16_MAX = float(np.finfo(np.float16).max)
_INT8_LEVELS = 127  # symmetric range [-127, 127]: zero is exact and the scale is max|w| / 127


def check_precision(precision):
    if precision not in PRECISIONS:
        raise errors.InvalidInputError(
            f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def is_low_precision_candidate(variable, min_elements):
    """True for the weight matrices the low precision applies to (see the module docstring)."""
    return (variable.trainable and variable.dtype.is_floating and variable.shape.rank is not None
            and variable.shape.rank >= 2 and variable.shape.num_elements() >= min_elements)


def storage_name(variable, suffix):
    return variable.name.split(":")[0] + "_" + suffix


def int8_quantize(values):
    """float array [..., C] -> (int8 codes, float32 scales [C]) per output channel (last axis).

    codes = round(w / scale) with scale = max|w| / 127 over every axis but the last, so that
    |w - codes * scale| <= scale / 2 elementwise. An all-zero channel gets scale 1.
    """
    values = np.asarray(values, np.float32)
    reduce_axes = tuple(range(values.ndim - 1))
    max_abs = np.max(np.abs(values), axis=reduce_axes)
    scales = np.where(max_abs > 0, max_abs / _INT8_LEVELS, 1.0).astype(np.float32)
    codes = np.clip(np.round(values / scales), -_INT8_LEVELS, _INT8_LEVELS).astype(np.int8)
    return codes, scales


def int8_dequantize(codes, scales):
    return np.asarray(codes, np.float32) * np.asarray(scales, np.float32)


def to_float16(values, name):
    """float32 array -> float16 array; an error naming the variable when a value is out of range."""
    values = np.asarray(values, np.float32)
    if np.any(np.abs(values) > _FLOAT16_MAX):
        raise errors.InvalidInputError(
            f"variable {name} holds values beyond the float16 range "
            f"(max |w| = {float(np.max(np.abs(values))):g} > {_FLOAT16_MAX:g}); export it "
            "with --precision=int8 or raise --min_low_precision_elements above its size")
    return values.astype(np.float16)


def encode(values, precision, name):
    """float32 array -> (per-element array as stored at `precision`, float32 scales [C] or None).

    float32: the values; float16: the values rounded to float16; int8: the codes of
    `int8_quantize` and their per-channel scales. `decode` is the inverse in TF ops.
    """
    check_precision(precision)
    if precision == INT8:
        return int8_quantize(values)
    if precision == FLOAT16:
        return to_float16(values, name), None
    return np.asarray(values, np.float32), None


def decode(elements, scales=None):
    """What the model computes with: the stored elements as float32, times the int8 scales."""
    values = tf.cast(elements, tf.float32)
    return values if scales is None else values * scales


class Float16Weight(tf.Module):
    """A float32 matrix stored as a float16 variable and cast back to float32 where it is read."""

    def __init__(self, variable):
        super().__init__(name=None)
        self.values = tf.Variable(to_float16(variable.numpy(), variable.name), trainable=False,
                                  name=storage_name(variable, "float16"))

    def read(self):
        return decode(self.values)

    def reference_numpy(self):
        """What `read()` returns, computed in numpy (tests, error bounds)."""
        return self.values.numpy().astype(np.float32)


class Int8Weight(tf.Module):
    """Weight-only int8: int8 codes per element and one float32 scale per output channel."""

    def __init__(self, variable):
        super().__init__(name=None)
        codes, scales = int8_quantize(variable.numpy())
        self.codes = tf.Variable(codes, trainable=False, name=storage_name(variable, "int8"))
        self.scales = tf.Variable(scales, trainable=False,
                                  name=storage_name(variable, "int8_scales"))

    def read(self):
        return decode(self.codes, self.scales)

    def reference_numpy(self):
        return int8_dequantize(self.codes.numpy(), self.scales.numpy())


_STORAGE_CLASSES = {FLOAT16: Float16Weight, INT8: Int8Weight}


def make_stored_weight(variable, precision):
    """The low-precision storage of `variable` (precision float16 or int8)."""
    check_precision(precision)
    if precision == FLOAT32:
        raise ValueError("float32 weights are kept as they are: no stored weight to make")
    return _STORAGE_CLASSES[precision](variable)


def stored_bytes(shape, precision):
    """Bytes the SavedModel spends on one weight matrix of `shape` at `precision`."""
    num_elements = int(np.prod(shape))
    if precision == FLOAT32:
        return 4 * num_elements
    if precision == FLOAT16:
        return 2 * num_elements
    check_precision(precision)
    return num_elements + 4 * int(shape[-1])  # int8 codes + float32 scale per channel
