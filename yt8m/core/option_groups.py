"""Groups of options several tools share (the starter's vocabulary), declared once.

A tool's config inherits a whole group (`class EvalConfig(CheckpointSelection, Batching)`) or
takes one of its options with another default or help (`options.override(Batching, "batch_size",
8192)`). The feature-list parser of the whole project lives here too, beside the group it checks.
"""
import dataclasses
from typing import Optional

import yt8m  # noqa: F401
from yt8m.core.options import Items, option
from yt8m.core import errors

FEATURE_SIZE_ITEMS = Items(int, "an integer", quote_value=True)
FRAME_BUCKET_ITEMS = Items(int, "an integer number of frames", quote_value=True)


def _text(values):
    return values if isinstance(values, str) else ",".join(str(value) for value in values)


def parse_features(feature_names, feature_sizes):
    """Feature names and sizes, as comma-separated strings ('rgb,audio', '1024,128': flags and
    model_flags.json) or sequences -> (('rgb', 'audio'), (1024, 128)); errors name the flags."""
    names_text, sizes_text = _text(feature_names), _text(feature_sizes)
    names = tuple(name.strip() for name in names_text.split(",") if name.strip())
    if not names:
        raise errors.InvalidInputError(
            "--feature_names is empty; give comma-separated names such as rgb,audio")
    sizes = FEATURE_SIZE_ITEMS(sizes_text, "--feature_sizes")
    if any(size <= 0 for size in sizes):
        raise errors.InvalidInputError(f"--feature_sizes={sizes_text!r}: sizes must be positive")
    if len(names) != len(sizes):
        raise errors.InvalidInputError(
            f"--feature_names has {len(names)} names ({names_text!r}) but --feature_sizes has "
            f"{len(sizes)} sizes ({sizes_text!r}); give one size per feature")
    if len(set(names)) != len(names):
        raise errors.InvalidInputError(f"--feature_names={names_text!r} repeats a name")
    return names, sizes


@dataclasses.dataclass
class InputFeatures:
    """What the input files hold. Names and sizes may be given as 'a,b' strings; they are kept as
    tuples."""
    feature_names: tuple[str, ...] = option(
        ("mean_rgb",), "Comma-separated feature names to read (rgb,audio or mean_rgb,mean_audio).")
    feature_sizes: tuple[int, ...] = option(
        (1024,), "Comma-separated feature dimensions, one per --feature_names entry.",
        parse=FEATURE_SIZE_ITEMS)
    frame_features: bool = option(
        False, "Read frame-level SequenceExamples (else video-level Examples).")
    num_classes: int = option(
        3862, "Vocabulary size (3862 for YouTube-8M 2018/2019; smaller for synthetic).", lower=1)
    max_frames: int = option(300, "Frames kept per video (truncate / zero-pad).", lower=1)

    def __post_init__(self):
        self.feature_names, self.feature_sizes = parse_features(self.feature_names,
                                                                self.feature_sizes)


@dataclasses.dataclass
class Batching:
    """How many examples a step reads, from how many files at once."""
    batch_size: int = option(1024, "Examples per batch.", lower=1)
    num_readers: int = option(8, "Files read in parallel.", lower=1)


@dataclasses.dataclass
class CorruptRecords:
    """What a reader does with a record that fails its TFRecord checksum."""
    skip_corrupted: bool = option(
        False, "Skip records whose TFRecord checksum fails (or that do not parse) with a count on "
        "stderr, and go on reading the file after them; a broken length field still ends its "
        "file. Default: stop with an error naming the file and byte.")


@dataclasses.dataclass
class CheckpointSelection:
    """Which trained model a tool reads: a train dir and, optionally, one of its checkpoints."""
    train_dir: str = option("/tmp/yt8m_model/", "Directory written by train.py.")
    checkpoint: Optional[str] = option(
        None, "Use this checkpoint path instead of the newest in --train_dir.")


@dataclasses.dataclass
class TopK:
    top_k: int = option(20, "Classes per video in the CSV.", lower=1)


@dataclasses.dataclass
class FrameBuckets:
    frame_buckets: tuple[int, ...] = option(
        (), "Length bucketing for frame-level data: comma-separated bucket upper bounds in "
        "frames (e.g. 60,120,180,240,300; max_frames is added). Videos of one bucket are batched "
        "together and padded to its bound instead of max_frames: same predictions, less padded "
        "work, another video order. Empty: off (every video padded to max_frames, as the "
        "starter code).", parse=FRAME_BUCKET_ITEMS)


@dataclasses.dataclass
class StepCompilation:
    jit_compile: bool = option(
        False, "Compile the step functions with XLA (tf.function(jit_compile=True)). Worth it on "
        "GPUs and TPUs; on CPU it measured no gain (docs/training.md). Every new frame count "
        "(--frame_buckets) compiles once more.")


@dataclasses.dataclass
class PredictionFiles:
    """What a prediction tool reads and the CSV it writes."""
    input_data_pattern: str = option("", "Glob of the TFRecord files to predict.")
    output_file: str = option("", "Submission CSV to write (atomically).")
    overwrite: bool = option(False, "Replace an existing --output_file (never an input).")
