"""Willow's recurrent encoders (GruModel, Willow's LstmModel): a stack of GRU or LSTM layers run
over each video's valid frames; the representation is the whole final state of the stack, as TF1's
MultiRNNCell(state_is_tuple=False) concatenates it: GRU [h_0, h_1, ...], LSTM [c_0, h_0, c_1, h_1,
...] (layer 0 first).

The cells are TF1's: GRUCell is Keras' GRUCell(reset_after=False) (r applied before the recurrent
matmul), BasicLSTMCell(forget_bias=1.0) is Keras' LSTMCell with unit_forget_bias. Initial values
follow TF1 too: its cells draw one Glorot-uniform matrix [input + units, width] (width 2u for the
GRU gates, u for its candidate, 4u for the LSTM), the GRU gate biases start at 1.0.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common

CELLS = ("gru", "lstm")


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
    limit = (6.0 / (fan_in + fan_out)) ** 0.5
    return keras.initializers.RandomUniform(-limit, limit)


def _rnn(cell, units, input_size, name):
    """keras RNN layer of one TF1 cell, returning the sequence and the final state."""
    rows = input_size + units
    if cell == "gru":
        gates, candidate = _glorot(rows, 2 * units), _glorot(rows, units)
        kernel = ColumnBlocks([gates, gates, candidate])  # Keras column order z, r, h
        step = keras.layers.GRUCell(
            units, reset_after=False, kernel_initializer=kernel, recurrent_initializer=kernel,
            bias_initializer=ColumnBlocks(["ones", "ones", "zeros"]))
        return keras.layers.RNN(step, return_sequences=True, return_state=True, name=name)
    kernel = ColumnBlocks([_glorot(rows, 4 * units)])
    options = dict(unit_forget_bias=True, kernel_initializer=kernel, recurrent_initializer=kernel,
                   return_sequences=True, return_state=True, name=name)
    if tf.config.list_physical_devices("GPU"):  # cuDNN kernel, same variables
        return keras.layers.LSTM(units, **options)
    step_options = {key: options.pop(key) for key in
                    ("unit_forget_bias", "kernel_initializer", "recurrent_initializer")}
    return keras.layers.RNN(keras.layers.LSTMCell(units, **step_options), **options)


@keras.utils.register_keras_serializable(package="yt8m")
class RecurrentStates(common.Layer):
    """[frames [B, T, N], num_frames [B]] -> [B, L*u] (GRU) or [B, 2*L*u] (LSTM).

    Steps stop at min(num_frames, T); a video without frames keeps the zero initial state. With
    `backward` the valid frames are read last to first (Willow --gru_backward/--lstm_backward).
    """

    def __init__(self, cell="gru", cells=1024, num_layers=2, backward=False, **kwargs):
        super().__init__(**kwargs)
        if cell not in CELLS:
            raise ValueError(f"{self.name}: cell={cell!r} is not one of {', '.join(CELLS)}")
        if cells <= 0 or num_layers <= 0:
            raise ValueError(f"{self.name}: cells and layers must be positive, got {cells}, "
                             f"{num_layers}")
        self.cell = cell
        self.cells = int(cells)
        self.num_layers = int(num_layers)
        self.backward = bool(backward)

    def build(self, input_shape):
        size = int(input_shape[0][-1])
        self.rnns = []
        for index in range(self.num_layers):
            rnn = _rnn(self.cell, self.cells, size, f"{self.cell}_{index}")
            rnn.build(tf.TensorShape([None, None, size]))
            self.rnns.append(rnn)
            size = self.cells
        super().build(input_shape)

    def get_prunable_weights(self):
        return [weight for rnn in self.rnns
                for weight in (rnn.cell.kernel, rnn.cell.recurrent_kernel)]

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        mask = common.bool_frame_mask(num_frames, frames)
        if self.backward:
            lengths = tf.minimum(num_frames, tf.shape(frames, out_type=num_frames.dtype)[1])
            frames = tf.reverse_sequence(frames, lengths, seq_axis=1, batch_axis=0)
        states, outputs = [], frames
        for rnn in self.rnns:
            outputs, *state = rnn(outputs, mask=mask, training=training)
            # Keras returns [h] (GRU) or [h, c] (LSTM); TF1's LSTM state is [c, h].
            states.extend(state[::-1])
        return tf.concat(states, axis=1)

    def get_config(self):
        return {**super().get_config(), "cell": self.cell, "cells": self.cells,
                "num_layers": self.num_layers, "backward": self.backward}
