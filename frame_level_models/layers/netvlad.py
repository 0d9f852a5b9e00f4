"""NetVLAD pooling and Willow's two variants of it, one feature stream at a time.

a = softmax_K(BN(x W_c)) per valid frame (padded frames get a = 0), s[d, k] = sum_i a_ik x_id;
NetVLAD:  v[d, k] = s[d, k] - C_dk sum_i a_ik (learned centroids C);
LightVLAD (Willow --lightvlad, "NetRVLAD"): v = s, no centroids;
NetVLAGD (Willow --vlagd): v[d, k] = s[d, k] * sigmoid(G_dk) (learned gates G).
Then intra-normalise v over d for each cluster, flatten [D*K] (index d*K + k) and L2-normalise.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common
from frame_level_models.layers.soft_assignment import SoftAssignmentPooling


class _VladPooling(SoftAssignmentPooling):
    """[frames [B, T, D], num_frames [B]] -> [B, D*K]; subclasses say how s becomes v."""

    def residuals(self, summed, assignment):
        """v [B, D, K] from s = sum_i a_ik x_id [B, D, K] and the assignment [B, T, K]."""
        raise NotImplementedError

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        assignment = self.assignment(frames, num_frames, training)
        summed = tf.matmul(frames, assignment, transpose_a=True)  # [B, D, K], one batched matmul
        vlad = common.l2_normalize(self.residuals(summed, assignment), axis=1)
        vlad = tf.reshape(vlad, [-1, self.feature_size * self.cluster_size])
        return common.l2_normalize(vlad, axis=1)


@keras.utils.register_keras_serializable(package="yt8m")
class NetVLAD(_VladPooling):
    _prunable_weight_names = ("cluster_kernel", "centroids")

    def build(self, input_shape):
        feature_size = self.build_assignment(input_shape)
        self.centroids = self.add_weight("centroids", [feature_size, self.cluster_size],
                                         initializer=common.fan_in_normal())
        super().build(input_shape)

    def residuals(self, summed, assignment):
        return summed - self.centroids * tf.reduce_sum(assignment, axis=1, keepdims=True)


@keras.utils.register_keras_serializable(package="yt8m")
class LightVLAD(_VladPooling):
    def build(self, input_shape):
        self.build_assignment(input_shape)
        super().build(input_shape)

    def residuals(self, summed, assignment):
        return summed


@keras.utils.register_keras_serializable(package="yt8m")
class NetVLAGD(_VladPooling):
    _prunable_weight_names = ("cluster_kernel", "gate_kernel")

    def build(self, input_shape):
        feature_size = self.build_assignment(input_shape)
        # Willow stores the gates as [1, K, D] drawn with stddev 1/sqrt(D); here [D, K].
        self.gate_kernel = self.add_weight(
            "gate_kernel", [feature_size, self.cluster_size],
            initializer=keras.initializers.RandomNormal(stddev=feature_size ** -0.5))
        super().build(input_shape)

    def residuals(self, summed, assignment):
        return summed * tf.sigmoid(self.gate_kernel)
