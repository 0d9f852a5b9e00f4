"""Mixture-of-experts classifier of the starter (MoeModel), with the options of Willow's MoeModel.

gates = softmax over M+1 slots of (h G) per class, G: D x V(M+1), no bias;
experts = sigmoid(h E + b), E: D x VM; p = sum over the first M slots of gate * expert (slot M+1 is
a dummy expert predicting 0).
Willow's options:
- gating_rank r (--moe_low_rank_gating): G = G1 G2 with G1: D x r, G2: r x V(M+1), both L2;
- probability gating (--moe_prob_gating): p <- p * sigmoid(BN(q W_p)), where q = p (W_p: V x V) or,
  with prob_gating_input="input", q = h (W_p: D x V);
- remove_diagonal (--gating_remove_diag): the gate pre-activation loses diag(W_p) * p, so no
  class gates itself.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common

PROB_GATING_INPUTS = ("prob", "input")


@keras.utils.register_keras_serializable(package="yt8m")
class MoeClassifier(common.BatchNormLayer):
    """[B, D] -> class probabilities [B, V]. Defines no logits (a mixture of sigmoids)."""

    def __init__(self, num_classes, num_mixtures=2, l2_penalty=1e-8, prob_gating=False,
                 gating_rank=None, prob_gating_input="prob", remove_diagonal=False, **kwargs):
        super().__init__(**kwargs)
        if num_mixtures <= 0:
            raise ValueError(f"moe_num_mixtures must be positive, got {num_mixtures}")
        if gating_rank is not None and gating_rank <= 0:
            raise ValueError(f"moe_low_rank_gating must be positive (or unset), got {gating_rank}")
        if prob_gating_input not in PROB_GATING_INPUTS:
            raise ValueError(f"moe_prob_gating_input={prob_gating_input!r} is not one of "
                             f"{', '.join(PROB_GATING_INPUTS)}")
        self.num_classes = int(num_classes)
        self.num_mixtures = int(num_mixtures)
        self.l2_penalty = l2_penalty
        self.prob_gating = bool(prob_gating)
        self.gating_rank = None if gating_rank is None else int(gating_rank)
        self.prob_gating_input = prob_gating_input
        self.remove_diagonal = bool(remove_diagonal)
        names = (["gate_low_rank_kernel"] if self.gating_rank else []) + [
            "gate_kernel", "expert_kernel"] + (["prob_gating_kernel"] if prob_gating else [])
        self._prunable_weight_names = tuple(names)

    def build(self, input_shape):
        size, classes, mixtures = int(input_shape[-1]), self.num_classes, self.num_mixtures
        regularizer = common.slim_l2(self.l2_penalty)
        gate_input = size
        if self.gating_rank:
            self.gate_low_rank_kernel = self.add_weight(
                "gate_low_rank_kernel", [size, self.gating_rank], initializer="glorot_uniform",
                regularizer=regularizer)
            gate_input = self.gating_rank
        # slim.fully_connected's default initializer (Xavier) over the full output width.
        self.gate_kernel = self.add_weight("gate_kernel", [gate_input, classes * (mixtures + 1)],
                                           initializer="glorot_uniform", regularizer=regularizer)
        self.expert_kernel = self.add_weight("expert_kernel", [size, classes * mixtures],
                                             initializer="glorot_uniform", regularizer=regularizer)
        self.expert_bias = self.add_weight("expert_bias", [classes * mixtures],
                                           initializer="zeros")
        if self.prob_gating:
            gating_input = classes if self.prob_gating_input == "prob" else size
            if self.remove_diagonal and gating_input < classes:
                raise ValueError(f"{self.name}: gating_remove_diag with moe_prob_gating_input="
                                 f"input needs an input of at least {classes} (the classes), "
                                 f"got {gating_input}")
            # Willow draws W_p with stddev 1/sqrt(V) whatever its input.
            self.prob_gating_kernel = self.add_weight(
                "prob_gating_kernel", [gating_input, classes],
                initializer=keras.initializers.RandomNormal(stddev=classes ** -0.5))
            self.prob_gating_bn = self.make_batch_norm("prob_gating_bn")
            self.prob_gating_bn.build([None, classes])
        super().build(input_shape)

    def call(self, inputs, training=None):
        classes, mixtures = self.num_classes, self.num_mixtures
        gate_input = (tf.matmul(inputs, self.gate_low_rank_kernel) if self.gating_rank
                      else inputs)
        # The matmuls in the compute dtype; the softmax, sigmoids and the mixture in float32, so
        # the probabilities (the model's predictions) are float32 under mixed precision too.
        gates = common.softmax(
            tf.reshape(tf.matmul(gate_input, self.gate_kernel), [-1, classes, mixtures + 1]),
            dtype=tf.float32)
        experts = tf.sigmoid(tf.cast(tf.reshape(
            tf.matmul(inputs, self.expert_kernel) + self.expert_bias, [-1, classes, mixtures]),
            tf.float32))
        probabilities = tf.reduce_sum(gates[:, :, :mixtures] * experts, axis=-1)
        if self.prob_gating:
            source = (tf.cast(probabilities, inputs.dtype) if self.prob_gating_input == "prob"
                      else inputs)
            gate = tf.matmul(source, self.prob_gating_kernel)
            if self.remove_diagonal:
                gate -= (tf.linalg.diag_part(self.prob_gating_kernel)[:classes]
                         * tf.cast(probabilities, gate.dtype))
            gate = self.prob_gating_bn(gate, training=training)
            probabilities = probabilities * tf.sigmoid(tf.cast(gate, tf.float32))
        return probabilities

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "num_mixtures": self.num_mixtures, "l2_penalty": self.l2_penalty,
                "prob_gating": self.prob_gating, "gating_rank": self.gating_rank,
                "prob_gating_input": self.prob_gating_input,
                "remove_diagonal": self.remove_diagonal}
