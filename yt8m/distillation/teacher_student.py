"""Teacher-student training with fewer frames (the frame-skipping paper, SPEC 5).

The teacher sees every frame; the student (usually a FrameSkippingModel: any zoo model behind a
frame selection of k frames) sees k. The student minimises any combination of

  L_rep  = ||E_T - P(E_S)||^2   the final video representations (`embedding` outputs); P is a
                                 learned linear projection when the two sizes differ, else identity
  L_pred = d(p_T, p_S)          the class probabilities: KL, squared error or per-class binary KL
  L_CE                          the label loss on the student's predictions (the trainer's)

weighted by `rep_weight`, `pred_weight` and 1 (L_CE on) / 0 (off). The teacher side of L_rep and
L_pred carries no gradient in either mode.

Serial training: the teacher is a trained model read from its train dir (or its cached outputs),
frozen. Parallel training: the teacher is trained jointly on its own label loss (same batch, all
frames) while the student learns from it; it is saved in the checkpoint beside the student.
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.distillation import losses as distillation_losses
from yt8m.distillation.config import LOSS_NAMES
from yt8m.distillation import modes
from yt8m.distillation import teacher_sources
from yt8m.distillation import teachers as teachers_lib
from yt8m.distillation.distillation_model import (DistillationModel, build_dense, teacher_key,
                                                  require_embeddings)
from yt8m.core import errors

PROJECTED_EMBEDDING = "student/projected_embedding"


def check_loss_names(names):
    names = tuple(names)
    unknown = [name for name in names if name not in LOSS_NAMES]
    if unknown or not names:
        raise errors.InvalidInputError(
            f"--distill_losses={','.join(names)!r}: give a non-empty comma-separated "
            f"subset of {','.join(LOSS_NAMES)}")
    return names


class TeacherStudentModel(DistillationModel):
    """Trains `student` against one teacher.

    Args:
      student: the student model (outputs `predictions`, and `embedding` for L_rep).
      losses: subset of ("rep", "pred", "ce").
      teacher_source: serial training: a LiveTeachers/CachedTeachers of one teacher.
      parallel_teacher: parallel training: a trainable model seeing every frame (instead of
        teacher_source), trained on `teacher_label_loss`.
      student_embedding_size, teacher_embedding_size: sizes of the `embedding` outputs (L_rep).
      pred_distance: "kl", "squared_error" or "binary_kl" (see losses.prediction_loss).
    """

    def __init__(self, student, losses=LOSS_NAMES, teacher_source=None, parallel_teacher=None,
                 student_embedding_size=None, teacher_embedding_size=None, rep_weight=1.0,
                 pred_weight=1.0, pred_distance="kl", teacher_label_loss=None, **kwargs):
        losses = check_loss_names(losses)
        if (teacher_source is None) == (parallel_teacher is None):
            raise ValueError("a teacher-student model needs exactly one of a teacher source "
                             "(serial) or a parallel teacher")
        if teacher_source is not None and len(teacher_source) != 1:
            raise ValueError(f"teacher-student distillation takes one teacher, got "
                             f"{len(teacher_source)} (use --distill_mode=multi_teacher or graph "
                             "for several)")
        if parallel_teacher is not None and teacher_label_loss is None:
            raise ValueError("parallel training needs the teacher's label loss")
        super().__init__(student, teacher_source, label_loss_weight=1.0 if "ce" in losses else 0.0,
                         **kwargs)
        object.__setattr__(self, "loss_names", losses)  # settings, kept out of the checkpoint
        self.rep_weight = float(rep_weight)
        self.pred_weight = float(pred_weight)
        self.pred_distance = pred_distance
        if pred_distance not in distillation_losses.PREDICTION_DISTANCES:
            raise errors.InvalidInputError(
                f"--distill_pred_distance={pred_distance!r}: choose one of "
                f"{', '.join(distillation_losses.PREDICTION_DISTANCES)}")
        object.__setattr__(self, "teacher_label_loss", teacher_label_loss)
        self.parallel_teacher = parallel_teacher
        if parallel_teacher is not None:
            parallel_teacher.trainable = True
        self.projection = None
        if "rep" in losses:
            descriptions = (teacher_source.descriptions if teacher_source is not None
                            else [f"the parallel teacher {parallel_teacher.name}"])
            require_embeddings([teacher_embedding_size], "L_rep (--distill_losses=rep)",
                               descriptions)
            require_embeddings([student_embedding_size], "L_rep (--distill_losses=rep)",
                               [f"the student {student.name}"])
            if int(student_embedding_size) != int(teacher_embedding_size):
                # The student's representation is mapped to the teacher's size for L_rep only; the
                # student's own classifier still reads its unprojected embedding.
                self.projection = build_dense(int(teacher_embedding_size),
                                              int(student_embedding_size), "rep_projection")

    def trained_extras(self):
        return [layer for layer in (self.projection, self.parallel_teacher) if layer is not None]

    def teacher_outputs(self, features, training=None):
        if self.parallel_teacher is None:
            return super().teacher_outputs(features)
        outputs = self.parallel_teacher(self.student_inputs(features), training=training)
        result = {teacher_key(0, "predictions"): outputs["predictions"],
                  teacher_key(0, "logits"): teachers_lib.logits_of(outputs)}
        if "embedding" in outputs:
            result[teacher_key(0, "embedding")] = outputs["embedding"]
        return result

    def distillation_outputs(self, features, student_outputs, training):
        result = self.teacher_outputs(features, training)
        if self.projection is not None:
            result[PROJECTED_EMBEDDING] = self.projection(student_outputs["embedding"])
        return result

    def distillation_loss(self, labels, outputs, label_weights):
        total = tf.constant(0.0)
        if "rep" in self.loss_names:
            student = outputs.get(PROJECTED_EMBEDDING, outputs.get("embedding"))
            total += self.rep_weight * distillation_losses.representation_loss(
                outputs[teacher_key(0, "embedding")], student)
        if "pred" in self.loss_names:
            total += self.pred_weight * distillation_losses.prediction_loss(
                outputs[teacher_key(0, "predictions")], outputs["predictions"],
                self.pred_distance)
        if self.parallel_teacher is not None:
            total += self.teacher_label_loss.calculate_loss(
                outputs[teacher_key(0, "predictions")], labels, label_weights=label_weights,
                logits=outputs[teacher_key(0, "logits")])
        return total


def check(config):
    """--distill_mode=teacher_student: one teacher, frozen (serial) or trained jointly
    (parallel)."""
    check_loss_names(config.losses)
    if config.pred_distance not in distillation_losses.PREDICTION_DISTANCES:
        raise errors.InvalidInputError(
            f"--distill_pred_distance={config.pred_distance!r}: choose one of "
            f"{', '.join(distillation_losses.PREDICTION_DISTANCES)}")
    if config.training == "parallel":
        if config.teacher_cache:
            raise ValueError("--teacher_cache holds a frozen teacher's outputs; parallel training "
                             "trains the teacher (drop --teacher_cache or use serial training)")
        if len(config.teacher_dirs) > 1:
            raise errors.InvalidInputError(
                "--distill_training=parallel trains one teacher; --teacher_dirs "
                f"lists {len(config.teacher_dirs)}")
        return
    teacher_sources.check_frozen_teachers(config)
    if len(config.teacher_dirs) > 1:
        raise errors.InvalidInputError(
            f"--distill_mode=teacher_student takes one teacher; --teacher_dirs lists "
            f"{len(config.teacher_dirs)} (use multi_teacher or graph)")


def build(student, train_config, config, label_loss):
    common = dict(losses=config.losses,
                  student_embedding_size=teachers_lib.output_size(student, "embedding"),
                  rep_weight=config.rep_weight, pred_weight=config.pred_weight,
                  pred_distance=config.pred_distance, name="teacher_student")
    if config.training == "parallel":
        teacher = teacher_sources.parallel_teacher(train_config, config)
        return TeacherStudentModel(
            student, parallel_teacher=teacher, teacher_label_loss=label_loss,
            teacher_embedding_size=teachers_lib.output_size(teacher, "embedding"), **common)
    source = teacher_sources.teacher_source(config, train_config.data)
    if len(source) != 1:
        raise errors.InvalidInputError(
            f"--distill_mode=teacher_student takes one teacher; "
            f"--teacher_cache={config.teacher_cache!r} holds {len(source)}: "
            "choose one with --teacher_dirs")
    return TeacherStudentModel(student, teacher_source=source,
                               teacher_embedding_size=source.embedding_sizes[0], **common)


MODE = modes.Mode("teacher_student", build=build, check=check)
