"""Assembly steps the models share: Keras inputs, training-time frame sampling, fusion of the
per-stream representations, and the classifier heads with their output dict."""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.layers import frame_ops
from frame_level_models.layers.logistic import LogisticClassifier
from frame_level_models.layers.moe import MoeClassifier

NUM_FRAMES = "num_frames"


def make_inputs(names, sizes, frame_level):
    """Input dict: frame features [B, T, size] with a free T (bucketing by length) and num_frames
    [B] int32, or video-level means [B, size]."""
    shape = (lambda size: (None, size)) if frame_level else (lambda size: (size,))
    inputs = {name: keras.Input(shape=shape(size), dtype=tf.float32, name=name)
              for name, size in zip(names, sizes)}
    if frame_level:
        inputs[NUM_FRAMES] = keras.Input(shape=(), dtype=tf.int32, name=NUM_FRAMES)
    return inputs


def frame_streams(inputs, names, hp):
    """(streams, num_frames) after the optional training-time random frame sampling."""
    streams = [inputs[name] for name in names]
    num_frames = inputs[NUM_FRAMES]
    if getattr(hp, "sample_random_frames", False):
        *streams, num_frames = frame_ops.RandomFrameSampler(
            hp.iterations, name="random_frame_sampler")(streams + [num_frames])
    return streams, num_frames


def concat(tensors, name):
    if len(tensors) == 1:
        return tensors[0]
    return keras.layers.Concatenate(axis=-1, name=name)(tensors)


def stream_share(value, index):
    """Size rule of late fusion (references: rgb full, audio half): the first stream gets `value`,
    the others value // 2 (at least 1)."""
    return value if index == 0 else max(value // 2, 1)


def logistic_outputs(embedding, num_classes, l2_penalty):
    logits = LogisticClassifier(num_classes, l2_penalty, name="logistic")(embedding)
    predictions = keras.layers.Activation("sigmoid", name="predictions")(logits)
    return {"predictions": predictions, "logits": logits, "embedding": embedding}


def moe_outputs(embedding, num_classes, num_mixtures, l2_penalty, prob_gating):
    predictions = MoeClassifier(num_classes, num_mixtures, l2_penalty, prob_gating,
                                name="moe")(embedding)
    return {"predictions": predictions, "embedding": embedding}


def classifier_outputs(classifier, embedding, num_classes, hp):
    """Output dict of the video-level classifier `classifier` (LogisticModel or MoeModel)."""
    if classifier == "LogisticModel":
        return logistic_outputs(embedding, num_classes, hp.l2_penalty)
    if classifier == "MoeModel":
        return moe_outputs(embedding, num_classes, hp.moe_num_mixtures, hp.l2_penalty,
                           hp.moe_prob_gating)
    raise ValueError(f"unknown classifier {classifier!r}; choose LogisticModel or MoeModel")
