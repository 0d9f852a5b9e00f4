"""Pieces every layer of the zoo shares: initializers, batch norm, regularizers, frame masks.

The reference implementations are TF1/slim code; these helpers carry their conventions over so each
layer module states only what is particular to it.
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

# slim.batch_norm defaults, which every reference model used (SPEC section 4).
BN_MOMENTUM = 0.999
BN_EPSILON = 1e-3


def he_normal():
    """slim.variance_scaling_initializer(): fan-in, factor 2, truncated normal (NeXtVLAD code)."""
    return keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal")


def fan_in_normal():
    """tf.random_normal_initializer(stddev=1/sqrt(fan_in)) of the starter and Willow code."""
    return keras.initializers.VarianceScaling(1.0, "fan_in", "untruncated_normal")


def slim_l2(penalty):
    """Keras regulariser meaning what the starter's `penalty` meant: penalty/2 * sum(w^2).

    slim.l2_regularizer(s) is s * tf.nn.l2_loss(w) = s/2 * sum(w^2); Keras l2(s) is s * sum(w^2).
    """
    if penalty is None or penalty == 0:
        return None
    return keras.regularizers.l2(penalty / 2.0)


@keras.utils.register_keras_serializable(package="yt8m")
class MaskedBatchNormalization(keras.layers.BatchNormalization,
                               tfmot.sparsity.keras.PrunableLayer):
    """keras BatchNormalization whose masked batch moments cost two matrix-vector products.

    Keras computes masked moments with tf.nn.weighted_moments (several full-size temporaries, and
    as many in the gradient); here sum(x) and sum(x^2) over the valid rows are `mask @ x` and
    `mask @ x^2`, which made a masked training-mode BN ~1.8x faster on [20, 300, 1024] frames.
    x is shifted by the moving mean first (a constant), so E[x^2] - E[x]^2 does not cancel
    catastrophically once the moving mean tracks the data.
    """

    def get_prunable_weights(self):  # tfmot knows only the exact Keras class: nothing to prune
        return []

    def _no_sync_calculate_mean_and_var(self, inputs, reduction_axes, keep_dims, mask=None):
        if mask is None:
            return super()._no_sync_calculate_mean_and_var(inputs, reduction_axes, keep_dims)
        channels = tf.shape(inputs)[-1]
        shift = tf.stop_gradient(tf.cast(self.moving_mean, inputs.dtype))
        rows = tf.reshape(inputs, [-1, channels]) - shift
        weights = tf.reshape(tf.cast(mask, inputs.dtype), [1, -1])
        count = tf.maximum(tf.reduce_sum(weights), 1.0)
        shifted_mean = tf.matmul(weights, rows)[0] / count
        mean_square = tf.matmul(weights, tf.square(rows))[0] / count
        variance = tf.maximum(mean_square - tf.square(shifted_mean), 0.0)
        mean = shifted_mean + shift
        if keep_dims:
            shape = tf.concat([tf.ones([tf.rank(inputs) - 1], tf.int32), [channels]], 0)
            mean, variance = tf.reshape(mean, shape), tf.reshape(variance, shape)
        return mean, variance


def batch_norm(name, momentum=BN_MOMENTUM):
    """Batch norm with the slim defaults (momentum 0.999, epsilon 1e-3, centre and scale); the
    models pass their `bn_momentum` hparam.

    Not fused: frame-level callers pass a mask so padded frames stay out of the batch statistics.
    """
    return MaskedBatchNormalization(momentum=momentum, epsilon=BN_EPSILON, fused=False, name=name)


def frame_mask(num_frames, frames, dtype=tf.float32):
    """[B] valid-frame counts -> [B, T] mask (1 for frames < num_frames), T = frames' 2nd dim."""
    return tf.sequence_mask(num_frames, maxlen=tf.shape(frames)[1], dtype=dtype)


def bool_frame_mask(num_frames, frames):
    return tf.sequence_mask(num_frames, maxlen=tf.shape(frames)[1])


# Mixed precision (yt8m.training.mixed_precision): the layers compute in their 16-bit compute
# dtype, but a sum of many squares or exponentials loses too much there (8 mantissa bits in
# bfloat16, and float16 overflows at 65504), so these reductions run in float32 and only their
# result is cast back. Under the float32 policy the casts are no-ops (no op is added).


def l2_normalize(x, axis):
    """tf.nn.l2_normalize (epsilon 1e-12 on the squared norm), as the references used it;
    computed in float32, returned in x's dtype."""
    return tf.cast(tf.math.l2_normalize(tf.cast(x, tf.float32), axis=axis), x.dtype)


def softmax(x, axis=-1, dtype=None):
    """tf.nn.softmax computed in float32; returned as `dtype` (default: x's dtype)."""
    return tf.cast(tf.nn.softmax(tf.cast(x, tf.float32), axis=axis), dtype or x.dtype)


class Layer(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """Base of the zoo's layers: a Keras layer that tfmot's `prune_low_magnitude` can wrap.

    Subclasses list their large matrices in `_prunable_weight_names` (attribute names); layers without
    large weights prune nothing but must still be wrappable, since tfmot wraps every layer of a model.
    """

    _prunable_weight_names = ()

    def get_prunable_weights(self):
        return [getattr(self, name) for name in self._prunable_weight_names]


class BatchNormLayer(Layer):
    """A zoo layer holding batch norms: their momentum is a constructor argument (`bn_momentum`
    hparam), kept in the config."""

    def __init__(self, bn_momentum=BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.bn_momentum = float(bn_momentum)

    def make_batch_norm(self, name):
        return batch_norm(name, self.bn_momentum)

    def get_config(self):
        return {**super().get_config(), "bn_momentum": self.bn_momentum}
