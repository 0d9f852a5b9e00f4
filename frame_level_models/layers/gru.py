"""GRU encoder (Willow's GruModel): a stack of TF1 GRU cells over each video's valid frames; the
representation is the whole final state of the stack, [h_0, h_1, ...] (layer 0 first), as TF1's
MultiRNNCell(state_is_tuple=False) concatenates it. Padded frames are masked, not run through: the
state stops at the last valid frame, as tf.nn.dynamic_rnn with sequence_length copies it through.

TF1's GRUCell is Keras' GRUCell(reset_after=False): r multiplies h before the recurrent matmul
(Keras' default reset_after=True is another cell). Keras splits TF1's gate matrix [x, h] -> (r, u)
and candidate matrix [x, r*h] -> c into `kernel` (input rows) and `recurrent_kernel` (h rows),
columns ordered (z=u, r, h) (checkpoints convert with tests/reference/willow_numpy.
keras_gru_to_tf1_gru). Initialisation as TF1: the gate columns drawn from the Glorot-uniform range
of the [input + units, 2 units] matrix, the candidate columns from that of [input + units, units],
gate biases 1.0, candidate bias 0.
"""
import math

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common


@keras.utils.register_keras_serializable(package="yt8m")
class ColumnBlocks(keras.initializers.Initializer):
    """Initialises equal-width column blocks of a matrix (or vector) with one initializer each.

    Each block draws from a fresh copy of its initializer: an unseeded Keras initializer called
    twice returns the same values, and blocks (and the kernels sharing this object) must differ.
    """

    def __init__(self, initializers):
        self.initializers = [keras.initializers.serialize(keras.initializers.get(item))
                             for item in initializers]

    def __call__(self, shape, dtype=None, **kwargs):
        shape = list(shape)
        width = shape[-1] // len(self.initializers)
        return tf.concat([keras.initializers.deserialize(item)(shape[:-1] + [width], dtype=dtype)
                          for item in self.initializers], axis=-1)

    def get_config(self):
        return {"initializers": self.initializers}


def _glorot(fan_in, fan_out):
    """glorot_uniform of a TF1 matrix [fan_in, fan_out]."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return keras.initializers.RandomUniform(-limit, limit)


def _gru(units, input_size, name):
    rows = input_size + units
    gates, candidate = _glorot(rows, 2 * units), _glorot(rows, units)
    kernel = ColumnBlocks([gates, gates, candidate])  # Keras column order z, r, h
    cell = keras.layers.GRUCell(units, reset_after=False, kernel_initializer=kernel,
                                recurrent_initializer=kernel,
                                bias_initializer=ColumnBlocks(["ones", "ones", "zeros"]))
    return keras.layers.RNN(cell, return_sequences=True, return_state=True, name=name)


@keras.utils.register_keras_serializable(package="yt8m")
class GruEncoder(common.Layer):
    """[frames [B, T, N], num_frames [B]] -> [B, num_layers * cells]; steps stop at
    min(num_frames, T), a video without frames keeps the zero initial state."""

    def __init__(self, cells=1024, num_layers=2, **kwargs):
        super().__init__(**kwargs)
        if cells <= 0 or num_layers <= 0:
            raise ValueError(f"gru_cells and gru_layers must be positive, got {cells}, "
                             f"{num_layers}")
        self.cells = int(cells)
        self.num_layers = int(num_layers)

    def build(self, input_shape):
        size = int(input_shape[0][-1])
        self.grus = []
        for index in range(self.num_layers):
            gru = _gru(self.cells, size, f"gru_{index}")
            gru.build(tf.TensorShape([None, None, size]))
            self.grus.append(gru)
            size = self.cells
        super().build(input_shape)

    def get_prunable_weights(self):
        return [weight for gru in self.grus
                for weight in (gru.cell.kernel, gru.cell.recurrent_kernel)]

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        mask = common.bool_frame_mask(num_frames, frames)
        outputs, states = frames, []
        for gru in self.grus:
            outputs, h = gru(outputs, mask=mask, training=training)
            states.append(h)
        return tf.concat(states, axis=-1)

    def get_config(self):
        return {**super().get_config(), "cells": self.cells, "num_layers": self.num_layers}
