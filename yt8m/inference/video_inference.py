"""inference.py's job: test shards -> predictor -> video-level submission CSV."""
from absl import logging

import dataclasses

import yt8m  # noqa: F401

from yt8m.inference import model_archive
from yt8m.inference import predictors
from yt8m.inference import submission
from yt8m.training import checkpoints
from yt8m.training import inputs
from yt8m.core import model_flags as model_flags_lib
from yt8m.core import errors


def model_data_config(config, data_config=None):
    """The DataConfig of the files to predict: the model's (config.train_dir's model_flags.json,
    or a SavedModel predictor's own `data_config`) with config's reading choices."""
    if data_config is None:
        if not config.train_dir:
            raise errors.InvalidInputError(
                "--train_dir is empty: give the directory written by train.py, "
                "--input_model_tgz or --saved_model_dir")
        model_flags = model_flags_lib.read_model_flags(config.train_dir)
        return inputs.data_config_from_model_flags(model_flags, segment_labels=False,
                                                   frame_buckets=config.frame_buckets,
                                                   num_readers=config.num_readers,
                                                   skip_corrupted=config.skip_corrupted)
    # A SavedModel predictor's own DataConfig, with the reading choices of config.
    return dataclasses.replace(data_config, frame_buckets=config.frame_buckets or
                               data_config.frame_buckets, skip_corrupted=config.skip_corrupted)


def checkpoint_predictor(config, data_config):
    """Predictor of config.train_dir's newest checkpoint (or config.checkpoint); once the model is
    restored, bundles it into config.output_model_tgz when asked (before predicting, as the
    starter)."""
    checkpoint_path = checkpoints.require_checkpoint(config.train_dir, config.checkpoint)
    model = checkpoints.load_model(config.train_dir, checkpoint_path)
    if config.output_model_tgz:
        model_archive.write_model_archive(config.output_model_tgz, config.train_dir,
                                          checkpoint_path)
        logging.info("Bundled %s into %s", checkpoint_path, config.output_model_tgz)
    logging.info("Predicting with %s", checkpoint_path)
    return predictors.model_predictor(model, data_config, config.jit_compile)


def prepare_inference(config, predict=None, data_config=None):
    """What every mode of inference.py checks and loads first, in the starter's order: the output
    file, the model's inputs, the input files, then the model.

    Args:
      config: InferenceConfig.
      predict: optional predictor (batch -> predictions); default: the newest checkpoint of
        config.train_dir (or config.checkpoint).
      data_config: optional DataConfig of the files; default: from config.train_dir's
        model_flags.json (a SavedModel predictor brings its own, see inference.py).
    Returns:
      (input files, predict, data_config).
    """
    if not config.output_file:
        raise errors.InvalidInputError("--output_file is empty: give the path of the CSV to write")
    data_config = model_data_config(config, data_config)
    input_files = inputs.require_files(config.input_data_pattern, "--input_data_pattern")
    if predict is None:
        predict = checkpoint_predictor(config, data_config)
    return input_files, predict, data_config


def run_inference(config, predict=None, data_config=None):
    """Writes the video-level CSV config.output_file from the files of config.input_data_pattern
    (arguments: see prepare_inference). Returns the number of videos written."""
    input_files, predict, data_config = prepare_inference(config, predict, data_config)
    dataset = inputs.inference_dataset(input_files, data_config, config.batch_size)
    return submission.write_video_submission(config.output_file, dataset, predict, config.top_k)
