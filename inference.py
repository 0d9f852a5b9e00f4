"""Writes the video-level Kaggle submission CSV from a train dir's checkpoint:
`python inference.py --train_dir=... --input_data_pattern=... --output_file=...`,
or from an exported ensemble: `--saved_model_dir=...` in place of --train_dir (docs/export.md).
See docs/training.md.
"""
from absl import flags

import yt8m  # noqa: F401
from yt8m.export import saved_model_predictor
from yt8m.inference import video_inference
from yt8m.training import cli
from yt8m.training import flags as training_flags

FLAGS = flags.FLAGS
training_flags.define_inference_flags()
flags.DEFINE_string("saved_model_dir", "", "Predict with this SavedModel written by "
                    "export_ensemble.py instead of a --train_dir checkpoint.")


def main():
    config = training_flags.inference_config_from_flags(FLAGS)
    predict = data_config = None
    if FLAGS.saved_model_dir:
        predict, data_config = saved_model_predictor.load_saved_model_predictor(
            FLAGS.saved_model_dir, num_readers=config.num_readers)
    num_videos = video_inference.run_inference(config, predict, data_config)
    print(f"inference.py: wrote {num_videos} videos to {config.output_file}", flush=True)


if __name__ == "__main__":
    cli.run(main, "inference.py")
