"""What the distillation set-ups share: where the teachers' outputs come from, and the training
wrapper around a student that the trainer steps.

A `DistillationModel` is what the trainer trains in place of the student (`trainer.train(config,
training_model_factory=...)`): calling it returns the student's outputs (so the trainer's label
loss and training GAP are the student's) plus the teachers' outputs under `teacher/...` keys. It
implements the trainer's protocol (yt8m.core.training_protocol): `auxiliary_loss` adds the
distillation terms to the student's own (a mixture student keeps its auxiliary predictions and
regularisation terms), `label_loss_weight` scales the trainer's label loss
(0 drops L_CE; 1 - lambda in the multi-teacher and graph losses), and the gradient computation
and device placement are the student's (a MOD tree student keeps its placement). The checkpoint's
`model` stays the student alone, so eval.py, inference.py and export read a student's train dir
like any other. What the wrapper trains besides the student (projections, graph edge weights, a
parallel teacher) is saved beside it; frozen teachers are not saved (they are read from their own
directories).
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

from yt8m.core.training_protocol import TrainingModel, as_training_model
from yt8m.distillation import teachers as teachers_lib
from yt8m.core import errors

NUM_FRAMES = "num_frames"
VIDEO_ID = "id"


def teacher_key(index, output):
    """Output key of teacher `index`'s `output` in a DistillationModel's outputs."""
    return f"teacher/{index}/{output}"


class LiveTeachers:
    """Teachers run on the batch at every step (frozen)."""

    extra_batch_keys = ()

    def __init__(self, teachers):
        self.teachers = list(teachers)
        self.embedding_sizes = [teacher.embedding_size for teacher in self.teachers]
        self.descriptions = [teacher.description for teacher in self.teachers]

    def __len__(self):
        return len(self.teachers)

    def __call__(self, features):
        return [teacher(features) for teacher in self.teachers]


class CachedTeachers:
    """Teachers' outputs read from a teacher cache by video id (offline distillation).

    `indices` picks (and orders) teachers among the cached ones; default all of them.
    """

    extra_batch_keys = (VIDEO_ID,)

    def __init__(self, cache, indices=None):
        self.cache = cache
        self.indices = list(range(cache.num_teachers) if indices is None else indices)
        self.embedding_sizes = [cache.embedding_sizes[i] for i in self.indices]
        self.descriptions = [f"cached teacher {cache.teacher_paths[i]} ({cache.cache_dir})"
                             for i in self.indices]

    def __len__(self):
        return len(self.indices)

    def __call__(self, features):
        return self.cache.lookup(features[VIDEO_ID], self.indices)


class DistillationModel(TrainingModel, keras.Model):
    """Base of the training wrappers: holds the student and a teacher source.

    Subclasses implement `distillation_outputs(features, student_outputs, training)` (extra output
    entries, e.g. the teachers') and `distillation_loss(labels, outputs, label_weights)`.
    """

    def __init__(self, student, teacher_source=None, label_loss_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        # Frozen teachers are settings, not state: kept out of the checkpoint's object graph.
        object.__setattr__(self, "teacher_source", teacher_source)
        object.__setattr__(self, "label_loss_weight", float(label_loss_weight))
        input_names = set(student.input_names) if hasattr(student, "input_names") else None
        object.__setattr__(self, "_student_input_names", input_names)
        # The student's own training behaviour (a mixture's loss terms, a MOD tree's placement).
        object.__setattr__(self, "_student_training", as_training_model(student))

    @property
    def extra_batch_keys(self):
        """Batch entries besides the model inputs that the trainer must pass (cache: video ids)."""
        return () if self.teacher_source is None else self.teacher_source.extra_batch_keys

    @property
    def is_model_parallel(self):
        return self._student_training.is_model_parallel

    def compute_gradients(self, tape, loss, variables):
        return self._student_training.compute_gradients(tape, loss, variables)

    def student_inputs(self, features):
        if self._student_input_names is None:
            return {key: value for key, value in features.items() if key != VIDEO_ID}
        return {key: value for key, value in features.items() if key in self._student_input_names}

    def call(self, inputs, training=None):
        outputs = dict(self.student(self.student_inputs(inputs), training=training))
        outputs.update(self.distillation_outputs(inputs, outputs, training))
        return outputs

    def teacher_outputs(self, features):
        """{teacher_key(i, output): value} of every teacher of the source."""
        return {teacher_key(index, key): value
                for index, outputs in enumerate(self.teacher_source(features))
                for key, value in outputs.items()}

    def distillation_outputs(self, features, student_outputs, training):
        raise NotImplementedError

    def distillation_loss(self, labels, outputs, label_weights):
        raise NotImplementedError

    def auxiliary_loss(self, labels, outputs, label_weights=None):
        """The distillation terms, plus the student's own auxiliary loss."""
        return (self.distillation_loss(labels, outputs, label_weights)
                + self._student_training.auxiliary_loss(labels, outputs, label_weights))

    def auxiliary_predictions(self, outputs):
        """The student's (a mixture student's branches)."""
        return self._student_training.auxiliary_predictions(outputs)

    def regularization_terms(self, outputs):
        """The student's (a mixture student's distillation KL). The wrappers' own distillation
        terms have no reference code multiplying them by --regularization_penalty: they are
        auxiliary losses."""
        return self._student_training.regularization_terms(outputs)

    def trained_extras(self):
        """Layers/models trained beside the student (their regularisation losses count)."""
        return []

    @property
    def losses(self):
        collected = list(self.student.losses)
        for extra in self.trained_extras():
            collected.extend(extra.losses)
        return collected


def student_logits(outputs):
    return teachers_lib.logits_of(outputs)


def stacked_teacher_outputs(outputs, num_teachers, key):
    return [outputs[teacher_key(index, key)] for index in range(num_teachers)]


def require_embeddings(sizes, what, descriptions):
    """Clear error when a teacher has no embedding output."""
    for size, description in zip(sizes, descriptions):
        if size is None:
            raise errors.InvalidInputError(
                f"{what} needs the teachers' embeddings, and {description} has none "
                "(exported ensembles and models without an `embedding` output give "
                "only predictions)")


def build_dense(units, input_size, name):
    """A Dense layer with its weights created now (the optimizer is built before the first step)."""
    layer = keras.layers.Dense(units, name=name)
    layer.build(tf.TensorShape([None, int(input_size)]))
    return layer
