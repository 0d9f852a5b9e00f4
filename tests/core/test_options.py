"""yt8m.core.options: absl flags generated from typed dataclass configs and parsed back; the shared
groups; every tool's config round-trips its defaults through its flags."""
import dataclasses
import sys
from typing import Optional

import pytest
from absl import flags

import yt8m  # noqa: F401
from yt8m.beam_inference import BeamInferenceConfig
from yt8m.core import options
from yt8m.core.config import DataConfig, EvalConfig, InferenceConfig, LocalDevices, TrainConfig
from yt8m.core.option_groups import Batching, TopK, parse_features
from yt8m.core.options import Items, option, override
from yt8m.distillation.config import DistillConfig
from yt8m.distillation.teacher_cache import TeacherCacheOptions
from yt8m.export.exporter import ExportConfig
from yt8m.segments.evaluate import SegmentEvaluationOptions
from yt8m.segments.finetune import FinetuneOptions
from yt8m.segments.inference import SegmentInferenceConfig
from yt8m.synthetic import Config as SyntheticConfig


@dataclasses.dataclass
class Inner:
    depth: int = option(3, "Depth of the inner thing.", lower=1, upper=9)


@dataclasses.dataclass
class Sample:
    name: str = option("a", "A name.")
    count: int = option(2, "A count.", lower=0)
    rate: float = option(0.5, "A rate.", lower=0.0, upper=1.0)
    fast: bool = option(True, "Go fast.")
    mode: str = option("x", "A mode.", choices=("x", "y"))
    limit: Optional[int] = option(None, "An optional limit.")
    sizes: tuple[int, ...] = option((4, 5), "Sizes.")
    weights: Optional[list[float]] = option(None, "Weights.")
    renamed: str = option("r", "A field whose flag has another name.", flag="other_name")
    inner: Inner = dataclasses.field(default_factory=Inner)
    computed: dict = dataclasses.field(default_factory=dict)  # not a flag


def _parse(config_class, argv):
    flag_values = flags.FlagValues()
    options.define_flags(config_class, flag_values)
    flag_values(["prog", *argv])
    return flag_values, options.from_flags(config_class, flag_values)


def test_generated_flags_have_the_declared_names_defaults_help_and_types():
    flag_values = flags.FlagValues()
    names = options.define_flags(Sample, flag_values)
    assert names == ["name", "count", "rate", "fast", "mode", "limit", "sizes", "weights",
                     "other_name", "depth"]
    expected = {  # name: (default, help, flag type)
        "name": ("a", "A name.", "string"),
        "count": (2, "A count.", "int"),
        "rate": (0.5, "A rate.", "float"),
        "fast": (True, "Go fast.", "bool"),
        "mode": ("x", "<x|y>: A mode.", "string enum"),  # absl lists the choices
        "limit": (None, "An optional limit.", "int"),
        "sizes": (["4", "5"], "Sizes.", "comma separated list of strings"),
        "weights": ([], "Weights.", "comma separated list of strings"),
        "other_name": ("r", "A field whose flag has another name.", "string"),
        "depth": (3, "Depth of the inner thing.", "int"),
    }
    for name, (default, help_text, flag_type) in expected.items():
        flag = flag_values[name]
        assert (flag.default, flag.help, flag.flag_type()) == (default, help_text, flag_type), name
    assert "renamed" not in flag_values and "computed" not in flag_values
    assert flag_values["mode"].parser.enum_values == ["x", "y"]


def test_the_flags_are_key_flags_of_the_module_that_defines_them():
    # A tool's --helpshort lists the key flags of its main module: those it defined through
    # define_flags, not flags of yt8m.core.options.
    flag_values = flags.FlagValues()
    names = options.define_flags(Sample, flag_values)
    key_flags = flag_values.get_key_flags_for_module(sys.modules[__name__])
    assert sorted(flag.name for flag in key_flags) == sorted(names)
    assert not flag_values.get_key_flags_for_module(options)


@pytest.mark.parametrize("argv", [["--count=-1"], ["--rate=1.5"], ["--depth=0"], ["--depth=10"],
                                  ["--mode=z"], ["--count=many"]])
def test_bounds_choices_and_types_are_enforced_when_parsing(argv):
    with pytest.raises(flags.IllegalFlagValueError):
        _parse(Sample, argv)


def test_parsed_flags_become_the_config():
    _, config = _parse(Sample, [])
    assert config == Sample()  # the defaults round-trip
    _, config = _parse(Sample, [
        "--name=b", "--count=0", "--rate=1", "--nofast", "--mode=y", "--limit=7",
        "--sizes=1, 2,3", "--weights=0.25,0.75", "--other_name=q", "--depth=9"])
    assert config == Sample(name="b", count=0, rate=1.0, fast=False, mode="y", limit=7,
                            sizes=(1, 2, 3), weights=[0.25, 0.75], renamed="q", inner=Inner(9))
    assert isinstance(config.sizes, tuple) and isinstance(config.weights, list)


def test_fields_that_are_not_flags_are_given_directly():
    flag_values, _ = _parse(Sample, ["--count=5"])
    config = options.from_flags(Sample, flag_values, computed={"k": 1})
    assert (config.count, config.computed) == (5, {"k": 1})
    with pytest.raises(TypeError, match="Sample has no field"):
        options.from_flags(Sample, flag_values, nonsense=1)


def test_list_errors_name_the_flag_and_the_item():
    with pytest.raises(ValueError, match=r"^--sizes: 'x' is not an integer$"):
        _parse(Sample, ["--sizes=1,x"])
    with pytest.raises(ValueError, match=r"^--weights: 'heavy' is not a number$"):
        _parse(Sample, ["--weights=heavy"])
    quoting = Items(int, "a frame count", quote_value=True)
    assert quoting(["1", " 2"], "--frames") == (1, 2)
    assert quoting("3,4", "--frames") == (3, 4)
    with pytest.raises(ValueError, match=r"^--frames='1,two': 'two' is not a frame count$"):
        quoting(["1", "two"], "--frames")


def test_an_option_needs_help_and_a_supported_type():
    with pytest.raises(TypeError, match="help"):
        option(1)

    @dataclasses.dataclass
    class Bad:
        table: dict = option(None, "A dict cannot be a flag.")

    with pytest.raises(TypeError, match=r"Bad.table: unsupported option type"):
        options.define_flags(Bad, flags.FlagValues())


def test_a_required_option_must_be_given():
    @dataclasses.dataclass
    class Needs:
        path: Optional[str] = option(None, "Where.", required=True)

    with pytest.raises(flags.IllegalFlagValueError, match="--path"):
        _parse(Needs, [])
    assert _parse(Needs, ["--path=/x"])[1] == Needs("/x")


def test_an_enum_option_whose_default_is_not_a_choice_is_unset_by_default():
    @dataclasses.dataclass
    class Maybe:
        mode: str = option("", "Mode, or nothing.", choices=("on", "off"))

    flag_values, config = _parse(Maybe, [])
    assert flag_values["mode"].default is None and config == Maybe("")
    assert _parse(Maybe, ["--mode=on"])[1] == Maybe("on")


@dataclasses.dataclass
class Format:
    format: str = option("plain", "Output format.", choices=("plain", "fancy", "bold"),
                         deprecated_aliases={"fancy": "fancy", "bold": "bold"})


def test_deprecated_aliases_print_one_notice_and_set_the_option(capsys):
    assert _parse(Format, ["--fancy"])[1] == Format("fancy")
    assert capsys.readouterr().err == "warning: --fancy is deprecated; use --format=fancy\n"
    assert _parse(Format, ["--bold", "--format=bold"])[1] == Format("bold")
    assert capsys.readouterr().err == "warning: --bold is deprecated; use --format=bold\n"
    assert _parse(Format, [])[1] == Format("plain")
    assert capsys.readouterr().err == ""
    flag_values = flags.FlagValues()
    options.define_flags(Format, flag_values)
    assert flag_values["fancy"].help == "Deprecated: use --format=fancy."


@pytest.mark.parametrize("argv, message", [
    (["--fancy", "--bold"], "--fancy and --bold exclude each other: choose one format"),
    (["--fancy", "--format=plain"], "--fancy contradicts --format=plain: give only --format"),
])
def test_conflicting_deprecated_aliases_are_an_error(argv, message):
    with pytest.raises(ValueError) as error:
        _parse(Format, argv)
    assert str(error.value) == message


def test_an_alias_is_another_name_of_the_same_flag():
    @dataclasses.dataclass
    class Steps:
        max_steps: Optional[int] = option(None, "Stop here.", lower=1, aliases=("max_step",))

    assert options.flag_names(Steps) == ["max_steps", "max_step"]
    assert _parse(Steps, ["--max_step=7"])[1].max_steps == 7
    assert _parse(Steps, ["--max_step=7", "--max_steps=9"])[1].max_steps == 9  # the last wins
    assert _parse(Steps, [])[1].max_steps is None
    # Willow's README spelling reaches train.py's --max_steps.
    assert _parse(TrainConfig, ["--max_step=700000"])[1].max_steps == 700000


def test_override_changes_the_default_and_keeps_the_rest():
    @dataclasses.dataclass
    class Small(Batching):
        batch_size: int = override(Batching, "batch_size", 16)
        top_k: int = override(TopK, "top_k", help="Top classes.")

    flag_values, config = _parse(Small, [])
    assert (config.batch_size, config.num_readers, config.top_k) == (16, 8, 20)
    assert flag_values["batch_size"].help == "Examples per batch."
    assert flag_values["top_k"].help == "Top classes."
    with pytest.raises(flags.IllegalFlagValueError):  # the group's bound came along
        _parse(Small, ["--batch_size=0"])


def test_groups_are_shared_by_the_tools():
    def flag(config_class, name):
        flag_values = flags.FlagValues()
        options.define_flags(config_class, flag_values)
        return flag_values[name]

    # One declaration, per-tool defaults: eval 1024, inference 512 (the starter's).
    assert (flag(EvalConfig, "batch_size").default, flag(InferenceConfig, "batch_size").default,
            flag(TrainConfig, "batch_size").default) == (1024, 512, 1024)
    assert flag(EvalConfig, "batch_size").help == flag(InferenceConfig, "batch_size").help
    for config_class in (EvalConfig, InferenceConfig, TeacherCacheOptions):
        assert flag(config_class, "num_readers").help == "Files read in parallel."
    for config_class in (SegmentInferenceConfig, BeamInferenceConfig):
        assert flag(config_class, "segment_top_k").default == 100000
        assert flag(config_class, "video_score_weight").default == 0.05
    assert flag(EvalConfig, "frame_buckets").help == flag(TrainConfig, "frame_buckets").help


def test_a_nested_group_is_flattened():
    flag_values, config = _parse(TrainConfig, ["--feature_names=rgb,audio",
                                               "--feature_sizes=1024,128", "--frame_features",
                                               "--frame_buckets=60,120", "--num_readers=3"])
    assert config.data == DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                                     frame_features=True, frame_buckets=(60, 120), num_readers=3)


def test_feature_lists_are_parsed_once_for_flags_records_and_configs():
    assert parse_features("rgb, audio", "1024,128") == (("rgb", "audio"), (1024, 128))
    assert parse_features(["rgb"], (1024,)) == (("rgb",), (1024,))
    assert DataConfig(feature_names="rgb,audio", feature_sizes="1024,128").feature_sizes == (
        1024, 128)
    with pytest.raises(ValueError, match=r"^--feature_sizes='big': 'big' is not an integer$"):
        _parse(TrainConfig, ["--feature_sizes=big"])
    with pytest.raises(ValueError, match=r"^--feature_sizes='0': sizes must be positive$"):
        DataConfig(feature_sizes=(0,))
    with pytest.raises(ValueError, match=r"^--feature_names is empty"):
        parse_features("", "")


@pytest.mark.parametrize("config_class", [
    TrainConfig, LocalDevices, EvalConfig, InferenceConfig, ExportConfig, DistillConfig,
    FinetuneOptions, SegmentInferenceConfig, SegmentEvaluationOptions, BeamInferenceConfig,
    TeacherCacheOptions, SyntheticConfig])
def test_every_tool_config_round_trips_its_defaults(config_class):
    assert _parse(config_class, [])[1] == config_class()
