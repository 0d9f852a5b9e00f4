"""train.py's distillation flags (declared on yt8m.distillation.config.DistillConfig) and their
reading, which adds the hparams of a --teacher_model from the model hparam flags."""
import dataclasses

from absl import flags

import yt8m  # noqa: F401
import frame_level_models
from frame_level_models import hparams
from yt8m.core import options
from yt8m.distillation.config import DistillConfig
from yt8m.core import errors


def define_flags(flag_values=flags.FLAGS):
    options.define_flags(DistillConfig, flag_values)


def config_from_flags(flag_values=flags.FLAGS):
    """The DistillConfig of the flags (checked by training_setup.prepare)."""
    config = options.from_flags(DistillConfig, flag_values)
    if not config.teacher_model:
        return config
    if config.teacher_model not in frame_level_models.MODEL_NAMES:
        raise errors.InvalidInputError(
            f"--teacher_model={config.teacher_model!r} is not a known model; choose "
            f"one of: {', '.join(frame_level_models.MODEL_NAMES)}")
    return dataclasses.replace(config, teacher_hparams=hparams.hparams_from_flags(
        flag_values, model_name=config.teacher_model))
