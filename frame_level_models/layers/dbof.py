"""Deep Bag-of-Frames pooling (starter DbofModel; Willow's DBoF variants build on it).

Per valid frame: [input BN] -> x W_c -> cluster BN (or + bias) -> activation (sigmoid or ReLU6,
--dbof_activation) into `cluster_size` "words"; then max or average over the valid frames. The
starter runs it on the frames it sampled (all valid); the model adds the hidden layer and the
classifier.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common


ACTIVATIONS = {"sigmoid": tf.sigmoid, "relu6": tf.nn.relu6}  # the starter's ACT_FN_MAP


def activation_function(name):
    """The --dbof_activation function (sigmoid or relu6)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"dbof_activation={name!r} is not one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


@keras.utils.register_keras_serializable(package="yt8m")
class DbofPooling(common.BatchNormLayer):
    """[frames [B, T, N], num_frames [B]] -> [B, cluster_size].

    Variables (starter name): cluster_kernel (cluster_weights [N, C]), input_bn / cluster_bn, or
    cluster_bias (cluster_biases) without batch norm.
    """

    _prunable_weight_names = ("cluster_kernel",)

    def __init__(self, cluster_size, add_batch_norm=True, pooling_method="max",
                 activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        if cluster_size <= 0:
            raise ValueError(f"dbof_cluster_size must be positive, got {cluster_size}")
        if pooling_method not in ("max", "average"):
            raise ValueError(f"dbof_pooling_method={pooling_method!r} is not one of max, average")
        activation_function(activation)
        self.cluster_size = int(cluster_size)
        self.add_batch_norm = bool(add_batch_norm)
        self.pooling_method = pooling_method
        self.activation = activation

    def build(self, input_shape):
        feature_size = int(input_shape[0][-1])
        self.feature_size = feature_size
        self.cluster_kernel = self.add_weight("cluster_kernel", [feature_size, self.cluster_size],
                                              initializer=common.fan_in_normal())
        if self.add_batch_norm:
            self.input_bn = self.make_batch_norm("input_bn")
            self.input_bn.build([None, feature_size])
            self.cluster_bn = self.make_batch_norm("cluster_bn")
            self.cluster_bn.build([None, self.cluster_size])
        else:
            self.cluster_bias = self.add_weight(
                "cluster_bias", [self.cluster_size],
                initializer=keras.initializers.RandomNormal(stddev=feature_size ** -0.5))
        super().build(input_shape)

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        batch, length = tf.shape(frames)[0], tf.shape(frames)[1]
        mask = tf.reshape(common.bool_frame_mask(num_frames, frames), [-1])  # [B*T]
        rows = tf.reshape(frames, [-1, self.feature_size])
        if self.add_batch_norm:
            rows = self.input_bn(rows, training=training, mask=mask)
        activation = tf.matmul(rows, self.cluster_kernel)
        if self.add_batch_norm:
            activation = self.cluster_bn(activation, training=training, mask=mask)
        else:
            activation = tf.nn.bias_add(activation, self.cluster_bias)
        # Both activations are >= 0, so zeroing padded frames keeps them out of the max as well.
        activation = (activation_function(self.activation)(activation)
                      * tf.cast(mask, frames.dtype)[:, None])
        activation = tf.reshape(activation, [batch, length, self.cluster_size])
        if self.pooling_method == "max":
            return tf.reduce_max(activation, axis=1)
        # The average in float32 (mixed precision: a 16-bit sum or count of 300 frames rounds).
        count = tf.maximum(tf.cast(num_frames, tf.float32), 1.0)[:, None]
        total = tf.reduce_sum(tf.cast(activation, tf.float32), axis=1)
        return tf.cast(total / count, frames.dtype)

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size,
                "add_batch_norm": self.add_batch_norm, "pooling_method": self.pooling_method,
                "activation": self.activation}
