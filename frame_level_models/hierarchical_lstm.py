"""HierarchicalLstmModel: the teacher of the frame-skipping paper (SPEC 5).

A video is a sequence of blocks of `hlstm_block_frames` frames. Per feature stream, a lower stacked
LSTM encodes each block (its state at the block's last valid frame), an upper stacked LSTM encodes
the sequence of block encodings (its state at the last valid block); the streams' final states are
concatenated (late fusion, SPEC 4) into the video representation, then the video-level classifier.
Padded frames are masked at both levels: a block is valid when it holds at least one valid frame.

The paper's configuration: 2-layer LSTMs of 1024 cells at both levels, blocks of 20 frames for the
teacher and 3-5 for students that see fewer frames.
"""
import yt8m  # noqa: F401
import tensorflow as tf

import tf_keras as keras

from frame_level_models import lstm_model
from frame_level_models import model_parts
from frame_level_models.hparams import integer
from frame_level_models.layers import common
from frame_level_models.layers.lstm import LstmEncoder
from frame_level_models.registry import register

HPARAMS = lstm_model.LSTM_HPARAMS + (
    integer("hlstm_block_frames", 20, "HierarchicalLstmModel: frames per block of the lower LSTM "
            "(the paper: 20 for the teacher, 3-5 for frame-skipping students)."),
) + model_parts.CLASSIFIER_HPARAMS + model_parts.FRAME_SAMPLING_HPARAMS + (
    model_parts.BN_MOMENTUM,)


@keras.utils.register_keras_serializable(package="yt8m")
class HierarchicalLstmEncoder(common.Layer):
    """[frames [B, T, N], num_frames [B]] -> [B, cells]: an LSTM over LSTM block encodings."""

    def __init__(self, cells=1024, num_layers=2, block_frames=20, **kwargs):
        super().__init__(**kwargs)
        if block_frames <= 0:
            raise ValueError(f"hlstm_block_frames must be positive, got {block_frames}")
        self.cells = int(cells)
        self.num_layers = int(num_layers)
        self.block_frames = int(block_frames)
        self.block_encoder = LstmEncoder(cells, num_layers, name="block_lstm")
        self.video_encoder = LstmEncoder(cells, num_layers, name="video_lstm")

    def build(self, input_shape):
        frames_shape = tf.TensorShape(input_shape[0])
        self.block_encoder.build([tf.TensorShape([None, self.block_frames, frames_shape[-1]]),
                                  tf.TensorShape([None])])
        self.video_encoder.build([tf.TensorShape([None, None, self.cells]), tf.TensorShape([None])])
        super().build(input_shape)

    def get_prunable_weights(self):
        return self.block_encoder.get_prunable_weights() + self.video_encoder.get_prunable_weights()

    def call(self, inputs, training=None):
        frames, num_frames = inputs
        num_frames = tf.cast(num_frames, tf.int32)
        length = self.block_frames
        batch_size, time = tf.shape(frames)[0], tf.shape(frames)[1]
        num_blocks = tf.maximum((time + length - 1) // length, 1)
        # Pad the time axis to whole blocks, then fold the blocks into the batch axis.
        padded = tf.pad(frames, [[0, 0], [0, num_blocks * length - time], [0, 0]])
        blocks = tf.reshape(padded, [batch_size * num_blocks, length, tf.shape(frames)[2]])
        block_starts = tf.range(num_blocks) * length
        frames_in_block = tf.clip_by_value(num_frames[:, None] - block_starts[None, :], 0, length)
        encoded = self.block_encoder([blocks, tf.reshape(frames_in_block, [-1])],
                                     training=training)
        encoded = tf.reshape(encoded, [batch_size, num_blocks, self.cells])
        valid_blocks = (num_frames + length - 1) // length
        return self.video_encoder([encoded, valid_blocks], training=training)

    def get_config(self):
        return {**super().get_config(), "cells": self.cells, "num_layers": self.num_layers,
                "block_frames": self.block_frames}


def lstm_flops(input_size, cells, num_layers, steps):
    """Multiply-add FLOPs (2 per multiply-add) of the gate matmuls of a stacked LSTM run for
    `steps` steps: per layer and step 2 * 4 * cells * (layer input size + cells)."""
    total = 0
    size = input_size
    for _ in range(num_layers):
        total += 2 * 4 * cells * (size + cells) * steps
        size = cells
    return total


def inference_flops(num_frames, feature_sizes, cells, num_layers, block_frames, num_classes,
                    classifier="LogisticModel", moe_num_mixtures=2):
    """Matmul FLOPs of the model on one video of `num_frames` valid frames (the recurrent steps
    over valid frames and valid blocks, plus the classifier). An estimate for comparing teachers
    and frame-skipping students: element-wise gate arithmetic is left out."""
    num_blocks = -(-num_frames // block_frames)
    total = 0
    for size in feature_sizes:
        total += lstm_flops(size, cells, num_layers, num_frames)
        total += lstm_flops(cells, cells, num_layers, num_blocks)
    embedding = cells * len(feature_sizes)
    if classifier == "LogisticModel":
        total += 2 * embedding * num_classes
    else:  # MoE: gates (M + 1 per class) and experts (M per class)
        total += 2 * embedding * num_classes * (2 * moe_num_mixtures + 1)
    return total


@register("HierarchicalLstmModel", frame_level=True, hparams=HPARAMS,
          description="Hierarchical LSTM (blocks of --hlstm_block_frames frames, then blocks), "
                      "the frame-skipping paper's teacher; video-level classifier.")
def hierarchical_lstm_model(inputs, num_classes, names, sizes, hp):
    streams, num_frames = model_parts.frame_streams(inputs, names, hp)
    states = [HierarchicalLstmEncoder(hp.lstm_cells, hp.lstm_layers, hp.hlstm_block_frames,
                                      name=f"{name}_hierarchical_lstm")([stream, num_frames])
              for name, stream in zip(names, streams)]
    embedding = model_parts.concat(states, "hierarchical_lstm_concat")
    return model_parts.classifier_outputs(hp.video_level_classifier_model, embedding,
                                          num_classes, hp)
