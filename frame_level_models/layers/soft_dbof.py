"""Willow's soft Deep Bag-of-Frames poolings, one feature stream at a time.

a = softmax_K(BN(x W)) per valid frame (padded frames get a = 0);
SoftDBoF:  L2(sum over frames of a), with max_pool also L2(max over frames of a) appended;
GatedDBoF: s = sum over frames of a, m = L2(max over frames of a),
           g = sigmoid(BN_2(m R W_2)) with R: K x N ("dim_red") and W_2: N x K; out = L2(g * s).
The softmax output is positive, so zeroed padded frames never win the max of a valid one.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common
from frame_level_models.layers.soft_assignment import SoftAssignmentPooling


@keras.utils.register_keras_serializable(package="yt8m")
class SoftDBoF(SoftAssignmentPooling):
    """[frames [B, T, N], num_frames [B]] -> [B, K] (or [B, 2K] with max_pool)."""

    def __init__(self, cluster_size, add_batch_norm=True, max_pool=False, **kwargs):
        super().__init__(cluster_size, add_batch_norm, **kwargs)
        self.max_pool = bool(max_pool)

    def build(self, input_shape):
        self.build_assignment(input_shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        assignment = self.assignment(frames, num_frames, training)
        pooled = common.l2_normalize(tf.reduce_sum(assignment, axis=1), axis=1)
        if not self.max_pool:
            return pooled
        return tf.concat([pooled, common.l2_normalize(tf.reduce_max(assignment, axis=1), axis=1)],
                         axis=1)

    def get_config(self):
        return {**super().get_config(), "max_pool": self.max_pool}


@keras.utils.register_keras_serializable(package="yt8m")
class GatedDBoF(SoftAssignmentPooling):
    """[frames [B, T, N], num_frames [B]] -> [B, K]."""

    _prunable_weight_names = ("cluster_kernel", "reduction_kernel", "gate_kernel")

    def build(self, input_shape):
        feature_size = self.build_assignment(input_shape)
        # Willow draws both gate matrices with stddev 1/sqrt(N) (N = feature size).
        self.reduction_kernel = self.add_weight(
            "reduction_kernel", [self.cluster_size, feature_size],
            initializer=keras.initializers.RandomNormal(stddev=feature_size ** -0.5))
        self.gate_kernel = self.add_weight("gate_kernel", [feature_size, self.cluster_size],
                                           initializer=common.fan_in_normal())
        if self.add_batch_norm:
            self.gate_bn = self.make_batch_norm("gate_bn")
            self.gate_bn.build([None, self.cluster_size])
        else:
            self.gate_bias = self.add_weight(
                "gate_bias", [self.cluster_size],
                initializer=keras.initializers.RandomNormal(stddev=feature_size ** -0.5))
        super().build(input_shape)

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        assignment = self.assignment(frames, num_frames, training)
        summed = tf.reduce_sum(assignment, axis=1)
        maxed = common.l2_normalize(tf.reduce_max(assignment, axis=1), axis=1)
        gates = tf.matmul(tf.matmul(maxed, self.reduction_kernel), self.gate_kernel)
        if self.add_batch_norm:
            gates = self.gate_bn(gates, training=training)
        else:
            gates = tf.nn.bias_add(gates, self.gate_bias)
        return common.l2_normalize(tf.sigmoid(gates) * summed, axis=1)
