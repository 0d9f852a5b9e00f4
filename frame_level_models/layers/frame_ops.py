"""Frame-level helpers without learned weights: masked mean, L2 normalisation of the input, the
starter's frame sampling, and the NeXtVLAD paper's reverse whitening of the rgb input (linrongc's
formula).

They are layers (not bare TF ops) so a model is made of layers only, which is what tfmot's
`prune_low_magnitude` (it wraps every layer) and `keras.models.clone_model` need.
"""
import numpy as np

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common
from yt8m.core import errors


@keras.utils.register_keras_serializable(package="yt8m")
class MaskedMean(common.Layer):
    """[frames [B, T, N], num_frames [B]] -> mean of the valid frames [B, N] (0 when none)."""

    def call(self, inputs):
        frames, num_frames = inputs
        # In float32 under mixed precision: a 16-bit count or sum of up to 300 frames rounds.
        values = tf.cast(frames, tf.float32)
        mask = common.frame_mask(num_frames, values)
        total = tf.einsum("btn,bt->bn", values, mask)
        count = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
        return tf.cast(total / count, frames.dtype)


@keras.utils.register_keras_serializable(package="yt8m")
class FrameL2Normalize(common.Layer):
    """L2-normalises each frame (or video-level vector) over its last, feature axis: the starter's
    input normalisation, tf.nn.l2_normalize (epsilon 1e-12 on the squared norm: zero padding stays
    zero)."""

    def call(self, frames):
        return common.l2_normalize(frames, axis=-1)


@keras.utils.register_keras_serializable(package="yt8m")
class SplitFeatures(common.Layer):
    """[B, T, sum(sizes)] -> list of [B, T, size_i]; undoes a concatenation of feature streams."""

    def __init__(self, sizes, **kwargs):
        super().__init__(**kwargs)
        self.sizes = [int(size) for size in sizes]

    def call(self, frames):
        return tf.split(frames, self.sizes, axis=-1)

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes}


def random_frames_index(uniform, num_frames):
    """The starter's SampleRandomFrames indices for uniform draws `uniform` [B, n] in [0, 1):
    int32(uniform * num_frames), `n` frames drawn with replacement from the valid frames
    (clipped to num_frames - 1, which a float rounding up to 1.0 could otherwise exceed)."""
    num_frames = tf.expand_dims(num_frames, 1)
    index = tf.cast(uniform * tf.cast(num_frames, uniform.dtype), tf.int32)
    return tf.minimum(index, tf.maximum(num_frames - 1, 0))


def random_sequence_index(uniform, num_frames, count):
    """The starter's SampleRandomSequence indices for one uniform draw per video `uniform` [B]:
    start = int32(u * (max(num_frames - count, 0) + 1)), index = min(start + [0, ..., count-1],
    num_frames - 1): a random run of `count` consecutive frames (a shorter video repeats its last
    frame)."""
    num_frames = tf.expand_dims(num_frames, 1)
    max_start = tf.maximum(num_frames - count, 0)
    start = tf.cast(tf.expand_dims(uniform, 1) * tf.cast(max_start + 1, uniform.dtype), tf.int32)
    start = tf.minimum(start, max_start)
    return tf.minimum(start + tf.range(count)[None, :], tf.maximum(num_frames - 1, 0))


@keras.utils.register_keras_serializable(package="yt8m")
class RandomFrameSampler(common.Layer):
    """The starter's frame sampling: `iterations` frames per video, the same frames for every
    stream. Inputs [stream_1, ..., stream_n, num_frames]; outputs the same list with sampled
    streams [B, iterations, size] and num_frames = iterations (a video without frames keeps 0).

    sequence: False draws the frames uniformly with replacement (`SampleRandomFrames`); True takes
      a random run of consecutive frames (`SampleRandomSequence`), the starter's
      --sample_random_frames=False.
    at_inference: sample when not training too (the starter's DbofModel samples at training,
      evaluation and export). False: a training-time augmentation; with training false the inputs
      pass through unchanged, so predictions are deterministic.
    """

    def __init__(self, iterations, seed=None, sequence=False, at_inference=False, **kwargs):
        super().__init__(**kwargs)
        if iterations <= 0:
            raise ValueError(f"iterations must be positive, got {iterations}")
        self.iterations = int(iterations)
        self.seed = seed
        self.sequence = bool(sequence)
        self.at_inference = bool(at_inference)

    def draw_uniform(self, shape):
        """The uniform draws in [0, 1) the indices are computed from (one per video for a
        sequence, one per sampled frame otherwise)."""
        return tf.random.uniform(shape, seed=self.seed)

    def call(self, inputs, training=None):
        *streams, num_frames = inputs
        if not (training or self.at_inference):
            return list(streams) + [num_frames]
        num_frames = tf.cast(num_frames, tf.int32)
        batch = tf.shape(num_frames)[0]
        if self.sequence:
            index = random_sequence_index(self.draw_uniform([batch]), num_frames, self.iterations)
        else:
            index = random_frames_index(self.draw_uniform([batch, self.iterations]), num_frames)
        sampled = [tf.gather(stream, index, axis=1, batch_dims=1) for stream in streams]
        sampled_count = tf.where(num_frames > 0, self.iterations, 0)
        return sampled + [tf.cast(sampled_count, inputs[-1].dtype)]

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations, "seed": self.seed,
                "sequence": self.sequence, "at_inference": self.at_inference}


# linrongc's train.py/eval.py: subtract the +range/512 term of the dequantization (range 4) and
# add 1e-4 to sqrt(eigenvalue), which keeps the near-zero tail of the spectrum from vanishing.
WHITENING_OFFSET = 4.0 / 512.0
WHITENING_EPSILON = 1e-4


def load_eigenvalues(path, size):
    """Reads the NeXtVLAD reverse-whitening file, e.g. linrongc's `yt8m_pca/eigenvals.npy`: a .npy
    of PCA eigenvalues, shape (N,) or (N, 1) with N >= `size` (the reference's has 2048 rows and
    uses the first 1024); returns the first `size` as float32."""
    try:
        values = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise errors.MissingInputError(f"pca_eigenvalues_file={path!r}: no such file") from None
    except (ValueError, OSError) as error:
        raise errors.InvalidInputError(
            f"pca_eigenvalues_file={path!r} is not a numpy .npy file: {error}") from None
    values = np.asarray(values)
    if values.dtype.kind not in "fiu":
        raise errors.InvalidInputError(
            f"pca_eigenvalues_file={path!r} holds {values.dtype} values, not numbers")
    if values.ndim not in (1, 2) or (values.ndim == 2 and values.shape[1] != 1):
        raise errors.InvalidInputError(
            f"pca_eigenvalues_file={path!r} has shape {values.shape}; expected (N,) or (N, 1) "
            "eigenvalues")
    values = values.astype(np.float64).reshape(-1)
    if values.size < size:
        raise errors.InvalidInputError(
            f"pca_eigenvalues_file={path!r} holds {values.size} eigenvalues; the rgb "
            f"feature has {size} dimensions")
    values = values[:size]
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise errors.InvalidInputError(
            f"pca_eigenvalues_file={path!r}: eigenvalues must be finite and >= 0")
    return values.astype(np.float32)


@keras.utils.register_keras_serializable(package="yt8m")
class ReverseWhitening(common.Layer):
    """[frames [B, T, N], num_frames [B]] -> (x - offset) * (sqrt(eigenvalues) + epsilon), padded
    frames 0: undoes the PCA whitening of the released rgb features (NeXtVLAD paper; linrongc's
    formula, offset 4/512 and epsilon 1e-4). The reference also transforms the padded frames
    (to -offset * scale); here they stay 0, so they weigh nothing wherever frames are averaged.

    The eigenvalues are a constant of the model, stored in its config (not trained).
    """

    def __init__(self, eigenvalues, offset=WHITENING_OFFSET, epsilon=WHITENING_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.eigenvalues = [float(value) for value in np.asarray(eigenvalues).reshape(-1)]
        self.offset = float(offset)
        self.epsilon = float(epsilon)
        scale = np.sqrt(np.asarray(self.eigenvalues, np.float64)) + self.epsilon
        self._scale = tf.constant(scale.astype(np.float32))

    def call(self, inputs):
        frames, num_frames = inputs
        mask = common.frame_mask(num_frames, frames, frames.dtype)[:, :, None]
        return (frames - self.offset) * tf.cast(self._scale, frames.dtype) * mask

    def get_config(self):
        return {**super().get_config(), "eigenvalues": self.eigenvalues, "offset": self.offset,
                "epsilon": self.epsilon}


@keras.utils.register_keras_serializable(package="yt8m")
class FrameBatchNorm(common.BatchNormLayer):
    """Batch norm over frames whose batch statistics skip padded frames:
    [frames [B, T, N], num_frames [B]] -> [B, T, N] (slim defaults, see common.batch_norm)."""

    def build(self, input_shape):
        self.batch_norm = self.make_batch_norm("bn")
        self.batch_norm.build([None, None, int(input_shape[0][-1])])
        super().build(input_shape)

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        normalized = self.batch_norm(frames, training=training,
                                     mask=common.bool_frame_mask(num_frames, frames))
        # A new tensor without the Keras mask the inner layer attached: the next layers take
        # num_frames explicitly and must not receive a `mask` argument.
        return tf.identity(normalized)


@keras.utils.register_keras_serializable(package="yt8m")
class ReverseFrames(common.Layer):
    """[frames [B, T, N], num_frames [B]] -> frames with each video's first min(num_frames, T)
    frames in reverse order, the padding left in place (Willow's --gru_backward/--lstm_backward,
    tf.reverse_sequence)."""

    def call(self, inputs):
        frames, num_frames = inputs
        lengths = tf.minimum(num_frames, tf.shape(frames, out_type=num_frames.dtype)[1])
        return tf.reverse_sequence(frames, lengths, seq_axis=1, batch_axis=0)
