"""NeXtVLAD pooling (Lin et al. 2018), one feature stream at a time (SPEC section 4).

x' = x W_e + b_e (lambda*N wide); group attention alpha_g = sigmoid(x' W_g + b_g) * frame mask;
alpha_gk = softmax_K(BN(x' W_c)) with W_c: lambda*N x G*K (no bias), per (frame, group);
a = alpha_gk * alpha_g; x' split into G groups of width D = lambda*N/G;
v[d, k] = sum over frames and groups of a (x'_group[d] - C[d, k]); intra-normalise over d;
flatten [K*D]; BN (no global L2 normalisation).

Frames are flattened to [B*T, ...] rows so the dense steps are plain 2-D matmuls (+ bias add, which
TF fuses into the matmul on CPU) and the residual sums one batched matmul per video.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common
from yt8m.core import errors


@keras.utils.register_keras_serializable(package="yt8m")
class NeXtVLAD(common.BatchNormLayer):
    """[frames [B, T, N], num_frames [B]] -> [B, D*K] with D = expansion*N/groups."""

    _prunable_weight_names = ("expansion_kernel", "attention_kernel", "cluster_kernel",
                              "centroids")

    def __init__(self, cluster_size, groups=8, expansion=2, **kwargs):
        super().__init__(**kwargs)
        for flag, value in (("nextvlad_cluster_size", cluster_size), ("groups", groups),
                            ("expansion", expansion)):
            if value <= 0:
                raise ValueError(f"NeXtVLAD: {flag} must be positive, got {value}")
        self.cluster_size = int(cluster_size)
        self.groups = int(groups)
        self.expansion = int(expansion)

    def build(self, input_shape):
        feature_size = int(input_shape[0][-1])
        expanded = self.expansion * feature_size
        if expanded % self.groups:
            raise errors.InvalidInputError(
                f"NeXtVLAD: expansion*feature_size = {expanded} is not divisible by "
                f"groups={self.groups}")
        self.feature_size = feature_size
        self.group_size = expanded // self.groups
        groups, clusters = self.groups, self.cluster_size
        self.expansion_kernel = self.add_weight("expansion_kernel", [feature_size, expanded],
                                                initializer=common.he_normal())
        self.expansion_bias = self.add_weight("expansion_bias", [expanded], initializer="zeros")
        self.attention_kernel = self.add_weight("attention_kernel", [expanded, groups],
                                                initializer=common.he_normal())
        self.attention_bias = self.add_weight("attention_bias", [groups], initializer="zeros")
        self.cluster_kernel = self.add_weight("cluster_kernel", [expanded, groups * clusters],
                                              initializer=common.he_normal())
        self.cluster_bn = self.make_batch_norm("cluster_bn")
        self.cluster_bn.build([None, groups * clusters])
        self.centroids = self.add_weight("centroids", [self.group_size, clusters],
                                         initializer=common.he_normal())
        self.output_bn = self.make_batch_norm("vlad_bn")
        self.output_bn.build([None, self.group_size * clusters])
        super().build(input_shape)

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        batch, length = tf.shape(frames)[0], tf.shape(frames)[1]
        groups, clusters, width = self.groups, self.cluster_size, self.group_size
        mask = tf.reshape(common.bool_frame_mask(num_frames, frames), [-1])  # [B*T]
        rows = tf.reshape(frames, [-1, self.feature_size])
        expanded = tf.nn.bias_add(tf.matmul(rows, self.expansion_kernel), self.expansion_bias)
        attention = tf.sigmoid(tf.nn.bias_add(tf.matmul(expanded, self.attention_kernel),
                                              self.attention_bias))
        attention *= tf.cast(mask, frames.dtype)[:, None]
        activation = self.cluster_bn(tf.matmul(expanded, self.cluster_kernel),
                                     training=training, mask=mask)
        activation = common.softmax(tf.reshape(activation, [-1, groups, clusters]))
        assignment = activation * attention[:, :, None]  # [B*T, G, K]
        # Frames x groups become one axis: the sum over both is one batched matmul per video.
        assignment = tf.reshape(assignment, [batch, length * groups, clusters])
        grouped = tf.reshape(expanded, [batch, length * groups, width])
        vlad = tf.matmul(grouped, assignment, transpose_a=True)  # [B, D, K]
        vlad -= self.centroids * tf.reduce_sum(assignment, axis=1, keepdims=True)
        vlad = common.l2_normalize(vlad, axis=1)
        vlad = tf.reshape(vlad, [batch, width * clusters])
        return self.output_bn(vlad, training=training)

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size, "groups": self.groups,
                "expansion": self.expansion}
