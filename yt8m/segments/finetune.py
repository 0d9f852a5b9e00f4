"""Segment finetuning: `train.py --finetune_from=VIDEO_TRAIN_DIR --segment_labels ...`.

The segment model is the video-level model itself, warm started from the newest checkpoint of
--finetune_from (or from the exact checkpoint --pretrain_model_path names, MOD's flag) and trained
on rated 5-frame segments (`--segment_labels`: only the rated class of
a segment carries label loss). The model name, its inputs and its hyper-parameters come from the
source's model_flags.json; hparam flags given on the command line override them (e.g.
--drop_rate, --l2_penalty and, for mixtures, --cl_temperature / --cl_lambda where train.py defines
them). With --segment_labels the new train dir records max_frames=5, so an export of it pads
segments to 5 frames, not 300.

--mod_finetune_settings fills every flag not given with the MOD paper's finetune values (SPEC 4),
the root's final_temperature/final_lambda included (MOD's seg_script passes 20/400).
A resumed finetune run restores its own checkpoint; the warm start only fills a fresh train dir (MOD
restored the pretrained checkpoint at every start, overwriting a resumed finetune). Only the model
weights are restored: the optimizer starts fresh (MOD also restored Adam's slots).
"""
import dataclasses
import os

from absl import flags
from absl import logging

import yt8m  # noqa: F401
import tensorflow as tf

from frame_level_models import registry
from yt8m.core import model_flags as model_flags_lib
from yt8m.core import options
from yt8m.core.config import TrainConfig
from yt8m.data import records
from yt8m.training import checkpoints
from yt8m.core import errors

# MOD (2019) finetune settings: train flags and model hparams.
MOD_TRAIN_SETTINGS = {"base_learning_rate": 2e-4, "learning_rate_decay": 0.8,
                      "learning_rate_decay_examples": 1_000_000, "batch_size": 512,
                      "num_epochs": 10}
MOD_HPARAM_SETTINGS = {"drop_rate": 0.75, "l2_penalty": 1e-4, "cl_temperature": 20.0,
                       "cl_lambda": 400.0, "final_temperature": 20.0, "final_lambda": 400.0}
# Flags that describe the model and its inputs: taken from the source, must not contradict it.
_SOURCE_FLAGS = ("model", "feature_names", "feature_sizes", "frame_features", "num_classes")


@dataclasses.dataclass
class FinetuneOptions:
    finetune_from: str = options.option(
        "", "Warm start from the newest checkpoint of this train dir (a video-level model); its "
        "model, inputs and hparams are reused (hparam flags given here override them).")
    pretrain_model_path: str = options.option(
        "", "MOD's flag: warm start from this exact checkpoint (a path as train.py writes them, "
        "e.g. runs/video/ckpt-583262); the model, inputs and hparams come from the train dir "
        "holding it, as with --finetune_from (which, if given too, must be that dir).")
    mod_finetune_settings: bool = options.option(
        False, "With --finetune_from: every flag not given takes the MOD paper's finetune value "
        "(lr 2e-4 x 0.8 per 1M examples, batch 512, 10 epochs, drop_rate 0.75, l2_penalty 1e-4, "
        "mixtures T=20 lambda=400, the root's final_temperature=20 final_lambda=400 too).")


@dataclasses.dataclass(frozen=True)
class WarmStart:
    source_dir: str   # the video-level train dir: model_flags.json, and the newest checkpoint
    checkpoint: str   # an exact checkpoint (--pretrain_model_path), or "" for the newest


def warm_start_source(flag_values=flags.FLAGS):
    """The WarmStart the flags ask for (--finetune_from and/or --pretrain_model_path), or None
    when this is no finetune run."""
    finetune = options.from_flags(FinetuneOptions, flag_values)
    checkpoint = finetune.pretrain_model_path
    if not checkpoint:
        return WarmStart(finetune.finetune_from, "") if finetune.finetune_from else None
    source_dir = os.path.dirname(checkpoint) or "."
    if finetune.finetune_from and (os.path.abspath(finetune.finetune_from)
                                   != os.path.abspath(source_dir)):
        raise errors.InvalidInputError(
            f"--pretrain_model_path={checkpoint!r} is not a checkpoint of "
            f"--finetune_from={finetune.finetune_from!r}; give one of the two")
    if not tf.io.gfile.exists(checkpoint + ".index"):
        raise errors.MissingInputError(
            f"--pretrain_model_path={checkpoint!r}: no such checkpoint "
            f"({checkpoint}.index does not exist)")
    return WarmStart(source_dir, checkpoint)


def define_flags(flag_values=flags.FLAGS):
    options.define_flags(FinetuneOptions, flag_values)


def _given(flag_values, name):
    return name in flag_values and flag_values[name].present


def _flag_text(value):
    return ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else value


def finetune_hparams(model_name, source_hparams, flag_values, mod_settings):
    """The source's hparams, overridden by hparam flags given on the command line, else (with
    mod_settings) by the MOD values of the hparams the model has."""
    hparams = dict(source_hparams)
    for name in sorted(set(hparams) | set(registry.hparam_names(model_name))):
        if _given(flag_values, name):
            hparams[name] = flag_values[name].value
        elif mod_settings and name in MOD_HPARAM_SETTINGS:
            hparams[name] = MOD_HPARAM_SETTINGS[name]
    return hparams


def _check_source(source_dir, source, flag_values):
    for name in _SOURCE_FLAGS:
        if _given(flag_values, name):
            given, recorded = flag_values[name].value, source[name]
            if name == "model":  # a reference spelling of the same model agrees
                given, recorded = registry.canonical_name(given), registry.canonical_name(recorded)
            if str(_flag_text(given)) != str(_flag_text(recorded)):
                raise errors.InvalidInputError(
                    f"--{name}={_flag_text(given)!r} contradicts --finetune_from="
                    f"{source_dir!r}, whose model has {name}="
                    f"{_flag_text(recorded)!r}; leave --{name} out")
    if flag_values.segment_labels and not source["frame_features"]:
        raise errors.InvalidInputError(
            f"--finetune_from={source_dir!r} holds the video-level model "
            f"{source['model']!r}; segment finetuning needs a frame-level model")


def config_from_flags(flag_values=flags.FLAGS):
    """The TrainConfig of a finetune run (train.py with --finetune_from or --pretrain_model_path):
    the flags' TrainConfig with the source's model and inputs (and, with --mod_finetune_settings,
    MOD's values for the flags not given)."""
    finetune = options.from_flags(FinetuneOptions, flag_values)
    warm = warm_start_source(flag_values)
    source_dir = warm.source_dir
    if not tf.io.gfile.exists(model_flags_lib.model_flags_path(source_dir)):
        raise errors.MissingInputError(
            f"--finetune_from={source_dir!r} has no {model_flags_lib.MODEL_FLAGS_FILE}: it is "
            "not a train dir written by train.py (--pretrain_model_path: the checkpoint's "
            "directory must be one)")
    if os.path.abspath(source_dir) == os.path.abspath(flag_values.train_dir):
        raise errors.InvalidInputError(
            f"--train_dir and --finetune_from are both {source_dir!r}: finetune into "
            "a new train dir")
    # Fail now, not after building the data pipeline.
    checkpoints.require_checkpoint(source_dir, warm.checkpoint or None)
    source = model_flags_lib.read_model_flags(source_dir)
    _check_source(source_dir, source, flag_values)
    mod_settings = finetune.mod_finetune_settings
    config = options.from_flags(
        TrainConfig, flag_values,
        model_hparams=finetune_hparams(source["model"], source.get("hparams", {}), flag_values,
                                       mod_settings))
    if mod_settings:
        config = dataclasses.replace(config, **{
            name: value for name, value in MOD_TRAIN_SETTINGS.items()
            if not _given(flag_values, name)})
    if _given(flag_values, "max_frames"):
        max_frames = flag_values.max_frames
    elif flag_values.segment_labels:
        max_frames = records.SEGMENT_SIZE  # what the segment model sees, and what an export pads to
    else:
        max_frames = int(source["max_frames"])
    names, sizes = model_flags_lib.features(source)
    data = dataclasses.replace(
        config.data, feature_names=names, feature_sizes=sizes,
        frame_features=bool(source["frame_features"]), num_classes=int(source["num_classes"]),
        max_frames=max_frames)
    label_loss = (config.label_loss if _given(flag_values, "label_loss")
                  else source.get("label_loss", config.label_loss))
    return dataclasses.replace(config, model=source["model"], data=data, label_loss=label_loss)


def warm_start(model, source_dir, checkpoint=""):
    """Restores the model weights of `checkpoint`, or of the newest checkpoint of `source_dir`;
    returns the checkpoint's path."""
    path = checkpoint or checkpoints.latest_checkpoint(source_dir)
    checkpoints.restore_model_weights(model, path, f"the model of --finetune_from={source_dir!r}")
    logging.info("Warm start: weights from %s", path)
    return path


def warm_start_factory(config, source, inner_factory=None):
    """A training_model_factory for trainer.train: warm starts a fresh train dir's model from
    `source` (a WarmStart, or a train dir: its newest checkpoint), then applies `inner_factory`
    (e.g. a distillation wrapper), if any."""
    if not isinstance(source, WarmStart):
        source = WarmStart(source, "")

    def factory(model):
        fresh = (config.start_new_model
                 or tf.train.latest_checkpoint(config.train_dir) is None)
        if fresh:
            warm_start(model, source.source_dir, source.checkpoint)
        return inner_factory(model) if inner_factory is not None else model
    return factory
