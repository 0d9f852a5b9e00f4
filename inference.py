"""Writes the video-level Kaggle submission CSV from a train dir's checkpoint:
`python inference.py --train_dir=... --input_data_pattern=... --output_file=...`,
or from an exported ensemble: `--saved_model_dir=...` in place of --train_dir (docs/export.md).
See docs/training.md.
"""
import dataclasses

import yt8m  # noqa: F401
from yt8m.core import cli
from yt8m.core import files
from yt8m.core import options
from yt8m.core.config import InferenceConfig
from yt8m.export import saved_model_predictor
from yt8m.inference import video_inference
from yt8m.training import inputs


@dataclasses.dataclass
class SavedModelSource:
    saved_model_dir: str = options.option(
        "", "Predict with this SavedModel written by export_ensemble.py instead of a "
        "--train_dir checkpoint.")


options.define_flags(InferenceConfig)
options.define_flags(SavedModelSource)


def _inputs(config, source):
    """What --output_file must not replace nor lie inside: the data files and the model."""
    model = (("--saved_model_dir", source.saved_model_dir) if source.saved_model_dir
             else ("--train_dir", config.train_dir))
    data_files = inputs.require_files(config.input_data_pattern, "--input_data_pattern")
    return [model] + [("--input_data_pattern", path) for path in data_files]


def main():
    config = options.from_flags(InferenceConfig)
    source = options.from_flags(SavedModelSource)
    files.check_output_file(config.output_file, "--output_file", config.overwrite,
                            _inputs(config, source))
    predict = data_config = None
    if source.saved_model_dir:
        predict, data_config = saved_model_predictor.load_saved_model_predictor(
            source.saved_model_dir, num_readers=config.num_readers)
    num_videos = video_inference.run_inference(config, predict, data_config)
    print(f"inference.py: wrote {num_videos} videos to {config.output_file}", flush=True)


if __name__ == "__main__":
    cli.run(main, "inference.py")
