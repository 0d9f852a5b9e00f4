"""Mixture-of-experts classifier of the starter (MoeModel), with Willow's optional probability
context gating.

gates = softmax over M+1 slots of (h G) per class, G: D x V(M+1), no bias; experts = sigmoid(h E + b),
E: D x VM; p = sum over the first M slots of gate * expert (slot M+1 is a dummy expert predicting 0).
Probability gating: p <- p * sigmoid(BN(p W_p)), W_p: V x V.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common


@keras.utils.register_keras_serializable(package="yt8m")
class MoeClassifier(common.BatchNormLayer):
    """[B, D] -> class probabilities [B, V]. Defines no logits (a mixture of sigmoids)."""

    def __init__(self, num_classes, num_mixtures=2, l2_penalty=1e-8, prob_gating=False,
                 **kwargs):
        super().__init__(**kwargs)
        if num_mixtures <= 0:
            raise ValueError(f"moe_num_mixtures must be positive, got {num_mixtures}")
        self.num_classes = int(num_classes)
        self.num_mixtures = int(num_mixtures)
        self.l2_penalty = l2_penalty
        self.prob_gating = bool(prob_gating)
        names = ["gate_kernel", "expert_kernel"] + (["prob_gating_kernel"] if prob_gating else [])
        self._prunable_weight_names = tuple(names)

    def build(self, input_shape):
        size, classes, mixtures = int(input_shape[-1]), self.num_classes, self.num_mixtures
        regularizer = common.slim_l2(self.l2_penalty)
        # slim.fully_connected's default initializer (Xavier) over the full output width.
        self.gate_kernel = self.add_weight("gate_kernel", [size, classes * (mixtures + 1)],
                                           initializer="glorot_uniform", regularizer=regularizer)
        self.expert_kernel = self.add_weight("expert_kernel", [size, classes * mixtures],
                                             initializer="glorot_uniform", regularizer=regularizer)
        self.expert_bias = self.add_weight("expert_bias", [classes * mixtures],
                                           initializer="zeros")
        if self.prob_gating:
            self.prob_gating_kernel = self.add_weight("prob_gating_kernel", [classes, classes],
                                                      initializer=common.fan_in_normal())
            self.prob_gating_bn = self.make_batch_norm("prob_gating_bn")
            self.prob_gating_bn.build([None, classes])
        super().build(input_shape)

    def call(self, inputs, training=None):
        classes, mixtures = self.num_classes, self.num_mixtures
        gates = tf.nn.softmax(
            tf.reshape(tf.matmul(inputs, self.gate_kernel), [-1, classes, mixtures + 1]))
        experts = tf.sigmoid(tf.reshape(tf.matmul(inputs, self.expert_kernel) + self.expert_bias,
                                        [-1, classes, mixtures]))
        probabilities = tf.reduce_sum(gates[:, :, :mixtures] * experts, axis=-1)
        if self.prob_gating:
            gate = self.prob_gating_bn(tf.matmul(probabilities, self.prob_gating_kernel),
                                       training=training)
            probabilities = probabilities * tf.sigmoid(gate)
        return probabilities

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "num_mixtures": self.num_mixtures, "l2_penalty": self.l2_penalty,
                "prob_gating": self.prob_gating}
