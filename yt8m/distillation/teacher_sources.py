"""Where the modes' teachers come from: frozen teachers read from --teacher_dirs or their outputs
from --teacher_cache, or a teacher trained jointly with the student (parallel training)."""
import os

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

import frame_level_models
from yt8m.distillation import teachers as teachers_lib
from yt8m.distillation.distillation_model import CachedTeachers, LiveTeachers
from yt8m.distillation.teacher_cache import TeacherCache
from yt8m.training import checkpoints
from yt8m.core import errors


def check_frozen_teachers(config):
    """What a mode that distills from frozen teachers needs (errors name the flag)."""
    if config.training == "parallel":
        raise errors.InvalidInputError(
            f"--distill_training=parallel trains the teacher jointly, which "
            f"--distill_mode=teacher_student does; --distill_mode={config.mode} "
            "distills from frozen teachers")
    if not config.teacher_dirs and not config.teacher_cache:
        raise errors.InvalidInputError(
            f"--distill_mode={config.mode} needs teachers: --teacher_dirs (train "
            "dirs or exported ensembles) or --teacher_cache")


def teacher_source(config, data):
    """LiveTeachers over --teacher_dirs, or CachedTeachers over --teacher_cache."""
    if config.teacher_cache:
        cache = TeacherCache(config.teacher_cache)
        indices = None
        if config.teacher_dirs:  # a choice among the cached teachers
            cached = [os.path.abspath(path) for path in cache.teacher_paths]
            unknown = [path for path in config.teacher_dirs if os.path.abspath(path) not in cached]
            if unknown:
                raise errors.InvalidInputError(
                    f"--teacher_dirs {','.join(unknown)} are not among the teachers "
                    f"of --teacher_cache={config.teacher_cache!r} "
                    f"({','.join(cache.teacher_paths)})")
            indices = [cached.index(os.path.abspath(path)) for path in config.teacher_dirs]
        if cache.num_classes != data.num_classes:
            raise errors.InvalidInputError(
                f"--teacher_cache={config.teacher_cache!r} holds {cache.num_classes} "
                f"classes, the student {data.num_classes} (--num_classes)")
        source = CachedTeachers(cache, indices)
        if config.teacher_weights and len(config.teacher_weights) != len(source):
            raise errors.InvalidInputError(
                f"--teacher_weights has {len(config.teacher_weights)} weights for "
                f"the {len(source)} teachers of --teacher_cache")
        return source
    loaded = [teachers_lib.load_teacher(path) for path in config.teacher_dirs]
    teachers_lib.check_teachers(loaded, data.num_classes, data.feature_names, data.frame_features)
    return LiveTeachers(loaded)


def parallel_teacher(train_config, config):
    """The jointly trained teacher: initialised from --teacher_dirs when given, else a fresh
    --teacher_model (default --model) with its hparams, seeing every frame."""
    data = train_config.data
    if config.teacher_dirs:
        teacher = teachers_lib.TrainDirTeacher(config.teacher_dirs[0])
        teachers_lib.check_teachers([teacher], data.num_classes, data.feature_names,
                                    data.frame_features)
        return checkpoints.load_model(config.teacher_dirs[0])
    name = config.teacher_model or train_config.model
    hparams = (config.teacher_hparams if config.teacher_hparams is not None
               else train_config.model_hparams)
    return frame_level_models.build(name, data.num_classes, feature_names=data.feature_names,
                                    feature_sizes=data.feature_sizes, **hparams)
