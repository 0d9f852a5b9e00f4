"""NetFV pooling (Willow's NetFV, a learnable Fisher vector), one feature stream at a time.

a = softmax_K(BN(x W)) per valid frame (padded frames get a = 0), A_k = sum_i a_ik;
sigma = S^2 + 1e-6 (learned S: N x K, drawn around 1.0); centres C = learned centroids, or
coupling_factor * W when the centres are coupled to the assignment weights (Willow's default);
first order  f1[d, k] = (sum_i a_ik x_id - A_k C_dk) / sigma_dk, L2 over d, flatten, L2;
second order f2[d, k] = (A_k C_dk^2 + sum_i a_ik x_id^2 - 2 C_dk sum_i a_ik x_id) / sigma_dk^2
             - A_k, flatten, L2 (no per-cluster normalisation);
output [f1, f2]: [B, 2*N*K], index d*K + k.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common
from frame_level_models.layers.soft_assignment import SoftAssignmentPooling

SIGMA_EPSILON = 1e-6  # Willow adds it to the squared covariance weights


@keras.utils.register_keras_serializable(package="yt8m")
class NetFV(SoftAssignmentPooling):
    """[frames [B, T, N], num_frames [B]] -> [B, 2*N*K]."""

    def __init__(self, cluster_size, add_batch_norm=True, couple_weights=True,
                 coupling_factor=0.01, **kwargs):
        super().__init__(cluster_size, add_batch_norm, **kwargs)
        self.couple_weights = bool(couple_weights)
        self.coupling_factor = float(coupling_factor)
        self._prunable_weight_names = ("cluster_kernel", "covar_kernel") + (
            () if self.couple_weights else ("centroids",))

    def build(self, input_shape):
        feature_size = self.build_assignment(input_shape)
        self.covar_kernel = self.add_weight(
            "covar_kernel", [feature_size, self.cluster_size],
            initializer=keras.initializers.RandomNormal(mean=1.0, stddev=feature_size ** -0.5))
        if not self.couple_weights:
            self.centroids = self.add_weight("centroids", [feature_size, self.cluster_size],
                                             initializer=common.fan_in_normal())
        super().build(input_shape)

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        assignment = self.assignment(frames, num_frames, training)
        mass = tf.reduce_sum(assignment, axis=1, keepdims=True)  # A_k [B, 1, K]
        centers = (self.coupling_factor * self.cluster_kernel if self.couple_weights
                   else self.centroids)
        sigma = tf.square(self.covar_kernel) + SIGMA_EPSILON
        first = tf.matmul(frames, assignment, transpose_a=True)  # [B, N, K]
        second = tf.matmul(tf.square(frames), assignment, transpose_a=True)
        size = self.feature_size * self.cluster_size
        fv2 = (mass * tf.square(centers) + second - 2.0 * first * centers) / tf.square(sigma)
        fv2 = tf.reshape(fv2 - mass, [-1, size])
        # Willow normalises fv2 twice; the second pass changes only vectors of norm < 1e-6.
        fv2 = common.l2_normalize(common.l2_normalize(fv2, axis=1), axis=1)
        fv1 = common.l2_normalize((first - mass * centers) / sigma, axis=1)
        fv1 = common.l2_normalize(tf.reshape(fv1, [-1, size]), axis=1)
        return tf.concat([fv1, fv2], axis=1)

    def get_config(self):
        return {**super().get_config(), "couple_weights": self.couple_weights,
                "coupling_factor": self.coupling_factor}
