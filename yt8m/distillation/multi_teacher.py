"""Multi-teacher distillation (SPEC 5; the multi-teacher paper, eq. 9):

  soft labels  q = sum_i mu_i q_i / sum_i mu_i,  q_i = softmax(z_i / T)  (form "softmax")
                                                 q_i = sigmoid(z_i / T)  (form "sigmoid", per class)
  loss         lambda * T^2 * L_soft(q, student at T) + (1 - lambda) * L_hard

L_hard is the trainer's label loss (--label_loss; the paper's softmax cross-entropy is
--label_loss=SoftmaxLoss, the project default CrossEntropyLoss is the per-class multi-label form),
scaled by 1 - lambda through `label_loss_weight`. The teachers are frozen: run on every batch
(`LiveTeachers`) or read from a teacher cache by video id (`CachedTeachers`, offline distillation),
which is how an exported ensemble teaches a small student once its outputs are cached.
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

from yt8m.distillation import losses as distillation_losses
from yt8m.distillation import modes
from yt8m.distillation import teacher_sources
from yt8m.distillation.distillation_model import (DistillationModel, stacked_teacher_outputs,
                                                  student_logits)
from yt8m.core import errors

SOFT_LABELS = "soft_labels"


class MultiTeacherModel(DistillationModel):
    """Trains `student` on the weighted soft labels of the teachers of `teacher_source`.

    Args:
      temperature: T (> 0). lam: lambda in [0, 1]. weights: mu_i (default equal).
      form: "softmax" or "sigmoid".
    """

    def __init__(self, student, teacher_source, temperature=3.0, lam=0.5, weights=None,
                 form="softmax", **kwargs):
        if len(teacher_source) < 1:
            raise ValueError("multi-teacher distillation needs at least one teacher")
        if not 0.0 <= lam <= 1.0:
            raise errors.InvalidInputError(f"--distill_lambda={lam!r} must be in [0, 1]")
        if not temperature > 0:
            raise errors.InvalidInputError(f"--distill_temperature={temperature!r} must be > 0")
        if form not in distillation_losses.FORMS:
            raise errors.InvalidInputError(f"--distill_form={form!r}: choose one of "
                                           f"{', '.join(distillation_losses.FORMS)}")
        if weights is not None and len(weights) != len(teacher_source):
            raise errors.InvalidInputError(f"--teacher_weights has {len(weights)} weights for "
                                           f"{len(teacher_source)} teachers")
        super().__init__(student, teacher_source, label_loss_weight=1.0 - lam, **kwargs)
        self.temperature = float(temperature)
        self.lam = float(lam)
        # A plain tuple kept out of Keras' attribute tracking (settings, not state).
        object.__setattr__(self, "teacher_weights",
                           None if weights is None else tuple(float(w) for w in weights))
        self.form = form

    def soft_labels(self, teacher_logits):
        return distillation_losses.multi_teacher_soft_labels(
            teacher_logits, self.temperature, self.teacher_weights, self.form)

    def distillation_outputs(self, features, student_outputs, training):
        result = self.teacher_outputs(features)
        teacher_logits = stacked_teacher_outputs(result, len(self.teacher_source), "logits")
        result[SOFT_LABELS] = self.soft_labels(teacher_logits)
        return result

    def distillation_loss(self, labels, outputs, label_weights):
        soft = distillation_losses.soft_label_loss(outputs[SOFT_LABELS], student_logits(outputs),
                                                   self.temperature, self.form)
        return self.lam * self.temperature ** 2 * soft


def build(student, train_config, config, label_loss):
    del label_loss  # the teachers are frozen
    return MultiTeacherModel(student, teacher_sources.teacher_source(config, train_config.data),
                             config.temperature, config.lam, tuple(config.teacher_weights) or None,
                             config.form, name="multi_teacher")


MODE = modes.Mode("multi_teacher", build=build, check=teacher_sources.check_frozen_teachers)
