"""Teachers for distillation: frozen models read from disk, called like models.

A teacher path is either a train dir written by train.py (rebuilt with
`yt8m.training.checkpoints.load_model`; outputs predictions, logits and, where the model defines
it, the embedding) or an ensemble SavedModel written by export_ensemble.py (predictions only; its
logits are the inverse sigmoid of the predictions, exact for a sigmoid output).

Teachers are frozen: their weights are not trainable and they always run in inference mode (no
dropout, batch norm with its moving statistics, which are not updated).
"""
import os

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.core import model_flags as model_flags_lib
from yt8m.core import errors
from yt8m.export import serving
from yt8m.training import checkpoints

NUM_FRAMES = "num_frames"
# Probabilities are clipped to [eps, 1 - eps] before the inverse sigmoid (float32 resolves 1e-7).
_PROBABILITY_EPSILON = 1e-7


def probability_logits(probabilities):
    """Inverse sigmoid log(p) - log(1 - p), with p clipped to [1e-7, 1 - 1e-7]."""
    p = tf.clip_by_value(probabilities, _PROBABILITY_EPSILON, 1.0 - _PROBABILITY_EPSILON)
    return tf.math.log(p) - tf.math.log1p(-p)


def logits_of(outputs):
    """A model's logits: its `logits` output, else the inverse sigmoid of its predictions (MoE
    classifiers and ensembles define no logits)."""
    if outputs.get("logits") is not None:
        return outputs["logits"]
    return probability_logits(outputs["predictions"])


def output_size(model, key):
    """The last dimension of a functional model's output `key`, or None (no such output, or a
    subclassed model that declares no outputs)."""
    try:
        outputs = model.output
    except AttributeError:
        return None
    if not isinstance(outputs, dict) or key not in outputs:
        return None
    return int(outputs[key].shape[-1])


class TrainDirTeacher:
    """The newest checkpoint of a train dir, frozen."""

    def __init__(self, train_dir, model=None):
        flags = model_flags_lib.read_model_flags(train_dir)
        self.path = train_dir
        self.description = f"{flags['model']} from {train_dir}"
        self.num_classes = int(flags["num_classes"])
        self.frame_features = bool(flags["frame_features"])
        self.feature_names = model_flags_lib.features(flags)[0]
        self.model = model if model is not None else checkpoints.load_model(train_dir)
        self.model.trainable = False
        self.embedding_size = output_size(self.model, "embedding")

    @property
    def variables(self):
        return self.model.variables

    def __call__(self, features):
        inputs = {name: features[name] for name in self.feature_names}
        if self.frame_features:
            inputs[NUM_FRAMES] = features[NUM_FRAMES]
        outputs = self.model(inputs, training=False)
        result = {"predictions": outputs["predictions"], "logits": logits_of(outputs)}
        if self.embedding_size is not None:
            result["embedding"] = outputs["embedding"]
        return {key: tf.stop_gradient(value) for key, value in result.items()}


class SavedModelTeacher:
    """An ensemble exported by export_ensemble.py (serving_default signature), frozen."""

    def __init__(self, export_dir):
        self.path = export_dir
        self.loaded = tf.saved_model.load(export_dir)
        if (serving.SERVING_DEFAULT not in self.loaded.signatures
                or not hasattr(self.loaded, "num_classes")):
            raise errors.InvalidInputError(
                f"teacher {export_dir!r} is a SavedModel but not an export of "
                "export_ensemble.py (no serving_default signature or num_classes)")
        self.signature = self.loaded.signatures[serving.SERVING_DEFAULT]
        self.description = f"exported ensemble {export_dir}"
        self.num_classes = int(self.loaded.num_classes.numpy())
        self.frame_features = True
        self.feature_names = tuple(serving.FEATURE_NAMES)
        self.embedding_size = None

    @property
    def variables(self):
        return list(self.loaded.variables)

    def __call__(self, features):
        predictions = self.signature(**{name: features[name] for name in self.feature_names},
                                     num_frames=tf.cast(features[NUM_FRAMES], tf.int32))
        predictions = tf.stop_gradient(predictions["predictions"])
        return {"predictions": predictions, "logits": probability_logits(predictions)}


def load_teacher(path):
    """A train dir (has model_flags.json) or an export_ensemble.py SavedModel (saved_model.pb)."""
    if tf.io.gfile.exists(model_flags_lib.model_flags_path(path)):
        return TrainDirTeacher(path)
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return SavedModelTeacher(path)
    raise errors.MissingInputError(
        f"--teacher_dirs: {path!r} is neither a train dir (no {model_flags_lib.MODEL_FLAGS_FILE}) "
        "nor an ensemble exported by export_ensemble.py (no saved_model.pb)")


def check_teachers(teachers, num_classes, feature_names, frame_features):
    """Every teacher predicts the student's classes from features the student's data holds."""
    for teacher in teachers:
        if teacher.num_classes != num_classes:
            raise errors.InvalidInputError(
                f"teacher {teacher.description} predicts {teacher.num_classes} "
                f"classes, the student {num_classes} (--num_classes)")
        if teacher.frame_features != frame_features:
            raise errors.InvalidInputError(
                f"teacher {teacher.description} reads "
                f"{'frame' if teacher.frame_features else 'video'}-level data, the "
                f"student {'frame' if frame_features else 'video'}-level data")
        missing = [name for name in teacher.feature_names if name not in feature_names]
        if missing:
            raise errors.InvalidInputError(
                f"teacher {teacher.description} reads features {missing} that the "
                f"student's data does not (--feature_names={','.join(feature_names)})")
