"""Low-precision storage of weight matrices (SPEC 6): float16, or per-channel int8 with float scales.

Each --precision is one `Precision` record in `_PRECISIONS` (stored element type, quantization,
range check, per-channel scales, default prediction bound); the storage, the byte counts, the
sparse storage and the exporter's options all follow the records, so a new precision is a record.

A `StoredWeight` is a tf.Module that owns the variables written to the SavedModel in place of one
float32 weight matrix, and `read()` returns the float32 tensor the model computes with. The
values stay variables (not graph constants): a graph proto over 2 GB cannot be serialised, and a
checkpoint-backed export loads lazily.

Which variables get the low precision (a `Selection`):
- "size" (the default): trainable floating variables of rank >= 2 (kernels, centroids, gating
  matrices) with at least `min_elements` values. Biases and batch-norm statistics (rank 1, or not
  trainable) stay float32, as in the paper.
- "boliu61": exactly the four matrices boliu61/youtube-8m's --float16_flag creates as float16 (the
  paper's code): the hidden layer after the pooling (hidden1_weights), the MoE classifier's gate
  and expert matrices (gates/weights, experts/weights) and its probability gating
  (gating_prob_weights), whatever their size; the NetVLAD cluster weights and centroids, the
  context gating and every bias stay float32. A member without a MoE classifier gets only its
  hidden layer.
"""
import dataclasses
from typing import Callable

import numpy as np

import yt8m  # noqa: F401
import tensorflow as tf
from yt8m.core import errors

FLOAT32 = "float32"
FLOAT16 = "float16"
INT8 = "int8"

# 16384 values = 64 KiB in float32: below that the saving is not worth a cast per call.
DEFAULT_MIN_ELEMENTS = 16384

SIZE_SELECTION = "size"
BOLIU61_SELECTION = "boliu61"
SELECTIONS = (SIZE_SELECTION, BOLIU61_SELECTION)
# Our variables in the roles of boliu61's float16 tensors: hidden1_weights/hidden1_weights,
# gates/weights, experts/weights, gating_prob_weights (layer "hidden", MoeClassifier "moe").
BOLIU61_VARIABLES = ("hidden/kernel", "moe/gate_kernel", "moe/expert_kernel",
                     "moe/prob_gating_kernel")

_FLOAT16_MAX = float(np.finfo(np.float16).max)
_INT8_LEVELS = 127  # symmetric range [-127, 127]: zero is exact and the scale is max|w| / 127


def _representable(values, name):
    del values, name


@dataclasses.dataclass(frozen=True)
class Precision:
    """How a large weight matrix is stored at one --precision: its elements as `element_dtype`,
    optionally with one float32 scale per output channel; read back as float32 elements x scales.

    quantize: float32 array -> (stored elements, float32 scales [C] or None), without range checks
      (sizes are computed for every precision; the check belongs to the export).
    check: (values, variable name) -> None; raises ValueError when the values cannot be stored.
    """
    name: str
    help: str
    element_dtype: str
    quantize: Callable
    max_prediction_diff: float  # default --max_prediction_diff of an export at this precision
    per_channel_scales: bool = False
    check: Callable = _representable

    def stored_bytes(self, num_elements, channels):
        """Bytes of `num_elements` stored elements (and the scales of `channels` channels)."""
        scale_bytes = 4 * channels if self.per_channel_scales else 0
        return num_elements * tf.as_dtype(self.element_dtype).size + scale_bytes


def check_precision(precision):
    if precision not in _PRECISIONS:
        raise errors.InvalidInputError(
            f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def get(precision):
    return _PRECISIONS[check_precision(precision)]


def _is_matrix(variable):
    return (variable.trainable and variable.dtype.is_floating and variable.shape.rank is not None
            and variable.shape.rank >= 2)


def is_low_precision_candidate(variable, min_elements):
    """True for the weight matrices the size rule selects (see the module docstring)."""
    return _is_matrix(variable) and variable.shape.num_elements() >= min_elements


def is_boliu61_variable(variable):
    """True for the variables in the roles of boliu61's four float16 tensors."""
    path = variable.name.split(":")[0]
    return _is_matrix(variable) and any(path == name or path.endswith("/" + name)
                                        for name in BOLIU61_VARIABLES)


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which variables a low-precision export stores in low precision (module docstring)."""
    min_elements: int = DEFAULT_MIN_ELEMENTS  # of the size rule
    preset: str = SIZE_SELECTION

    def __post_init__(self):
        if self.preset not in SELECTIONS:
            raise ValueError(f"float16 selection {self.preset!r} is not one of "
                             f"{', '.join(SELECTIONS)}")

    def selects(self, variable):
        if self.preset == BOLIU61_SELECTION:
            return is_boliu61_variable(variable)
        return is_low_precision_candidate(variable, self.min_elements)


def as_selection(selection):
    """A Selection from a Selection or a minimum element count (the size rule)."""
    return selection if isinstance(selection, Selection) else Selection(int(selection))


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


def _float16_quantize(values):
    with np.errstate(over="ignore"):  # out of range: inf, which `_float16_check` refuses
        return np.asarray(values, np.float32).astype(np.float16), None


def _float16_check(values, name):
    values = np.asarray(values, np.float32)
    if np.any(np.abs(values) > _FLOAT16_MAX):
        raise errors.InvalidInputError(
            f"variable {name} holds values beyond the float16 range "
            f"(max |w| = {float(np.max(np.abs(values))):g} > {_FLOAT16_MAX:g}); export it "
            "with --precision=int8 or raise --min_low_precision_elements above its size")


# The precisions of --precision, in the order its help lists them. A new one: a record here.
_PRECISIONS = {precision.name: precision for precision in (
    Precision(FLOAT32, "kept as they are", "float32",
              lambda values: (np.asarray(values, np.float32), None), max_prediction_diff=1e-5),
    Precision(FLOAT16, "float16 (2 bytes a value)", "float16", _float16_quantize,
              max_prediction_diff=1e-3, check=_float16_check),  # the bound for float16
    # Weight-only per-channel int8; its bound measured in docs/export.md.
    Precision(INT8, "per-channel int8 with float32 scales", "int8", int8_quantize,
              max_prediction_diff=2e-2, per_channel_scales=True),
)}
PRECISIONS = tuple(_PRECISIONS)


def encode(values, precision, name):
    """float32 array -> (per-element array as stored at `precision`, float32 scales [C] or None);
    an error naming the variable when a value cannot be stored. `decode` is the inverse in TF."""
    chosen = get(precision)
    chosen.check(values, name)
    return chosen.quantize(values)


def decode(elements, scales=None):
    """What the model computes with: the stored elements as float32, times the scales."""
    values = tf.cast(elements, tf.float32)
    return values if scales is None else values * scales


class StoredWeight(tf.Module):
    """A float32 matrix stored at a lower precision (`values`, and `scales` where the precision
    has them), read back as float32 where the model uses it."""

    def __init__(self, variable, precision):
        super().__init__(name=None)
        elements, scales = encode(variable.numpy(), precision, variable.name)
        self.values = tf.Variable(elements, trainable=False,
                                  name=storage_name(variable, precision))
        self.scales = (None if scales is None else
                       tf.Variable(scales, trainable=False,
                                   name=storage_name(variable, f"{precision}_scales")))

    def read(self):
        return decode(self.values, self.scales)


def make_stored_weight(variable, precision):
    """The low-precision storage of `variable` (any precision but float32)."""
    if check_precision(precision) == FLOAT32:
        raise ValueError("float32 weights are kept as they are: no stored weight to make")
    return StoredWeight(variable, precision)


def stored_bytes(shape, precision):
    """Bytes the SavedModel spends on one weight matrix of `shape` at `precision`."""
    return get(precision).stored_bytes(int(np.prod(shape)), int(shape[-1]))
