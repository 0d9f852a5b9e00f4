"""NetVLAD pooling (Willow's variant for YouTube-8M), one feature stream at a time.

a = softmax_K(BN(x W_c)) per valid frame (padded frames get a = 0);
v[d, k] = sum_i a_ik (x_id - C_dk); intra-normalise v over d for each cluster; flatten [D*K]
(index d*K + k); L2-normalise the whole vector.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common


@keras.utils.register_keras_serializable(package="yt8m")
class NetVLAD(common.BatchNormLayer):
    """[frames [B, T, D], num_frames [B]] -> [B, D*K]."""

    _prunable_weight_names = ("cluster_kernel", "centroids")

    def __init__(self, cluster_size, add_batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        if cluster_size <= 0:
            raise ValueError(f"netvlad_cluster_size must be positive, got {cluster_size}")
        self.cluster_size = int(cluster_size)
        self.add_batch_norm = bool(add_batch_norm)

    def build(self, input_shape):
        feature_size = int(input_shape[0][-1])
        self.feature_size = feature_size
        # Willow: both matrices drawn with stddev 1/sqrt(feature_size).
        self.cluster_kernel = self.add_weight("cluster_kernel", [feature_size, self.cluster_size],
                                              initializer=common.fan_in_normal())
        if self.add_batch_norm:
            self.cluster_bn = self.make_batch_norm("cluster_bn")
            self.cluster_bn.build([None, self.cluster_size])
        else:
            self.cluster_bias = self.add_weight(
                "cluster_bias", [self.cluster_size],
                initializer=keras.initializers.RandomNormal(stddev=feature_size ** -0.5))
        self.centroids = self.add_weight("centroids", [feature_size, self.cluster_size],
                                         initializer=common.fan_in_normal())
        super().build(input_shape)

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        batch, length = tf.shape(frames)[0], tf.shape(frames)[1]
        mask = tf.reshape(common.bool_frame_mask(num_frames, frames), [-1])  # [B*T]
        activation = tf.matmul(tf.reshape(frames, [-1, self.feature_size]), self.cluster_kernel)
        if self.add_batch_norm:
            activation = self.cluster_bn(activation, training=training, mask=mask)
        else:
            activation = tf.nn.bias_add(activation, self.cluster_bias)
        assignment = tf.nn.softmax(activation) * tf.cast(mask, frames.dtype)[:, None]
        assignment = tf.reshape(assignment, [batch, length, self.cluster_size])
        # sum_i a_ik x_id - C_dk sum_i a_ik, as one batched matmul over the frames.
        vlad = tf.matmul(frames, assignment, transpose_a=True)  # [B, D, K]
        vlad -= self.centroids * tf.reduce_sum(assignment, axis=1, keepdims=True)
        vlad = common.l2_normalize(vlad, axis=1)
        vlad = tf.reshape(vlad, [-1, self.feature_size * self.cluster_size])
        return common.l2_normalize(vlad, axis=1)

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size,
                "add_batch_norm": self.add_batch_norm}
