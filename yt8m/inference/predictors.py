"""Predictors: functions mapping a batch dict to predictions [B, V].

inference.py takes any of them, so a checkpoint, an exported SavedModel or an ensemble can write
the same submission.
"""
import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.training import inputs
from yt8m.training.objective import model_predictions


def inference_forward(model, jit_compile=False):
    """tf.function: model inputs -> the model's outputs at inference; with `jit_compile` the
    forward pass is one XLA program (the batch's string ids stay outside it)."""
    def forward(features):
        return model(features, training=False)

    return tf.function(forward, reduce_retracing=True, jit_compile=jit_compile)


def model_predictor(model, data_config, jit_compile=False):
    """Predictor around a Keras model (e.g. from `yt8m.training.checkpoints.load_model`);
    jit_compile: --jit_compile (XLA)."""
    forward = inference_forward(model, jit_compile)

    @tf.function(reduce_retracing=True)
    def predict(features):
        return model_predictions(forward(features))[0]

    def predict_batch(batch):
        return predict(inputs.model_inputs(batch, data_config))

    return predict_batch
