"""Writes the video-level Kaggle submission CSV from a train dir's checkpoint:
`python inference.py --train_dir=... --input_data_pattern=... --output_file=...`.
See docs/training.md.
"""
from absl import flags

import yt8m  # noqa: F401
from yt8m.inference import video_inference
from yt8m.training import cli
from yt8m.training import flags as training_flags

FLAGS = flags.FLAGS
training_flags.define_inference_flags()


def main():
    config = training_flags.inference_config_from_flags(FLAGS)
    num_videos = video_inference.run_inference(config)
    print(f"inference.py: wrote {num_videos} videos to {config.output_file}", flush=True)


if __name__ == "__main__":
    cli.run(main, "inference.py")
