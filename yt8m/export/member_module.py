"""One ensemble member as a tf.Module: its Keras model computing with low-precision weights.

How the low precision gets in without per-model code: the member's tf_keras model is rebuilt and
filled with float32 weights as usual. Each large weight matrix then gets a `StoredWeight`
(float16 or int8 variables, or bit-packed sparse storage: yt8m.export.storage). While the
member's forward runs (inside the serving tf.function), every layer attribute that holds one of
those float32 variables (`Dense.kernel`, a NetVLAD layer's cluster weights, ...) temporarily
holds the float32 tensor read from the low-precision storage instead, so the layers' own `call`
code computes with it. Afterwards the attributes are restored. This works for any layer that
reads its weights through attributes, which is what `add_weight` + `self.x = ...` gives;
`check_no_float32_reads` verifies it on the traced graph, so a layer that reads its weights some
other way is refused rather than silently exported in float32.

The module tracks only what the SavedModel must hold: the low-precision storage and the variables
that stay float32. The Keras model itself is held untracked (its float32 copies of the large
matrices must not be saved).
"""
import contextlib

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.export import precision as precision_lib
from yt8m.export import storage
from yt8m.core import errors

NUM_FRAMES = "num_frames"
VIDEO_LEVEL_PREFIX = "mean_"


class Untracked:
    """Holds Python objects on a tf.Module without making them part of its SavedModel."""

    def __init__(self, **values):
        self.__dict__.update(values)


class LowPrecisionFallbackError(errors.InvalidInputError):
    pass


def unique_variables(model):
    seen, unique = set(), []
    for variable in model.variables:
        if variable.ref() not in seen:
            seen.add(variable.ref())
            unique.append(variable)
    return unique


@contextlib.contextmanager
def substituted_weights(model, replacements):
    """Makes every layer attribute holding a variable of `replacements` (ref -> tensor) hold the
    tensor instead, for the duration of the block."""
    patched = []
    try:
        for layer in [model] + list(model.submodules):
            for attribute, value in list(vars(layer).items()):
                if isinstance(value, tf.Variable) and value.ref() in replacements:
                    replacement = replacements[value.ref()]
                    if hasattr(value, "true_dtype"):
                        # A mixed-precision layer's variable (Keras AutoCastVariable) reads in
                        # the layer's compute dtype.
                        replacement = tf.cast(replacement, layer.compute_dtype)
                    # object.__setattr__: Keras' own __setattr__ would untrack the variable.
                    object.__setattr__(layer, attribute, replacement)
                    patched.append((layer, attribute, value))
        yield
    finally:
        for layer, attribute, value in reversed(patched):
            object.__setattr__(layer, attribute, value)


def _fit_frames(frames, num_frames_in_model):
    """Pads or truncates [B, T, D] to the model's fixed frame count (None: leaves T alone)."""
    if num_frames_in_model is None:
        return frames
    frames = frames[:, :num_frames_in_model]
    missing = num_frames_in_model - tf.shape(frames)[1]
    frames = tf.pad(frames, [[0, 0], [0, missing], [0, 0]])
    return tf.ensure_shape(frames, [None, num_frames_in_model, frames.shape[-1]])


def masked_frame_mean(frames, num_frames):
    """Mean over the first num_frames frames of each video (0 for a video without frames)."""
    mask = tf.sequence_mask(num_frames, tf.shape(frames)[1], dtype=frames.dtype)[:, :, None]
    total = tf.reduce_sum(frames * mask, axis=1)
    count = tf.maximum(tf.cast(num_frames, frames.dtype), 1.0)[:, None]
    return total / count


def model_input_names(model_flags):
    """The model's input keys (docs/design.md): the feature names, plus num_frames at frame level.

    Read from model_flags.json rather than the model, as subclassed models (the mixtures) have
    no symbolic inputs to inspect.
    """
    names = [name.strip() for name in str(model_flags.get("feature_names", "")).split(",")
             if name.strip()]
    if not names:
        raise errors.InvalidInputError("model_flags.json names no feature_names")
    return names + ([NUM_FRAMES] if model_flags.get("frame_features", True) else [])


def _fixed_frame_counts(model):
    """{input name: T} for the frame inputs of a functional model with a fixed T."""
    try:
        structure = model.input
    except AttributeError:  # a subclassed model: it takes any T
        return {}
    if not isinstance(structure, dict):
        return {}
    return {name: tensor.shape[1] for name, tensor in structure.items()
            if tensor.shape.rank == 3 and tensor.shape[1] is not None}


class MemberModule(tf.Module):
    """A member's forward pass: frames -> predictions [B, V], reading large weights in `precision`."""

    def __init__(self, model, model_flags, precision, selection, name, sparse_weights=0.0):
        super().__init__(name=name)
        precision_lib.check_precision(precision)
        self.member_name = name
        self.precision = precision
        self.max_frames = int(model_flags.get("max_frames", 300))
        stored, kept, replaced, plans = [], [], [], []
        for variable in unique_variables(model):
            plans.append((variable.name, storage.plan(variable, precision, selection,
                                                      sparse_weights)))
            stored_weight = storage.make_stored_weight(variable, plans[-1][1])
            if stored_weight is None:
                kept.append(variable)
            else:
                stored.append(stored_weight)
                replaced.append(variable)
        self.stored_weights = stored
        self.float32_variables = kept
        self._held = Untracked(model=model, replaced=replaced, plans=plans,
                               input_names=model_input_names(model_flags),
                               fixed_frames=_fixed_frame_counts(model))

    @property
    def model(self):
        return self._held.model

    @property
    def replaced_variables(self):
        """The float32 variables whose values the SavedModel holds in low precision instead."""
        return list(self._held.replaced)

    def _model_inputs(self, frames, num_frames):
        """Builds the model's input dict from full-length frames (any T) and num_frames."""
        inputs = {}
        fitted_frames = None
        for input_name in self._held.input_names:
            if input_name == NUM_FRAMES:
                continue
            feature = input_name
            if feature not in frames and input_name.startswith(VIDEO_LEVEL_PREFIX):
                feature = input_name[len(VIDEO_LEVEL_PREFIX):]
                if feature in frames:  # a video-level member: the mean of the valid frames
                    inputs[input_name] = masked_frame_mean(frames[feature], num_frames)
                    continue
            if feature not in frames:
                raise errors.InvalidInputError(
                    f"member {self.member_name!r}: model input {input_name!r} is not one of the "
                    f"served features {sorted(frames)}")
            fitted = _fit_frames(frames[feature][:, :self.max_frames],
                                 self._held.fixed_frames.get(input_name))
            inputs[input_name] = fitted
            fitted_frames = fitted
        if NUM_FRAMES in self._held.input_names:
            limit = (tf.shape(fitted_frames)[1] if fitted_frames is not None
                     else self.max_frames)
            inputs[NUM_FRAMES] = tf.minimum(tf.cast(num_frames, tf.int32), limit)
        return inputs

    def _predictions(self, inputs):
        outputs = self.model(inputs, training=False)
        if isinstance(outputs, dict):
            if "predictions" not in outputs:
                raise errors.InvalidInputError(
                    f"member {self.member_name!r}: model outputs {sorted(outputs)} "
                    "have no 'predictions'")
            return outputs["predictions"]
        return outputs

    def __call__(self, frames, num_frames):
        """Predictions computed with the stored (low-precision) weights."""
        replacements = {variable.ref(): weight.read()
                        for variable, weight in zip(self._held.replaced, self.stored_weights)}
        with substituted_weights(self.model, replacements):
            return self._predictions(self._model_inputs(frames, num_frames))

    def float32_predictions(self, frames, num_frames):
        """The reference: the same forward with the original float32 weights."""
        return self._predictions(self._model_inputs(frames, num_frames))

    @property
    def storage_plans(self):
        """[(variable name, storage.Plan)] of every variable of the model."""
        return list(self._held.plans)

    def saved_bytes(self):
        """Bytes of variable data this member puts in the SavedModel."""
        return sum(plan.stored_bytes for _, plan in self._held.plans)


def check_no_float32_reads(concrete_function, members):
    """Raises when the traced graph still reads a float32 matrix that should be low precision."""
    read = {variable.ref() for variable in concrete_function.variables}
    for member in members:
        leaked = [v.name for v in member.replaced_variables if v.ref() in read]
        if leaked:
            raise LowPrecisionFallbackError(
                f"member {member.member_name!r}: its layers read {', '.join(leaked)} without "
                "going through a layer attribute, so the variable cannot be stored in "
                f"{member.precision}; export this member in float32 or raise "
                "--min_low_precision_elements above that variable's size")
