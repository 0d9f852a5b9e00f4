"""Options the benchmarks share, declared once (yt8m.core.options): a benchmark's options are a
dataclass that inherits the groups it uses and gives them its own defaults with `override`.

    @dataclasses.dataclass
    class Options(bench_options.Output, bench_options.SyntheticScale, bench_options.Quick):
        output_dir: str = override(bench_options.Output, "output_dir", "bench/output/x")
        num_videos: int = override(bench_options.SyntheticScale, "num_videos", 600)

    options.define_flags(Options)                     # at import, as absl wants
    def main(argv): opts = options.from_flags(Options)

The synthetic-data options reuse the declarations of yt8m.synthetic.Config (the generator's flags).
"""
import dataclasses
import json

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
from yt8m.core.options import option, override
from yt8m.synthetic import Config as SyntheticConfig


def _json_object(text, label):
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{label}={text!r} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{label}={text!r}: give a JSON object of yt8m.synthetic.Config fields")
    return text


@dataclasses.dataclass
class Output:
    output_dir: str = option("bench/output", "Where the data, train dirs and results go.")


@dataclasses.dataclass
class Seed:
    seed: int = option(0, "Generator and training seed.")


@dataclasses.dataclass
class Quick:
    """A toy-scale run that checks a benchmark works; the benchmark says which options it sets."""
    quick: bool = option(False, "Toy scale: a few minutes that check the benchmark runs "
                         "(overrides the scale options).")

    def scaled(self, **toy):
        """This record, with the `toy` values when --quick."""
        return dataclasses.replace(self, **toy) if self.quick else self


@dataclasses.dataclass
class SyntheticScale:
    """How large the synthetic set is (yt8m.synthetic)."""
    num_videos: int = override(SyntheticConfig, "num_videos", lower=1)
    num_classes: int = override(SyntheticConfig, "num_classes", lower=1)


@dataclasses.dataclass
class FrameRange:
    """Video lengths of the synthetic set; max_frames is the readers' max_frames too."""
    min_frames: int = override(SyntheticConfig, "min_frames", lower=1)
    max_frames: int = override(SyntheticConfig, "max_frames", lower=1,
                               help="Longest synthetic video (and the readers' max_frames).")


@dataclasses.dataclass
class Generation:
    """How the synthetic set is written beyond its scale."""
    validate_fraction: float = override(SyntheticConfig, "validate_fraction", 0.2, lower=0.0,
                                         upper=1.0)
    num_workers: int = option(2, "Generator processes (the bytes do not depend on it).", lower=1)
    generator_options: str = option(
        "{}", "JSON object of more yt8m.synthetic.Config fields, e.g. '{\"rgb_atom_norm\": 6}', "
        "to study how the settings change the difficulty.", parse=_json_object)

    def generator_fields(self):
        return json.loads(self.generator_options)


@dataclasses.dataclass
class Optimization:
    batch_size: int = option(32, "Training batch size.", lower=1)
    learning_rate: float = option(1e-3, "Adam learning rate.", lower=0.0)


@dataclasses.dataclass
class VideoLearningRate:
    """Benchmarks that train frame- and video-level models give the latter their own rate."""
    video_learning_rate: float = option(1e-2, "Adam learning rate of the video-level models.",
                                        lower=0.0)


@dataclasses.dataclass
class BatchNorm:
    bn_momentum: float = option(
        0.99, "Momentum of every batch norm of the models (the bn_momentum hparam). The "
        "references' 0.999 needs thousands of steps before the moving statistics used at "
        "evaluation settle; a benchmark run has a few hundred.", lower=0.0, upper=1.0)


@dataclasses.dataclass
class TrainFrames:
    train_frames: int = option(
        48, "Random frames per training video; evaluation uses every frame.", lower=1)


@dataclasses.dataclass
class NeXtVLADSize:
    """NeXtVLAD at CPU scale (the paper: K=128, G=8, H=2048)."""
    cluster_size: int = option(16, "NeXtVLAD K (paper 128).", lower=1)
    groups: int = option(8, "NeXtVLAD G (paper 8).", lower=1)
    hidden_size: int = option(128, "NeXtVLAD H (paper 2048).", lower=1)


@dataclasses.dataclass
class Timing:
    passes: int = option(3, "Timed passes (after one warm-up pass); the best one is reported.",
                         lower=1)


@dataclasses.dataclass
class SpeedBatches:
    speed_batches: int = option(8, "Validation batches timed per pass.", lower=1)


@dataclasses.dataclass
class Reuse:
    reuse: bool = option(True, "Keep the results of runs already done with the same settings.")


def synthetic_settings(opts, **fixed):
    """The yt8m.synthetic.Config fields the groups of `opts` hold (scale, frame range, seed,
    validate fraction), then `fixed`, then --generator_options."""
    settings = {}
    for group in (SyntheticScale, FrameRange, Seed):
        if isinstance(opts, group):
            settings.update({field.name: getattr(opts, field.name)
                             for field in dataclasses.fields(group)})
    if isinstance(opts, Generation):
        settings["validate_fraction"] = opts.validate_fraction
    settings.update(fixed)
    if isinstance(opts, Generation):
        settings.update(opts.generator_fields())
    return settings
