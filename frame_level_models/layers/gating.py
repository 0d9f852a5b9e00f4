"""Gating layers that re-weight a video representation channel by channel (SPEC section 4).

ContextGating (Willow): y = x * sigmoid(BN(x W)), W n x n without bias (BN supplies the shift);
  with remove_diagonal (Willow --gating_remove_diag) x W - diag(W) * x, no channel gates itself.
SEGating (NeXtVLAD):   y = x * sigmoid(relu(BN(x W1)) W2), W1 n x n/r, W2 n/r x n, no biases.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common
from yt8m.core import errors


@keras.utils.register_keras_serializable(package="yt8m")
class ContextGating(common.BatchNormLayer):
    _prunable_weight_names = ("kernel",)

    def __init__(self, kernel_initializer=None, remove_diagonal=False, **kwargs):
        super().__init__(**kwargs)
        # Willow initialised W with stddev 1/sqrt(n).
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or common.fan_in_normal())
        self.remove_diagonal = bool(remove_diagonal)

    def build(self, input_shape):
        size = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", [size, size], initializer=self.kernel_initializer)
        self.batch_norm = self.make_batch_norm("gating_bn")
        self.batch_norm.build([None, size])
        super().build(input_shape)

    def call(self, inputs, training=None):
        gates = tf.matmul(inputs, self.kernel)
        if self.remove_diagonal:
            gates -= tf.linalg.diag_part(self.kernel) * inputs
        return inputs * tf.sigmoid(self.batch_norm(gates, training=training))

    def get_config(self):
        return {**super().get_config(),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "remove_diagonal": self.remove_diagonal}


@keras.utils.register_keras_serializable(package="yt8m")
class SEGating(common.BatchNormLayer):
    _prunable_weight_names = ("squeeze_kernel", "excite_kernel")

    def __init__(self, reduction=8, **kwargs):
        super().__init__(**kwargs)
        if reduction <= 0:
            raise ValueError(f"gating_reduction must be positive, got {reduction}")
        self.reduction = int(reduction)

    def build(self, input_shape):
        size = int(input_shape[-1])
        if size % self.reduction:
            raise errors.InvalidInputError(f"SE gating: input size {size} is not divisible by "
                                           f"gating_reduction={self.reduction}")
        squeezed = size // self.reduction
        self.squeeze_kernel = self.add_weight("squeeze_kernel", [size, squeezed],
                                              initializer=common.he_normal())
        self.excite_kernel = self.add_weight("excite_kernel", [squeezed, size],
                                             initializer=common.he_normal())
        self.batch_norm = self.make_batch_norm("gating_bn")
        self.batch_norm.build([None, squeezed])
        super().build(input_shape)

    def call(self, inputs, training=None):
        squeezed = tf.nn.relu(self.batch_norm(tf.matmul(inputs, self.squeeze_kernel),
                                              training=training))
        return inputs * tf.sigmoid(tf.matmul(squeezed, self.excite_kernel))

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}
