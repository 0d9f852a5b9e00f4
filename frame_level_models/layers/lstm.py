"""LSTM encoder (starter LstmModel): stacked LSTMs over the valid frames; the representation is the
last layer's output at each video's last valid frame (padded frames are masked, not run through)."""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import common


def _lstm(units, return_sequences, name):
    """keras.layers.LSTM where a GPU can run its cuDNN kernel; elsewhere the same cell in a plain
    keras.layers.RNN, which builds ~20x faster (LSTM traces a cuDNN and a generic graph) and holds
    the same variables (`cell.kernel`, `cell.recurrent_kernel`, `cell.bias`), so checkpoints move
    between the two. unit_forget_bias matches the starter's BasicLSTMCell(forget_bias=1.0)."""
    if tf.config.list_physical_devices("GPU"):
        return keras.layers.LSTM(units, return_sequences=return_sequences, unit_forget_bias=True,
                                 name=name)
    return keras.layers.RNN(keras.layers.LSTMCell(units, unit_forget_bias=True),
                            return_sequences=return_sequences, name=name)


@keras.utils.register_keras_serializable(package="yt8m")
class LstmEncoder(common.Layer):
    """[frames [B, T, N], num_frames [B]] -> [B, cells]."""

    def __init__(self, cells=1024, num_layers=2, **kwargs):
        super().__init__(**kwargs)
        if cells <= 0 or num_layers <= 0:
            raise ValueError(f"lstm_cells and lstm_layers must be positive, got {cells}, "
                             f"{num_layers}")
        self.cells = int(cells)
        self.num_layers = int(num_layers)
        self.lstms = [_lstm(self.cells, index < num_layers - 1, f"lstm_{index}")
                      for index in range(self.num_layers)]

    def build(self, input_shape):
        size = int(input_shape[0][-1])
        for lstm in self.lstms:
            lstm.build(tf.TensorShape([None, None, size]))
            size = self.cells
        super().build(input_shape)

    def get_prunable_weights(self):
        return [weight for lstm in self.lstms
                for weight in (lstm.cell.kernel, lstm.cell.recurrent_kernel)]

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        mask = common.bool_frame_mask(num_frames, frames)
        outputs = frames
        for lstm in self.lstms:
            outputs = lstm(outputs, mask=mask, training=training)
        return outputs

    def get_config(self):
        return {**super().get_config(), "cells": self.cells, "num_layers": self.num_layers}
