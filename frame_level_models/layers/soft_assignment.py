"""Soft assignment of frames to learned clusters: the first step of every Willow pooling layer
(NetVLAD, LightVLAD, NetVLAGD, NetFV, SoftDBoF, GatedDBoF).

a = softmax_K(BN(x W)) per valid frame, W: N x K; without batch norm a bias replaces it. Padded
frames get a = 0 and stay out of the batch-norm statistics.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common


class SoftAssignmentPooling(common.BatchNormLayer):
    """Base of the pooling layers on [frames [B, T, N], num_frames [B]]: subclasses call
    `build_assignment` in their build and `assignment` in their call."""

    _prunable_weight_names = ("cluster_kernel",)

    def __init__(self, cluster_size, add_batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        if cluster_size <= 0:
            raise ValueError(f"{self.name}: cluster_size must be positive, got {cluster_size}")
        self.cluster_size = int(cluster_size)
        self.add_batch_norm = bool(add_batch_norm)

    def build_assignment(self, input_shape):
        """Creates `cluster_kernel` and `cluster_bn` (or `cluster_bias`); returns N."""
        feature_size = int(input_shape[0][-1])
        self.feature_size = feature_size
        # Willow: every cluster matrix drawn with stddev 1/sqrt(feature_size).
        self.cluster_kernel = self.add_weight("cluster_kernel", [feature_size, self.cluster_size],
                                              initializer=common.fan_in_normal())
        if self.add_batch_norm:
            self.cluster_bn = self.make_batch_norm("cluster_bn")
            self.cluster_bn.build([None, self.cluster_size])
        else:
            self.cluster_bias = self.add_weight(
                "cluster_bias", [self.cluster_size],
                initializer=keras.initializers.RandomNormal(stddev=feature_size ** -0.5))
        return feature_size

    def assignment(self, frames, num_frames, training):
        """[B, T, K] soft assignment, zero on padded frames."""
        batch, length = tf.shape(frames)[0], tf.shape(frames)[1]
        mask = tf.reshape(common.bool_frame_mask(num_frames, frames), [-1])  # [B*T]
        activation = tf.matmul(tf.reshape(frames, [-1, self.feature_size]), self.cluster_kernel)
        if self.add_batch_norm:
            activation = self.cluster_bn(activation, training=training, mask=mask)
        else:
            activation = tf.nn.bias_add(activation, self.cluster_bias)
        assignment = (common.softmax(activation)
                      * tf.cast(mask, frames.dtype)[:, None])
        return tf.reshape(assignment, [batch, length, self.cluster_size])

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size,
                "add_batch_norm": self.add_batch_norm}
