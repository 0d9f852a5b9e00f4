"""Predictors: functions mapping a batch dict to predictions [B, V].

inference.py takes any of them, so a checkpoint, an exported SavedModel or an ensemble can write
the same submission.
"""
import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.training import inputs
from yt8m.training.objective import model_predictions


def model_predictor(model, data_config):
    """Predictor around a Keras model (e.g. from `yt8m.training.checkpoints.load_model`)."""

    @tf.function(reduce_retracing=True)
    def predict(features):
        return model_predictions(model(features, training=False))[0]

    def predict_batch(batch):
        return predict(inputs.model_inputs(batch, data_config))

    return predict_batch
