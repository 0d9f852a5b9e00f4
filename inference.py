"""Writes the Kaggle submission CSV from a train dir's checkpoint:
`python inference.py --train_dir=... --input_data_pattern=... --output_file=...`.

The model may also come from an archive written by --output_model_tgz (`--input_model_tgz`) or
from an exported ensemble (`--saved_model_dir`, docs/export.md). With --segment_labels: the
starter's segment mode (yt8m.segments.starter_inference), else the video-level CSV. train.py's
model flags (--model, --frame_features, the hyper-parameters, ...) are accepted as in the
references' inference commands; the model is the train dir's, and a warning names any flag that
differs from it. See docs/training.md.
"""
import dataclasses
import sys

from absl import flags

import yt8m  # noqa: F401
from yt8m import evaluation
from yt8m.core import cli
from yt8m.core import errors
from yt8m.core import files
from yt8m.core import options
from yt8m.core import model_flags as model_flags_lib
from yt8m.core.config import InferenceConfig, RecordedModelFlags
from yt8m.export import saved_model_predictor
from yt8m.inference import model_archive
from yt8m.inference import video_inference
from yt8m.segments import starter_inference
from yt8m.training import inputs

from frame_level_models import hparams


@dataclasses.dataclass
class SavedModelSource:
    saved_model_dir: str = options.option(
        "", "Predict with this SavedModel written by export_ensemble.py instead of a "
        "--train_dir checkpoint.")


FLAGS = flags.FLAGS
options.define_flags(InferenceConfig)
options.define_flags(SavedModelSource)
options.define_flags(RecordedModelFlags)
hparams.define_flags()


def _saved_model(config, saved_model_dir):
    """(predict, data_config) of --saved_model_dir, which replaces the train dir's checkpoint."""
    for flag, value in (("--train_dir", config.train_dir),
                        ("--input_model_tgz", config.input_model_tgz),
                        ("--output_model_tgz", config.output_model_tgz)):
        if value:
            raise errors.InvalidInputError(f"{flag} and --saved_model_dir exclude each other")
    return saved_model_predictor.load_saved_model_predictor(saved_model_dir,
                                                            num_readers=config.num_readers)


def _check_outputs(config, source):
    """--output_file (and --output_model_tgz) replace no input and do not lie inside one (a
    train dir's model_flags.json); an existing --output_file only with --overwrite."""
    model_inputs = [("--train_dir", config.train_dir),
                    ("--saved_model_dir", source.saved_model_dir),
                    ("--input_model_tgz", config.input_model_tgz)]
    if config.input_model_tgz:
        model_inputs.append(("--untar_model_dir", config.untar_model_dir))
    if config.segment_labels and "://" not in config.segment_label_ids_file:
        model_inputs.append(("--segment_label_ids_file", config.segment_label_ids_file))
    data_files = inputs.require_files(config.input_data_pattern, "--input_data_pattern")
    given = [(flag, path) for flag, path in model_inputs if path]
    given += [("--input_data_pattern", path) for path in data_files]
    files.check_output_file(config.output_file, "--output_file", config.overwrite, given)
    if config.output_model_tgz:
        files.check_output_path(config.output_model_tgz, "--output_model_tgz",
                                given + [("--output_file", config.output_file)])


def _warn_about_model_flags(config, source):
    """train.py's model flags on this command line (Willow's inference commands repeat them):
    the model comes from the train dir (or the SavedModel), so each differing one is reported."""
    recorded_flags, given_hparams = evaluation.given_model_flags(FLAGS)
    if not given_hparams and recorded_flags == RecordedModelFlags():
        return
    if source.saved_model_dir:
        given = [name for name, value in dataclasses.asdict(recorded_flags).items()
                 if value is not None] + sorted(given_hparams)
        warnings = [f"--{name} is ignored: the model comes from --saved_model_dir"
                    for name in given]
    else:
        warnings = evaluation.model_flag_warnings(
            model_flags_lib.read_model_flags(config.train_dir), recorded_flags, given_hparams)
    for warning in warnings:
        print(f"inference.py: warning: {warning}", file=sys.stderr, flush=True)


def main():
    config = options.from_flags(InferenceConfig)
    source = options.from_flags(SavedModelSource)
    _check_outputs(config, source)
    predict = data_config = None
    if source.saved_model_dir:
        predict, data_config = _saved_model(config, source.saved_model_dir)
    config = model_archive.use_input_archive(config)
    _warn_about_model_flags(config, source)
    if config.segment_labels:
        result = starter_inference.run_starter_segment_inference(config, predict, data_config)
        print(f"inference.py: wrote {result.num_rows} classes ({result.num_segments} segments "
              f"scored) to {config.output_file}", flush=True)
    else:
        num_videos = video_inference.run_inference(config, predict, data_config)
        print(f"inference.py: wrote {num_videos} videos to {config.output_file}", flush=True)


if __name__ == "__main__":
    cli.run(main, "inference.py")
