"""LSTM encoder (the starter's LstmModel; Willow's LstmModel reads the whole state): stacked LSTMs
over each video's valid frames. Padded frames are masked, not run through: the state stops at the
last valid frame, as tf.nn.dynamic_rnn with sequence_length copies it through.

Keras' LSTMCell is the TF1 BasicLSTMCell(forget_bias=1.0) re-parametrised: Keras splits the kernel
[x, h] -> 4u into `kernel` (input rows) and `recurrent_kernel` (h rows) with gates ordered
(i, f, c, o), and its `unit_forget_bias` puts the 1.0 into the forget gate's initial bias where
TF1 adds the constant at every step (same forward pass and gradients; checkpoints convert with
tests/reference/starter_numpy.keras_lstm_to_basic_lstm). Initialisation as TF1: both kernels drawn
from the Glorot-uniform range of the joint [input + units, 4 units] matrix, biases zero.
"""
import math

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common

STATE_OUTPUTS = ("last_h", "all")


def _lstm(units, input_size, return_sequences, name):
    """keras.layers.LSTM where a GPU can run its cuDNN kernel; elsewhere the same cell in a plain
    keras.layers.RNN, which builds ~20x faster (LSTM traces a cuDNN and a generic graph) and holds
    the same variables (`cell.kernel`, `cell.recurrent_kernel`, `cell.bias`), so checkpoints move
    between the two."""
    limit = math.sqrt(6.0 / (input_size + units + 4 * units))  # glorot over [in + u, 4u]
    arguments = dict(unit_forget_bias=True,
                     kernel_initializer=keras.initializers.RandomUniform(-limit, limit),
                     recurrent_initializer=keras.initializers.RandomUniform(-limit, limit))
    if tf.config.list_physical_devices("GPU"):
        return keras.layers.LSTM(units, return_sequences=return_sequences, return_state=True,
                                 name=name, **arguments)
    return keras.layers.RNN(keras.layers.LSTMCell(units, **arguments),
                            return_sequences=return_sequences, return_state=True, name=name)


@keras.utils.register_keras_serializable(package="yt8m")
class LstmEncoder(common.Layer):
    """[frames [B, T, N], num_frames [B]] -> the final state after each video's last valid frame:

    state_output "last_h": the last layer's h, [B, cells] (the starter's `state[-1].h`);
    state_output "all": every layer's (c, h) concatenated, [c_0, h_0, c_1, h_1, ...],
      [B, 2 * layers * cells] (Willow's MultiRNNCell(state_is_tuple=False) state).
    A video without valid frames gives the zero initial state.
    """

    def __init__(self, cells=1024, num_layers=2, state_output="last_h", **kwargs):
        super().__init__(**kwargs)
        if cells <= 0 or num_layers <= 0:
            raise ValueError(f"lstm_cells and lstm_layers must be positive, got {cells}, "
                             f"{num_layers}")
        if state_output not in STATE_OUTPUTS:
            raise ValueError(f"state_output={state_output!r} is not one of "
                             f"{', '.join(STATE_OUTPUTS)}")
        self.cells = int(cells)
        self.num_layers = int(num_layers)
        self.state_output = state_output

    def build(self, input_shape):
        size = int(input_shape[0][-1])
        self.lstms = []
        for index in range(self.num_layers):
            lstm = _lstm(self.cells, size, index < self.num_layers - 1, f"lstm_{index}")
            lstm.build(tf.TensorShape([None, None, size]))
            self.lstms.append(lstm)
            size = self.cells
        super().build(input_shape)

    def get_prunable_weights(self):
        return [weight for lstm in self.lstms
                for weight in (lstm.cell.kernel, lstm.cell.recurrent_kernel)]

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        mask = common.bool_frame_mask(num_frames, frames)
        outputs, states = frames, []
        for lstm in self.lstms:
            outputs, h, c = lstm(outputs, mask=mask, training=training)
            states += [c, h]
        if self.state_output == "last_h":
            return states[-1]
        return tf.concat(states, axis=-1)

    def get_config(self):
        return {**super().get_config(), "cells": self.cells, "num_layers": self.num_layers,
                "state_output": self.state_output}
