"""Assembly steps the models share: Keras inputs, training-time frame sampling, fusion of the
per-stream representations, and the classifier heads with their output dict; with the hparam rows
of those shared steps (each model lists the ones it uses)."""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.hparams import HParam
from frame_level_models.layers import common
from frame_level_models.layers import frame_ops
from frame_level_models.layers.logistic import LogisticClassifier
from frame_level_models.layers.moe import MoeClassifier
from yt8m import features
from yt8m.core import errors

NUM_FRAMES = "num_frames"
CLASSIFIER_NAMES = ("LogisticModel", "MoeModel")

# Classifiers (starter video_level_models, Willow's gated MoE).
L2_PENALTY = HParam(
    "l2_penalty", "float", None,
    "L2 penalty of the classifier weights, starter meaning penalty/2*sum(w^2); --moe_l2 (Willow's "
    "name) is an alias. Default per model: 1e-8 (starter models, Willow's other models), 1e-6 "
    "(NetVLADModelLF, the winning configuration), 1e-5 (NeXtVLADModel).", lower_bound=0.0,
    fallback=1e-8, aliases=("moe_l2",))
MOE_NUM_MIXTURES = HParam(
    "moe_num_mixtures", "integer", None,
    "Experts per class of the MoE classifier. Default per model: 2 (starter, Willow), 4 "
    "(NeXtVLADModel, linrongc's flag default).", lower_bound=1, fallback=2)
MOE_PROB_GATING = HParam(
    "moe_prob_gating", "bool", None,
    "Probability context gating on the MoE output (Willow). Default per model: on for "
    "NetVLADModelLF, off elsewhere.", fallback=False)
VIDEO_LEVEL_CLASSIFIER = HParam(
    "video_level_classifier_model", "enum", None,
    "Classifier on top of the frame-level pooling. Default per model: MoeModel (DbofModel, "
    "LstmModel: the starter's flag default), LogisticModel (NeXtVLADModel: the paper and every "
    "linrongc/MOD script).", choices=CLASSIFIER_NAMES, fallback="MoeModel")
MOE_HPARAMS = (MOE_NUM_MIXTURES, MOE_PROB_GATING)
# What `classifier_outputs` reads.
CLASSIFIER_HPARAMS = (VIDEO_LEVEL_CLASSIFIER, L2_PENALTY) + MOE_HPARAMS
# Frame sampling: the starter's (DbofModel, and Willow's models, which sample as the starter:
# at training AND evaluation, `starter_sampling`), or a training-time augmentation of the models
# whose reference does not sample (`frame_streams`).
SAMPLE_RANDOM_FRAMES = HParam(
    "sample_random_frames", "bool", None,
    "DbofModel and Willow's *ModelLF (their flag, default True there): sample `iterations` "
    "frames per video at training (and evaluation/inference, see --deterministic_eval), True = "
    "drawn at random with replacement, False = a random run of consecutive frames. Other "
    "frame-level models (their reference does not sample; default False): True feeds "
    "`iterations` random frames at training only.", fallback=False)
ITERATIONS = HParam(
    "iterations", "integer", None,
    "Frames sampled per video (--sample_random_frames; Willow's --gru_random_sequence / "
    "--lstm_random_sequence). Default per model: 30 (the references' flag default), 300 "
    "(NetVLADModelLF, the winning configuration).", lower_bound=1, fallback=30)
DETERMINISTIC_EVAL = HParam(
    "deterministic_eval", "bool", None,
    "Models that sample frames at evaluation in their reference (DbofModel, Willow's models): "
    "evaluation, inference and export use every valid frame instead (deterministic "
    "predictions); training still samples. Default per model: off for DbofModel (the "
    "starter's behaviour), on for Willow's models (an announced deviation, docs/models.md).",
    fallback=False)
FRAME_SAMPLING_HPARAMS = (SAMPLE_RANDOM_FRAMES, ITERATIONS)
STARTER_SAMPLING_HPARAMS = FRAME_SAMPLING_HPARAMS + (DETERMINISTIC_EVAL,)
BN_MOMENTUM = HParam(
    "bn_momentum", "float", common.BN_MOMENTUM,
    "Momentum of every batch norm's moving statistics (moving = momentum * moving + (1 - "
    "momentum) * batch). 0.999 is the references' (slim's) value, meant for long runs; short "
    "runs evaluate better with 0.9-0.99.", lower_bound=0.0, upper_bound=1.0)


def _split_csv(value):
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)


def resolve_features(model_name, frame_level, feature_names=None, feature_sizes=None):
    """(names, sizes) for a model, defaulting to rgb/audio (frame) or mean_rgb/mean_audio (video)
    with sizes 1024/128; strings such as "rgb,audio" are accepted (they are what the flags hold)."""
    default_names = features.DEFAULT_FEATURE_NAMES if frame_level else features.VIDEO_FEATURE_NAMES
    names = tuple(_split_csv(feature_names)) if feature_names is not None else default_names
    if feature_sizes is None:
        if len(names) != len(features.DEFAULT_FEATURE_SIZES):
            raise errors.InvalidInputError(
                f"{model_name}: feature_names={','.join(names)} needs feature_sizes "
                "(the default sizes 1024,128 fit two features)")
        sizes = features.DEFAULT_FEATURE_SIZES
    else:
        try:
            sizes = tuple(int(size) for size in _split_csv(feature_sizes))
        except ValueError:
            raise errors.InvalidInputError(
                f"{model_name}: feature_sizes={feature_sizes!r} must be integers") \
                from None
    if not names or len(names) != len(sizes):
        raise errors.InvalidInputError(
            f"{model_name}: feature_names={names} and feature_sizes={sizes} need one "
            "size per name")
    if any(size <= 0 for size in sizes):
        raise errors.InvalidInputError(f"{model_name}: feature_sizes={sizes} must be positive")
    if len(set(names)) != len(names) or NUM_FRAMES in names:
        raise errors.InvalidInputError(
            f"{model_name}: feature_names={names} must be distinct and not "
            "'num_frames'")
    video_names = [name for name in names if name.startswith("mean_")]
    if frame_level and video_names:
        raise errors.InvalidInputError(
            f"{model_name} is a frame-level model but feature_names has video-level "
            f"features {video_names}; use rgb,audio (or a video-level model)")
    if not frame_level and len(video_names) != len(names):
        raise errors.InvalidInputError(
            f"{model_name} is a video-level model; feature_names={','.join(names)} "
            "must be video-level features (mean_rgb,mean_audio)")
    return names, sizes


def make_inputs(names, sizes, frame_level):
    """Input dict: frame features [B, T, size] with a free T (bucketing by length) and num_frames
    [B] int32, or video-level means [B, size]."""
    shape = (lambda size: (None, size)) if frame_level else (lambda size: (size,))
    inputs = {name: keras.Input(shape=shape(size), dtype=tf.float32, name=name)
              for name, size in zip(names, sizes)}
    if frame_level:
        inputs[NUM_FRAMES] = keras.Input(shape=(), dtype=tf.int32, name=NUM_FRAMES)
    return inputs


def starter_input(inputs, names):
    """The starter's model input: the features concatenated (1152 per frame for rgb,audio; or
    mean_rgb ++ mean_audio) and L2-normalised over that axis (train.py / eval.py / export_model.py
    `tf.nn.l2_normalize(model_input_raw, feature_dim)`). Part of the model, so evaluation,
    inference, export, serving and distillation teachers all see what training saw."""
    return frame_ops.FrameL2Normalize(name="input_l2_normalize")(
        concat([inputs[name] for name in names], "input_concat"))


def frame_streams(inputs, names, hp):
    """(streams, num_frames) after the optional training-time random frame sampling
    (--sample_random_frames of the models whose reference does not sample)."""
    streams = [inputs[name] for name in names]
    return sampled_streams(streams, inputs[NUM_FRAMES], hp)


def sampled_streams(streams, num_frames, hp):
    """(streams, num_frames) after the optional training-time random frame sampling."""
    if getattr(hp, "sample_random_frames", False):
        *streams, num_frames = frame_ops.RandomFrameSampler(
            hp.iterations, name="random_frame_sampler")(list(streams) + [num_frames])
    return list(streams), num_frames


def starter_sampling(frames, num_frames, hp):
    """(frames, num_frames) sampled as the starter's DbofModel does: `iterations` frames per
    video at training and evaluation (random frames, or a random consecutive run with
    --sample_random_frames=False); with --deterministic_eval every valid frame outside training.
    """
    frames, num_frames = frame_ops.RandomFrameSampler(
        hp.iterations, sequence=not hp.sample_random_frames,
        at_inference=not hp.deterministic_eval, name="frame_sampler")([frames, num_frames])
    return frames, num_frames


def concat(tensors, name):
    if len(tensors) == 1:
        return tensors[0]
    return keras.layers.Concatenate(axis=-1, name=name)(tensors)


def float32_outputs(outputs):
    """The output dict with every tensor in float32: under a mixed-precision policy the layers
    return 16-bit logits and embeddings, and losses, metrics, distillation and export read them
    in float32. A float32 Activation layer per cast (none under the float32 policy, whose models
    stay as they were)."""
    return {key: value if value.dtype == tf.float32 else
            keras.layers.Activation("linear", dtype="float32", name=f"{key}_float32")(value)
            for key, value in outputs.items()}


def stream_share(value, index, divisor=2):
    """Size rule of late fusion (references: rgb full, audio half; Willow's DBoF models: audio an
    eighth): the first stream gets `value`, the others value // divisor (at least 1)."""
    return value if index == 0 else max(value // divisor, 1)


def logistic_outputs(embedding, num_classes, l2_penalty, **classifier_options):
    """classifier_options: LogisticClassifier's kernel_initializer / l2_on_bias."""
    logits = LogisticClassifier(num_classes, l2_penalty, name="logistic",
                                **classifier_options)(embedding)
    # float32 under mixed precision too: the sigmoid of 16-bit logits near 1 is coarse (2^-8).
    predictions = keras.layers.Activation("sigmoid", dtype="float32", name="predictions")(logits)
    return {"predictions": predictions, "logits": logits, "embedding": embedding}


def moe_outputs(embedding, num_classes, num_mixtures, l2_penalty, prob_gating,
                bn_momentum=common.BN_MOMENTUM):
    predictions = MoeClassifier(num_classes, num_mixtures, l2_penalty, prob_gating,
                                bn_momentum=bn_momentum, name="moe")(embedding)
    return {"predictions": predictions, "embedding": embedding}


def classifier_outputs(classifier, embedding, num_classes, hp):
    """Output dict of the video-level classifier `classifier` (LogisticModel or MoeModel)."""
    if classifier == "LogisticModel":
        return logistic_outputs(embedding, num_classes, hp.l2_penalty)
    if classifier == "MoeModel":
        return moe_outputs(embedding, num_classes, hp.moe_num_mixtures, hp.l2_penalty,
                           hp.moe_prob_gating, hp.bn_momentum)
    raise ValueError(f"unknown classifier {classifier!r}; choose LogisticModel or MoeModel")
