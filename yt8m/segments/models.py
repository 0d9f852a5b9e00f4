"""Loads the video or segment model of segment inference from a train dir or an exported SavedModel.

Either way the result is a predictor (reader batch -> predictions [B, V]) and the DataConfig of
what it reads, so the pipeline does not care which one it got.
"""
import os

from absl import logging

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.export import saved_model_predictor
from yt8m.inference import predictors
from yt8m.training import checkpoints
from yt8m.training import inputs
from yt8m.core import model_flags as model_flags_lib
from yt8m.core import errors


def load_predictor(path, flag, num_readers=1):
    """(predict_batch, data_config) for `path`: a train dir (model_flags.json + checkpoint) or a
    SavedModel written by export_ensemble.py. Errors name `flag`."""
    if not path:
        raise errors.InvalidInputError(
            f"{flag} is empty: give a train dir or a SavedModel directory")
    if tf.io.gfile.exists(model_flags_lib.model_flags_path(path)):
        model_flags = model_flags_lib.read_model_flags(path)
        if not model_flags.get("frame_features"):
            raise errors.InvalidInputError(
                f"{flag}={path!r} holds the video-level model "
                f"{model_flags['model']!r}; segment inference reads frame-level "
                "files and needs a frame-level model")
        data_config = inputs.data_config_from_model_flags(model_flags, segment_labels=False,
                                                          num_readers=num_readers)
        checkpoint = checkpoints.latest_checkpoint(path)
        model = checkpoints.load_model(path, checkpoint)
        logging.info("%s: %s from %s", flag, model_flags["model"], checkpoint)
        return predictors.model_predictor(model, data_config), data_config
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        logging.info("%s: SavedModel %s", flag, path)
        return saved_model_predictor.load_saved_model_predictor(path, num_readers)
    raise errors.MissingInputError(
        f"{flag}={path!r} is neither a train dir (no model_flags.json) nor a "
        "SavedModel (no saved_model.pb)")
