"""Dense layer for the wide hidden layers (VLAD vector -> hidden), with a faster input gradient.

TF differentiates y = x W as dx = dy W^T; with a tall W (e.g. 36864 x 2048 in NeXtVLAD, 278528 x
1024 in Gated NetVLAD) and a small batch, oneDNN runs that transposed product about 2x slower than
the same product written (W dy^T)^T (measured 225 ms vs 109 ms for batch 80 on this machine).
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common


@tf.custom_gradient
def wide_matmul(inputs, kernel):
    """inputs @ kernel, whose input gradient is computed as (kernel @ dy^T)^T."""
    def gradient(upstream):
        return (tf.transpose(tf.matmul(kernel, upstream, transpose_b=True)),
                tf.matmul(inputs, upstream, transpose_a=True))
    return tf.matmul(inputs, kernel), gradient


@keras.utils.register_keras_serializable(package="yt8m")
class WideDense(common.Layer):
    """[B, D] -> [B, units] = x W (+ b). Same variables as keras Dense (`kernel`, `bias`)."""

    _prunable_weight_names = ("kernel",)

    def __init__(self, units, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", [int(input_shape[-1]), self.units],
                                      initializer=self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight("bias", [self.units], initializer=self.bias_initializer)
        super().build(input_shape)

    def call(self, inputs):
        outputs = wide_matmul(inputs, tf.convert_to_tensor(self.kernel))
        return tf.nn.bias_add(outputs, self.bias) if self.use_bias else outputs

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer)}
