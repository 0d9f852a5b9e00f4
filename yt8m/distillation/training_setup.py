"""From distillation settings to what the trainer runs: the student's TrainConfig (a
FrameSkippingModel when the student sees k frames) and the factory that wraps the student in the
training model of its mode (yt8m.distillation.modes: teacher-student, multi-teacher, graph).

    config, factory = training_setup.prepare(train_config, DistillConfig(mode="multi_teacher",
                                                                          teacher_dirs=(a, b)))
    trainer.train(config, training_model_factory=factory)
"""
import dataclasses
import os

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

from frame_level_models import registry
from frame_level_models.composite import frame_selection
from frame_level_models.composite import frame_skipping
from yt8m.distillation import losses as distillation_losses
from yt8m.distillation import modes
from yt8m.distillation import graph_distillation
from yt8m.distillation import multi_teacher
from yt8m.distillation import teacher_student
from yt8m.distillation.config import TRAINING_MODES
from yt8m.losses import get_label_loss
from yt8m.core import files
from yt8m.core import errors

# The built-in modes, in the order --distill_mode lists them (a new mode: its module, and here).
for _mode in (teacher_student.MODE, multi_teacher.MODE, graph_distillation.MODE):
    modes.register(_mode)
MODES = modes.names()
RECORD_FILE = "distillation.json"


def check(config):
    """The settings every mode shares, then the mode's own (errors name the flag at fault)."""
    mode = modes.get(config.mode) if config.mode else None
    if config.student_frames < 0:
        raise errors.InvalidInputError(
            f"--student_frames={config.student_frames}: must be >= 0 (0: every "
            "frame)")
    if config.frame_selection not in frame_selection.STRATEGIES:
        raise errors.InvalidInputError(
            f"--frame_selection={config.frame_selection!r}: choose one of "
            f"{', '.join(frame_selection.STRATEGIES)}")
    if mode is None:
        if config.teacher_dirs or config.teacher_cache:
            raise errors.InvalidInputError("--teacher_dirs / --teacher_cache need --distill_mode")
        return
    if config.training not in TRAINING_MODES:
        raise errors.InvalidInputError(f"--distill_training={config.training!r}: choose one of "
                                       f"{', '.join(TRAINING_MODES)}")
    if config.form not in distillation_losses.FORMS:
        raise errors.InvalidInputError(f"--distill_form={config.form!r}: choose one of "
                                       f"{', '.join(distillation_losses.FORMS)}")
    if not config.temperature > 0:
        raise errors.InvalidInputError(f"--distill_temperature={config.temperature}: must be > 0")
    if not 0.0 <= config.lam <= 1.0:
        raise errors.InvalidInputError(f"--distill_lambda={config.lam}: must be in [0, 1]")
    if config.teacher_weights and config.teacher_dirs and (
            len(config.teacher_weights) != len(config.teacher_dirs)):
        raise errors.InvalidInputError(
            f"--teacher_weights has {len(config.teacher_weights)} weights for "
            f"{len(config.teacher_dirs)} --teacher_dirs")
    if config.teacher_weights and (min(config.teacher_weights) < 0
                                   or sum(config.teacher_weights) <= 0):
        raise errors.InvalidInputError(
            f"--teacher_weights={','.join(map(str, config.teacher_weights))}: "
            "weights must be >= 0 with a positive sum")
    mode.check(config)


def student_train_config(train_config, config):
    """The TrainConfig of the student: --model itself, or a FrameSkippingModel over --model
    seeing --student_frames frames."""
    if not config.student_frames:
        return train_config
    try:
        frame_skipping.check_base_model(train_config.model)
    except ValueError as error:
        raise errors.InvalidInputError(
            f"--student_frames={config.student_frames} needs --model to be a "
            f"frame-level zoo model: {error}") from None
    hparams = frame_skipping.student_hparams(train_config.model, train_config.model_hparams,
                                             config.student_frames, config.frame_selection)
    return dataclasses.replace(train_config, model=frame_skipping.MODEL_NAME,
                               model_hparams=hparams)


def make_training_model(student, train_config, config, label_loss):
    """Wraps the built student in the DistillationModel of `config.mode`.

    train_config: the TrainConfig of --model (before `student_train_config`); label_loss: the
    trainer's label loss (a parallel teacher trains on it).
    """
    return modes.get(config.mode).build(student, train_config, config, label_loss)


def distillation_record(config):
    """What distillation.json in the student's train dir records (provenance, not needed to load
    the student)."""
    record = dataclasses.asdict(config)
    record["teacher_dirs"] = list(config.teacher_dirs)
    record["teacher_weights"] = list(config.teacher_weights)
    record["losses"] = list(config.losses)
    return record


def prepare(train_config, config):
    """(the student's TrainConfig, a training_model_factory for trainer.train or None)."""
    check(config)
    student_config = student_train_config(train_config, config)
    if not config.mode:
        return student_config, None

    def factory(student):
        files.write_json_atomically(os.path.join(train_config.train_dir, RECORD_FILE),
                                    distillation_record(config))
        label_loss = get_label_loss(train_config.label_loss,
                                    registry.loss_epsilon(student_config.model))
        return make_training_model(student, train_config, config, label_loss)

    return student_config, factory
