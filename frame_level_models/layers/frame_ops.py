"""Frame-level helpers without learned weights: masked mean, frame L2 norm, training-time frame
sampling, and the NeXtVLAD paper's reverse whitening of the rgb input.

They are layers (not bare TF ops) so a model is made of layers only, which is what tfmot's
`prune_low_magnitude` (it wraps every layer) and `keras.models.clone_model` need.
"""
import numpy as np

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common


@keras.utils.register_keras_serializable(package="yt8m")
class MaskedMean(common.Layer):
    """[frames [B, T, N], num_frames [B]] -> mean of the valid frames [B, N] (0 when none)."""

    def call(self, inputs):
        frames, num_frames = inputs
        mask = common.frame_mask(num_frames, frames, frames.dtype)
        total = tf.einsum("btn,bt->bn", frames, mask)
        count = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
        return total / count


@keras.utils.register_keras_serializable(package="yt8m")
class FrameL2Normalize(common.Layer):
    """L2-normalises each frame over its feature axis (the starter's input normalisation)."""

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


@keras.utils.register_keras_serializable(package="yt8m")
class RandomFrameSampler(common.Layer):
    """Training-time augmentation of the starter (`sample_random_frames`): `iterations` frames drawn
    uniformly with replacement from each video's valid frames, the same frames for every stream.

    Inputs [stream_1, ..., stream_n, num_frames]; outputs the same list with sampled streams
    [B, iterations, size] and num_frames = iterations (0 stays 0). With training false (evaluation,
    inference) the inputs pass through unchanged, so predictions are deterministic.
    """

    def __init__(self, iterations, seed=None, **kwargs):
        super().__init__(**kwargs)
        if iterations <= 0:
            raise ValueError(f"iterations must be positive, got {iterations}")
        self.iterations = int(iterations)
        self.seed = seed

    def call(self, inputs, training=None):
        *streams, num_frames = inputs
        if not training:
            return list(streams) + [num_frames]
        batch = tf.shape(num_frames)[0]
        uniform = tf.random.uniform([batch, self.iterations], seed=self.seed)
        valid = tf.cast(tf.expand_dims(num_frames, 1), tf.float32)
        index = tf.cast(tf.floor(uniform * valid), tf.int32)
        index = tf.minimum(index, tf.maximum(tf.expand_dims(num_frames, 1) - 1, 0))
        sampled = [tf.gather(stream, index, axis=1, batch_dims=1) for stream in streams]
        sampled_count = tf.where(num_frames > 0, self.iterations, 0)
        return sampled + [tf.cast(sampled_count, num_frames.dtype)]

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations, "seed": self.seed}


def load_eigenvalues(path, size):
    """Reads the NeXtVLAD reverse-whitening file: a .npy of `size` non-negative PCA eigenvalues."""
    try:
        values = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"pca_eigenvalues_file={path!r}: no such file") from None
    except (ValueError, OSError) as error:
        raise ValueError(f"pca_eigenvalues_file={path!r} is not a numpy .npy file: {error}") from None
    values = np.asarray(values)
    if values.dtype.kind not in "fiu":
        raise ValueError(f"pca_eigenvalues_file={path!r} holds {values.dtype} values, not numbers")
    values = values.astype(np.float64).reshape(-1)
    if values.size != size:
        raise ValueError(f"pca_eigenvalues_file={path!r} holds {values.size} eigenvalues; the rgb "
                         f"feature has {size} dimensions")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"pca_eigenvalues_file={path!r}: eigenvalues must be finite and >= 0")
    return values.astype(np.float32)


@keras.utils.register_keras_serializable(package="yt8m")
class ReverseWhitening(common.Layer):
    """x * sqrt(eigenvalues): undoes the PCA whitening of the released rgb features (NeXtVLAD paper).

    The eigenvalues are a constant of the model, stored in its config (not trained).
    """

    def __init__(self, eigenvalues, **kwargs):
        super().__init__(**kwargs)
        self.eigenvalues = [float(value) for value in np.asarray(eigenvalues).reshape(-1)]
        self._scale = tf.constant(np.sqrt(np.asarray(self.eigenvalues, np.float32)))

    def call(self, frames):
        return frames * tf.cast(self._scale, frames.dtype)

    def get_config(self):
        return {**super().get_config(), "eigenvalues": self.eigenvalues}


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
