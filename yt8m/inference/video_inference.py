"""inference.py's job: test shards -> predictor -> video-level submission CSV."""
from absl import logging

import dataclasses

import yt8m  # noqa: F401

from yt8m.inference import predictors
from yt8m.inference import submission
from yt8m.training import checkpoints
from yt8m.training import inputs
from yt8m.core import model_flags as model_flags_lib


def run_inference(config, predict=None, data_config=None):
    """Writes config.output_file from the files of config.input_data_pattern.

    Args:
      config: InferenceConfig.
      predict: optional predictor (batch -> predictions); default: the newest checkpoint of
        config.train_dir (or config.checkpoint).
      data_config: optional DataConfig of the files; default: from config.train_dir's
        model_flags.json (a SavedModel predictor brings its own, see inference.py).
    Returns:
      The number of videos written.
    """
    if not config.output_file:
        raise ValueError("--output_file is empty: give the path of the CSV to write")
    if data_config is None:
        model_flags = model_flags_lib.read_model_flags(config.train_dir)
        data_config = inputs.data_config_from_model_flags(model_flags, segment_labels=False,
                                                          frame_buckets=config.frame_buckets,
                                                          num_readers=config.num_readers)
    elif config.frame_buckets:  # a SavedModel predictor's own DataConfig
        data_config = dataclasses.replace(data_config, frame_buckets=config.frame_buckets)
    input_files = inputs.require_files(config.input_data_pattern, "--input_data_pattern")
    if predict is None:
        checkpoint_path = checkpoints.require_checkpoint(config.train_dir, config.checkpoint)
        model = checkpoints.load_model(config.train_dir, checkpoint_path)
        predict = predictors.model_predictor(model, data_config)
        logging.info("Predicting with %s", checkpoint_path)
    dataset = inputs.inference_dataset(input_files, data_config, config.batch_size)
    return submission.write_video_submission(config.output_file, dataset, predict, config.top_k)
