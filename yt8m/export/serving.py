"""The ensemble as one tf.Module with the serving signatures of SPEC 7.

    serving_default(rgb [B, T, 1024] float32, audio [B, T, 128] float32, num_frames [B] int32)
        -> predictions [B, V], top_k_classes [B, k] int32, top_k_scores [B, k]
    serve_examples(example_bytes [B] string: serialized frame-level SequenceExamples)
        -> id [B] string, predictions, top_k_classes, top_k_scores

T is free (TF Serving's REST API cannot send ragged tensors: pad to any T and pass num_frames);
each member truncates or pads to its own max_frames. Predictions are the weighted sum of the
members' probabilities.

Both signatures check their input and fail with InvalidArgumentError naming the input and what
is wrong: feature widths (1024, 128), equal frame counts of rgb and audio, 0 <= num_frames <= T,
one num_frames per video; for examples every frame's byte length, equal frame counts and an id.
(TF Serving does not enforce a signature's shapes; without the checks a wrong width fails deep in
a member and a short frame would be zero-padded.)
"""
import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.data import checks
from yt8m.data import readers
from yt8m.data import records
from yt8m.export.member_module import Untracked

FEATURE_NAMES = records.DEFAULT_FEATURE_NAMES
FEATURE_SIZES = dict(zip(records.DEFAULT_FEATURE_NAMES, records.DEFAULT_FEATURE_SIZES))
SERVING_DEFAULT = "serving_default"
SERVE_EXAMPLES = "serve_examples"
EXAMPLE_BYTES = "example_bytes"


def frame_signature():
    specs = [tf.TensorSpec([None, None, FEATURE_SIZES[name]], tf.float32, name=name)
             for name in FEATURE_NAMES]
    return specs + [tf.TensorSpec([None], tf.int32, name="num_frames")]


def parse_sequence_examples(serialized, max_frames):
    """Serialized frame-level SequenceExamples -> (ids, {name: [B, T, D] float32}, num_frames).

    The same values as `yt8m.data.frame_dataset`: dequantized, truncated to max_frames, frames
    past num_frames set to 0, num_frames = min(frames of the first feature, max_frames). T is the
    longest video of the batch (not padded further: the members pad as they need). The readers'
    checks apply (frame byte lengths, equal frame counts, an id); errors name the example as
    `serve_examples: example_bytes[i]`.
    """
    names = tf.strings.join([f"{SERVE_EXAMPLES}: {EXAMPLE_BYTES}[",
                             tf.strings.as_string(tf.range(tf.size(serialized))), "]"])
    context, sequences, lengths = tf.io.parse_sequence_example(
        serialized,
        context_features={key: tf.io.FixedLenFeature([], tf.string, default_value="")
                          for key in ("id", "video_id")},
        sequence_features={name: tf.io.FixedLenSequenceFeature([], tf.string)
                           for name in FEATURE_NAMES},
        example_names=names)
    # The readers' own checks (older 2017 files name the id `video_id`).
    ids, id_check = readers._video_ids(context, names)  # pylint: disable=protected-access
    frame_checks = readers._check_frames(  # pylint: disable=protected-access
        sequences, lengths, FEATURE_NAMES, [FEATURE_SIZES[name] for name in FEATURE_NAMES],
        names, ids)
    sequences, lengths = checks.after([id_check] + frame_checks, (sequences, lengths))
    num_frames = tf.minimum(tf.cast(lengths[FEATURE_NAMES[0]], tf.int32), max_frames)
    frames = {}
    for name in FEATURE_NAMES:
        codes = tf.io.decode_raw(sequences[name][:, :max_frames], tf.uint8,
                                 fixed_length=FEATURE_SIZES[name])
        frames[name] = readers.dequantize_padded(codes, num_frames)
    return ids, frames, num_frames


def _text(value):
    return tf.strings.as_string(value)


def _shape_text(tensor):
    return tf.strings.reduce_join(_text(tf.shape(tensor)), separator=", ")


def check_frame_inputs(rgb, audio, num_frames):
    """The serving_default inputs, made to wait for their checks: [B, T, 1024] rgb and [B, T, 128]
    audio float32 (the same B and T), num_frames [B] int32 with 0 <= num_frames <= T."""
    where = f"{SERVING_DEFAULT}: "
    frames = {"rgb": rgb, "audio": audio}
    ops = []
    for name, value in frames.items():
        width = FEATURE_SIZES[name]
        ops.append(checks.raise_if(
            tf.logical_or(tf.rank(value) != 3, tf.shape(value)[-1] != width),
            lambda name=name, value=value, width=width: tf.strings.join([
                where, name, " has shape [", _shape_text(value), "]; expected [videos, frames, ",
                str(width), "]"])))
    with tf.control_dependencies(ops):
        rgb_shape, audio_shape = tf.shape(rgb), tf.shape(audio)
    ops.append(checks.raise_if(
        tf.reduce_any(rgb_shape[:2] != audio_shape[:2]),
        lambda: tf.strings.join([
            where, "rgb has shape [", _shape_text(rgb), "] but audio [", _shape_text(audio),
            "]: both need the same videos and frames (pad them alike)"])))
    ops.append(checks.raise_if(
        tf.logical_or(tf.rank(num_frames) != 1, tf.size(num_frames) != rgb_shape[0]),
        lambda: tf.strings.join([
            where, "num_frames has shape [", _shape_text(num_frames), "]; expected one value "
            "per video [", _text(rgb_shape[0]), "]"])))
    with tf.control_dependencies(ops):
        out_of_range = (num_frames < 0) | (num_frames > rgb_shape[1])
    ops.append(checks.raise_if(
        tf.reduce_any(out_of_range),
        lambda: tf.strings.join([
            where, "num_frames[", _text(tf.argmax(tf.cast(out_of_range, tf.int32))), "] = ",
            _text(tf.boolean_mask(num_frames, out_of_range)[0]), " is outside [0, ",
            _text(rgb_shape[1]), "] (the frames sent per video)"])))
    return checks.after(ops, (rgb, audio, num_frames))


class EnsembleModule(tf.Module):
    """Weighted ensemble of MemberModules with the two serving signatures.

    Besides the members' weights, the SavedModel carries three small variables that describe it:
    `num_classes`, `max_frames` and `member_weights` (read them with `.numpy()` after loading).
    """

    def __init__(self, members, weights, num_classes, top_k=20, name="ensemble"):
        super().__init__(name=name)
        if len(members) != len(weights):
            raise ValueError(f"{len(members)} members but {len(weights)} weights")
        self.members = list(members)
        self.top_k = int(top_k)
        self.num_classes = tf.Variable(int(num_classes), dtype=tf.int32, trainable=False,
                                       name="num_classes")
        self.max_frames = tf.Variable(max(member.max_frames for member in members),
                                      dtype=tf.int32, trainable=False, name="max_frames")
        self.member_weights = tf.Variable([float(weight) for weight in weights],
                                          dtype=tf.float32, trainable=False,
                                          name="member_weights")
        # The functions are held untracked: as tracked attributes tf.saved_model.save would trace
        # them a second time; the signatures are what the export serves.
        # autograph=False: no Python control flow depends on tensors here, and converting every
        # layer's code takes seconds per signature.
        self._functions = Untracked(
            serving_default=tf.function(self._serve_frames, input_signature=frame_signature(),
                                        autograph=False),
            serve_examples=tf.function(
                self._serve_examples,
                input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLE_BYTES)],
                autograph=False))

    def predict(self, frames, num_frames):
        """Weighted sum of the members' predictions (low-precision weights)."""
        return tf.add_n([self.member_weights[index] * member(frames, num_frames)
                         for index, member in enumerate(self.members)])

    def float32_predict(self, frames, num_frames):
        """The same ensemble with every member's original float32 weights (the reference)."""
        return tf.add_n([self.member_weights[index] * member.float32_predictions(frames, num_frames)
                         for index, member in enumerate(self.members)])

    def _with_top_k(self, predictions):
        k = min(self.top_k, predictions.shape[-1])
        scores, classes = tf.math.top_k(predictions, k=k, sorted=True)
        return {"predictions": predictions, "top_k_classes": classes, "top_k_scores": scores}

    def _serve_frames(self, rgb, audio, num_frames):
        rgb, audio, num_frames = check_frame_inputs(rgb, audio, num_frames)
        return self._with_top_k(self.predict({"rgb": rgb, "audio": audio}, num_frames))

    def _serve_examples(self, example_bytes):
        ids, frames, num_frames = parse_sequence_examples(example_bytes, self.max_frames)
        outputs = self._with_top_k(self.predict(frames, num_frames))
        outputs["id"] = ids
        return outputs

    def signatures(self):
        return {SERVING_DEFAULT: self._functions.serving_default.get_concrete_function(),
                SERVE_EXAMPLES: self._functions.serve_examples.get_concrete_function()}

    def saved_bytes(self):
        return sum(member.saved_bytes() for member in self.members)
