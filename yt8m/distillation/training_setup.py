"""From distillation settings to what the trainer runs: the student's TrainConfig (a
FrameSkippingModel when the student sees k frames) and the factory that wraps the student in its
distillation training model (teacher-student, multi-teacher or graph).

    config, factory = training_setup.prepare(train_config, DistillConfig(mode="multi_teacher",
                                                                          teacher_dirs=(a, b)))
    trainer.train(config, training_model_factory=factory)
"""
import dataclasses
import os
from typing import Optional

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

from frame_level_models.composite import frame_selection
from frame_level_models.composite import frame_skipping
from yt8m.distillation import graph as graph_lib
from yt8m.distillation import losses as distillation_losses
from yt8m.distillation import teachers as teachers_lib
from yt8m.distillation.distillation_model import CachedTeachers, LiveTeachers
from yt8m.distillation.teacher_student import LOSS_NAMES, TRAINING_MODES, check_loss_names

MODES = ("teacher_student", "multi_teacher", "graph")
RECORD_FILE = "distillation.json"


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Distillation settings; the field names are the train.py flags without their prefixes."""
    mode: str = ""                      # --distill_mode: "" (none), or one of MODES
    teacher_dirs: tuple = ()            # --teacher_dirs: train dirs or exported ensembles
    teacher_weights: tuple = ()         # --teacher_weights: mu_i (multi_teacher), default equal
    teacher_cache: str = ""             # --teacher_cache: read teacher outputs from this cache
    student_frames: int = 0             # --student_frames: k (0: the student sees every frame)
    frame_selection: str = "uniform"    # --frame_selection
    losses: tuple = LOSS_NAMES          # --distill_losses (teacher_student)
    training: str = "serial"            # --distill_training: serial | parallel
    teacher_model: str = ""             # --teacher_model: parallel teacher built fresh
    teacher_hparams: Optional[dict] = None  # its hparams (train.py reads them from the flags)
    temperature: float = 3.0            # --distill_temperature
    lam: float = 0.5                    # --distill_lambda
    form: str = "softmax"               # --distill_form: softmax | sigmoid
    pred_distance: str = "kl"           # --distill_pred_distance (teacher_student L_pred)
    rep_weight: float = 1.0             # --distill_rep_weight (teacher_student L_rep)
    pred_weight: float = 1.0            # --distill_pred_weight (teacher_student L_pred)
    graph_distance: str = "emd"         # --graph_distance: kl | emd
    graph_rep_weight: float = 1.0       # --graph_rep_weight (0: no representation graph)
    graph_learn_edges: bool = True      # --graph_learn_edges
    graph_rep_temperature: float = 0.02  # --graph_rep_temperature (T_k of its vertices)
    graph_bandwidth: float = 0.1        # --graph_bandwidth (MMD kernel sigma)


def check(config):
    """Errors name the flag at fault."""
    if config.mode and config.mode not in MODES:
        raise ValueError(f"--distill_mode={config.mode!r}: choose one of {', '.join(MODES)} (or "
                         "leave it empty for no distillation)")
    if config.student_frames < 0:
        raise ValueError(f"--student_frames={config.student_frames}: must be >= 0 (0: every "
                         "frame)")
    if config.frame_selection not in frame_selection.STRATEGIES:
        raise ValueError(f"--frame_selection={config.frame_selection!r}: choose one of "
                         f"{', '.join(frame_selection.STRATEGIES)}")
    if not config.mode:
        if config.teacher_dirs or config.teacher_cache:
            raise ValueError("--teacher_dirs / --teacher_cache need --distill_mode")
        return
    if config.training not in TRAINING_MODES:
        raise ValueError(f"--distill_training={config.training!r}: choose one of "
                         f"{', '.join(TRAINING_MODES)}")
    check_loss_names(config.losses)
    if config.pred_distance not in distillation_losses.PREDICTION_DISTANCES:
        raise ValueError(f"--distill_pred_distance={config.pred_distance!r}: choose one of "
                         f"{', '.join(distillation_losses.PREDICTION_DISTANCES)}")
    if config.form not in distillation_losses.FORMS:
        raise ValueError(f"--distill_form={config.form!r}: choose one of "
                         f"{', '.join(distillation_losses.FORMS)}")
    if config.graph_distance not in graph_lib.DISTANCES:
        raise ValueError(f"--graph_distance={config.graph_distance!r}: choose one of "
                         f"{', '.join(graph_lib.DISTANCES)}")
    if not config.temperature > 0:
        raise ValueError(f"--distill_temperature={config.temperature}: must be > 0")
    if not 0.0 <= config.lam <= 1.0:
        raise ValueError(f"--distill_lambda={config.lam}: must be in [0, 1]")
    if config.graph_bandwidth <= 0:
        raise ValueError(f"--graph_bandwidth={config.graph_bandwidth}: must be > 0")
    if config.graph_rep_temperature <= 0:
        raise ValueError(f"--graph_rep_temperature={config.graph_rep_temperature}: must be > 0")
    parallel = config.mode == "teacher_student" and config.training == "parallel"
    if config.training == "parallel" and config.mode != "teacher_student":
        raise ValueError("--distill_training=parallel is a teacher_student set-up (multi_teacher "
                         "and graph teachers are frozen)")
    if parallel:
        if config.teacher_cache:
            raise ValueError("--teacher_cache holds a frozen teacher's outputs; parallel training "
                             "trains the teacher (drop --teacher_cache or use serial training)")
        if len(config.teacher_dirs) > 1:
            raise ValueError("--distill_training=parallel trains one teacher; --teacher_dirs "
                             f"lists {len(config.teacher_dirs)}")
        return
    if not config.teacher_dirs and not config.teacher_cache:
        raise ValueError(f"--distill_mode={config.mode} needs teachers: --teacher_dirs (train "
                         "dirs or exported ensembles) or --teacher_cache")
    if config.mode == "teacher_student" and len(config.teacher_dirs) > 1:
        raise ValueError(f"--distill_mode=teacher_student takes one teacher; --teacher_dirs lists "
                         f"{len(config.teacher_dirs)} (use multi_teacher or graph)")
    if config.teacher_weights and config.teacher_dirs and (
            len(config.teacher_weights) != len(config.teacher_dirs)):
        raise ValueError(f"--teacher_weights has {len(config.teacher_weights)} weights for "
                         f"{len(config.teacher_dirs)} --teacher_dirs")
    if config.teacher_weights and (min(config.teacher_weights) < 0
                                   or sum(config.teacher_weights) <= 0):
        raise ValueError(f"--teacher_weights={','.join(map(str, config.teacher_weights))}: "
                         "weights must be >= 0 with a positive sum")


def student_train_config(train_config, config):
    """The TrainConfig of the student: --model itself, or a FrameSkippingModel over --model
    seeing --student_frames frames."""
    if not config.student_frames:
        return train_config
    try:
        frame_skipping.check_base_model(train_config.model)
    except ValueError as error:
        raise ValueError(f"--student_frames={config.student_frames} needs --model to be a "
                         f"frame-level zoo model: {error}") from None
    hparams = frame_skipping.student_hparams(train_config.model, train_config.model_hparams,
                                             config.student_frames, config.frame_selection)
    return dataclasses.replace(train_config, model=frame_skipping.MODEL_NAME,
                               model_hparams=hparams)


def teacher_source(config, data):
    """LiveTeachers over --teacher_dirs, or CachedTeachers over --teacher_cache."""
    if config.teacher_cache:
        from yt8m.distillation.teacher_cache import TeacherCache
        cache = TeacherCache(config.teacher_cache)
        indices = None
        if config.teacher_dirs:  # a choice among the cached teachers
            cached = [os.path.abspath(path) for path in cache.teacher_paths]
            unknown = [path for path in config.teacher_dirs if os.path.abspath(path) not in cached]
            if unknown:
                raise ValueError(f"--teacher_dirs {','.join(unknown)} are not among the teachers "
                                 f"of --teacher_cache={config.teacher_cache!r} "
                                 f"({','.join(cache.teacher_paths)})")
            indices = [cached.index(os.path.abspath(path)) for path in config.teacher_dirs]
        if cache.num_classes != data.num_classes:
            raise ValueError(f"--teacher_cache={config.teacher_cache!r} holds {cache.num_classes} "
                             f"classes, the student {data.num_classes} (--num_classes)")
        source = CachedTeachers(cache, indices)
        if config.teacher_weights and len(config.teacher_weights) != len(source):
            raise ValueError(f"--teacher_weights has {len(config.teacher_weights)} weights for "
                             f"the {len(source)} teachers of --teacher_cache")
        if config.mode == "teacher_student" and len(source) != 1:
            raise ValueError(f"--distill_mode=teacher_student takes one teacher; "
                             f"--teacher_cache={config.teacher_cache!r} holds {len(source)}: "
                             "choose one with --teacher_dirs")
        return source
    loaded = [teachers_lib.load_teacher(path) for path in config.teacher_dirs]
    teachers_lib.check_teachers(loaded, data.num_classes, data.feature_names, data.frame_features)
    return LiveTeachers(loaded)


def parallel_teacher(train_config, config):
    """The jointly trained teacher: initialised from --teacher_dirs when given, else a fresh
    --teacher_model (default --model) with its hparams, seeing every frame."""
    from yt8m.training import checkpoints
    import frame_level_models
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


def make_training_model(student, train_config, config, label_loss):
    """Wraps the built student in the DistillationModel of `config.mode`.

    train_config: the TrainConfig of --model (before `student_train_config`); label_loss: the
    trainer's label loss (a parallel teacher trains on it).
    """
    from yt8m.distillation.graph_distillation import GraphDistillationModel
    from yt8m.distillation.multi_teacher import MultiTeacherModel
    from yt8m.distillation.teacher_student import TeacherStudentModel
    data = train_config.data
    student_embedding = teachers_lib.output_size(student, "embedding")
    weights = tuple(config.teacher_weights) or None
    if config.mode == "teacher_student":
        common = dict(losses=config.losses, student_embedding_size=student_embedding,
                      rep_weight=config.rep_weight, pred_weight=config.pred_weight,
                      pred_distance=config.pred_distance, name="teacher_student")
        if config.training == "parallel":
            teacher = parallel_teacher(train_config, config)
            return TeacherStudentModel(
                student, parallel_teacher=teacher, teacher_label_loss=label_loss,
                teacher_embedding_size=teachers_lib.output_size(teacher, "embedding"), **common)
        source = teacher_source(config, data)
        return TeacherStudentModel(student, teacher_source=source,
                                   teacher_embedding_size=source.embedding_sizes[0], **common)
    source = teacher_source(config, data)
    if config.mode == "multi_teacher":
        return MultiTeacherModel(student, source, config.temperature, config.lam, weights,
                                 config.form, name="multi_teacher")
    return GraphDistillationModel(
        student, source, data.num_classes, student_embedding, temperature=config.temperature,
        lam=config.lam, form=config.form, distance=config.graph_distance,
        rep_weight=config.graph_rep_weight, rep_temperature=config.graph_rep_temperature,
        bandwidth=config.graph_bandwidth,
        learn_edges=config.graph_learn_edges, name="graph_distillation")


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
    from yt8m.losses import get_label_loss
    from yt8m.training import files

    def factory(student):
        files.write_json_atomically(os.path.join(train_config.train_dir, RECORD_FILE),
                                    distillation_record(config))
        return make_training_model(student, train_config, config,
                                   get_label_loss(train_config.label_loss))

    return student_config, factory
