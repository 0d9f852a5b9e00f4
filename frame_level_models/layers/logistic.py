"""Logistic classifier: one dense layer to V logits, L2 on the weights (starter LogisticModel; with
l2_on_bias also on the biases, as linrongc's LogisticModel)."""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common


@keras.utils.register_keras_serializable(package="yt8m")
class LogisticClassifier(common.Layer):
    """[B, D] -> logits [B, V] = x W + b. The caller applies the sigmoid (so logits stay available)."""

    _prunable_weight_names = ("kernel",)

    def __init__(self, num_classes, l2_penalty=1e-8, kernel_initializer="glorot_uniform",
                 l2_on_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.l2_penalty = l2_penalty
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.l2_on_bias = bool(l2_on_bias)

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", [int(input_shape[-1]), self.num_classes],
                                      initializer=self.kernel_initializer,
                                      regularizer=common.slim_l2(self.l2_penalty))
        self.bias = self.add_weight(
            "bias", [self.num_classes], initializer="zeros",
            regularizer=common.slim_l2(self.l2_penalty) if self.l2_on_bias else None)
        super().build(input_shape)

    def call(self, inputs):
        return tf.matmul(inputs, self.kernel) + self.bias

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "l2_penalty": self.l2_penalty,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "l2_on_bias": self.l2_on_bias}
