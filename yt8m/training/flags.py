"""absl flag definitions shared by train.py, eval.py and inference.py, and their conversion to
the config records of config.py.

Flag names and defaults follow the starter code (defaults are read from the config dataclasses so
they are written once). Model hyper-parameter flags are defined by `frame_level_models.hparams`,
not here.
"""
import dataclasses

from absl import flags

import yt8m  # noqa: F401
from yt8m.training.config import DataConfig, EvalConfig, InferenceConfig, TrainConfig
from yt8m.training.distribution import STRATEGIES

_DATA = DataConfig()
_TRAIN = TrainConfig()
_EVAL = EvalConfig()
_INFERENCE = InferenceConfig()


def _csv(values):
    return ",".join(str(value) for value in values)


def parse_feature_flags(feature_names, feature_sizes):
    """'rgb,audio' and '1024,128' -> (('rgb', 'audio'), (1024, 128)); errors name the flags."""
    names = tuple(name.strip() for name in feature_names.split(",") if name.strip())
    if not names:
        raise ValueError("--feature_names is empty; give comma-separated names such as rgb,audio")
    sizes = []
    for text in feature_sizes.split(","):
        try:
            size = int(text)
        except ValueError:
            raise ValueError(f"--feature_sizes={feature_sizes!r}: {text.strip()!r} is not an "
                             "integer") from None
        if size <= 0:
            raise ValueError(f"--feature_sizes={feature_sizes!r}: sizes must be positive")
        sizes.append(size)
    if len(names) != len(sizes):
        raise ValueError(
            f"--feature_names has {len(names)} names ({feature_names!r}) but --feature_sizes has "
            f"{len(sizes)} sizes ({feature_sizes!r}); give one size per feature")
    if len(set(names)) != len(names):
        raise ValueError(f"--feature_names={feature_names!r} repeats a name")
    return names, tuple(sizes)


def parse_frame_buckets(values, flag_name="--frame_buckets"):
    """['60', '120'] -> (60, 120); errors name the flag (range checks: yt8m.data.bucketing)."""
    bounds = []
    for value in values:
        try:
            bounds.append(int(value))
        except ValueError:
            raise ValueError(f"{flag_name}={','.join(values)!r}: {value!r} is not an integer "
                             "number of frames") from None
    return tuple(bounds)


def define_frame_bucket_flag(flag_values=flags.FLAGS):
    flags.DEFINE_list("frame_buckets", list(_DATA.frame_buckets),
                      "Length bucketing for frame-level data: comma-separated bucket upper bounds "
                      "in frames (e.g. 60,120,180,240,300; max_frames is added). Videos of one "
                      "bucket are batched together and padded to its bound instead of "
                      "max_frames: same predictions, less padded work, another video order. "
                      "Empty: off (every video padded to max_frames, as the starter code).",
                      flag_values=flag_values)


def define_data_flags(flag_values=flags.FLAGS):
    fv = flag_values
    flags.DEFINE_string("feature_names", _csv(_DATA.feature_names),
                        "Comma-separated feature names to read (rgb,audio or mean_rgb,mean_audio).",
                        flag_values=fv)
    flags.DEFINE_string("feature_sizes", _csv(_DATA.feature_sizes),
                        "Comma-separated feature dimensions, one per --feature_names entry.",
                        flag_values=fv)
    flags.DEFINE_bool("frame_features", _DATA.frame_features,
                      "Read frame-level SequenceExamples (else video-level Examples).",
                      flag_values=fv)
    flags.DEFINE_integer("num_classes", _DATA.num_classes,
                         "Vocabulary size (3862 for YouTube-8M 2018/2019; smaller for synthetic).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("max_frames", _DATA.max_frames,
                         "Frames kept per video (truncate / zero-pad).", lower_bound=1,
                         flag_values=fv)
    define_frame_bucket_flag(fv)


def define_train_flags(flag_values=flags.FLAGS):
    fv = flag_values
    define_data_flags(fv)
    flags.DEFINE_string("train_dir", _TRAIN.train_dir,
                        "Directory for checkpoints, summaries and model_flags.json.",
                        flag_values=fv)
    flags.DEFINE_string("train_data_pattern", _TRAIN.train_data_pattern,
                        "Glob of the training TFRecord files.", flag_values=fv)
    flags.DEFINE_bool("segment_labels", _DATA.segment_labels,
                      "Train on rated segments (label loss only at rated classes).", flag_values=fv)
    flags.DEFINE_string("model", _TRAIN.model, "Model name from the frame_level_models registry.",
                        flag_values=fv)
    flags.DEFINE_bool("start_new_model", _TRAIN.start_new_model,
                      "Ignore checkpoints in --train_dir and start from a fresh model.",
                      flag_values=fv)
    flags.DEFINE_integer("batch_size", _TRAIN.batch_size,
                         "Examples per replica per step (global batch = this x replicas).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_float("base_learning_rate", _TRAIN.base_learning_rate,
                       "Learning rate at step 0.", flag_values=fv)
    flags.DEFINE_float("learning_rate_decay", _TRAIN.learning_rate_decay,
                       "Factor applied every --learning_rate_decay_examples examples.",
                       flag_values=fv)
    flags.DEFINE_integer("learning_rate_decay_examples", _TRAIN.learning_rate_decay_examples,
                         "Examples seen between two learning-rate decays (staircase).",
                         flag_values=fv)
    flags.DEFINE_integer("num_epochs", _TRAIN.num_epochs, "Passes over the training data.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("max_steps", _TRAIN.max_steps,
                         "Stop at this global step (after the data runs out at the latest).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_float("regularization_penalty", _TRAIN.regularization_penalty,
                       "Weight of the models' regularization losses in the total loss.",
                       flag_values=fv)
    flags.DEFINE_string("label_loss", _TRAIN.label_loss,
                        "CrossEntropyLoss, HingeLoss or SoftmaxLoss.", flag_values=fv)
    flags.DEFINE_string("optimizer", _TRAIN.optimizer,
                        "AdamOptimizer, GradientDescentOptimizer, MomentumOptimizer, "
                        "RMSPropOptimizer or AdagradOptimizer (Keras names such as Adam work too).",
                        flag_values=fv)
    flags.DEFINE_float("clip_gradient_norm", _TRAIN.clip_gradient_norm,
                       "Clip each variable's gradient to this L2 norm (0 disables).",
                       flag_values=fv)
    flags.DEFINE_integer("num_readers", _DATA.num_readers, "Files read in parallel.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("export_model_steps", _TRAIN.export_model_steps,
                         "Write a checkpoint (what eval, inference and export read) every this "
                         "many steps.", lower_bound=1, flag_values=fv)
    flags.DEFINE_float("save_checkpoint_secs", _TRAIN.save_checkpoint_secs,
                       "Also write a checkpoint when this many seconds passed since the last one.",
                       flag_values=fv)
    flags.DEFINE_integer("keep_checkpoint_max", _TRAIN.keep_checkpoint_max,
                         "Checkpoints kept in --train_dir.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("log_every_steps", _TRAIN.log_every_steps,
                         "Progress line and summaries every this many steps.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_bool("checkpoint_input_pipeline", _TRAIN.checkpoint_input_pipeline,
                      "Save the tf.data iterator in checkpoints so a resumed run continues at the "
                      "same position of the epoch (costs the shuffle buffer's size on disk).",
                      flag_values=fv)
    flags.DEFINE_bool("dequantize_in_step", _TRAIN.dequantize_in_step,
                      "Frame features travel as uint8 and are dequantized inside the train step.",
                      flag_values=fv)
    flags.DEFINE_integer("shuffle_seed", _TRAIN.shuffle_seed,
                         "Seed of the input shuffling and model initialisation (reproducible "
                         "runs).", flag_values=fv)
    flags.DEFINE_enum("distribution_strategy", _TRAIN.distribution_strategy, STRATEGIES,
                      "default: mirrored over local GPUs (or --num_cpu_devices), else one device.",
                      flag_values=fv)
    flags.DEFINE_integer("num_cpu_devices", 1,
                         "Split the CPU into this many logical devices (data-parallel tests and "
                         "demos on a machine without GPUs).", lower_bound=1, flag_values=fv)


def define_eval_flags(flag_values=flags.FLAGS):
    fv = flag_values
    flags.DEFINE_string("train_dir", _EVAL.train_dir, "Directory written by train.py.",
                        flag_values=fv)
    flags.DEFINE_string("eval_data_pattern", _EVAL.eval_data_pattern,
                        "Glob of the evaluation TFRecord files.", flag_values=fv)
    flags.DEFINE_bool("segment_labels", _EVAL.segment_labels,
                      "Evaluate on rated segments (metrics on the rated classes).", flag_values=fv)
    flags.DEFINE_integer("batch_size", _EVAL.batch_size, "Examples per batch.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("num_readers", _EVAL.num_readers, "Files read in parallel.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("top_k", _EVAL.top_k, "Predictions per video kept for GAP and MAP.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("run_once", _EVAL.run_once,
                      "Evaluate the newest checkpoint once instead of waiting for new ones.",
                      flag_values=fv)
    flags.DEFINE_string("checkpoint", _EVAL.checkpoint,
                        "Evaluate this checkpoint path instead of the newest (implies run_once).",
                        flag_values=fv)
    flags.DEFINE_float("eval_timeout_secs", _EVAL.eval_timeout_secs,
                       "Stop after waiting this long for a new checkpoint (default: forever).",
                       flag_values=fv)
    define_frame_bucket_flag(fv)


def define_inference_flags(flag_values=flags.FLAGS):
    fv = flag_values
    flags.DEFINE_string("train_dir", _INFERENCE.train_dir, "Directory written by train.py.",
                        flag_values=fv)
    flags.DEFINE_string("input_data_pattern", _INFERENCE.input_data_pattern,
                        "Glob of the TFRecord files to predict.", flag_values=fv)
    flags.DEFINE_string("output_file", _INFERENCE.output_file,
                        "Submission CSV to write (atomically).", flag_values=fv)
    flags.DEFINE_integer("top_k", _INFERENCE.top_k, "Classes per video in the CSV.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("batch_size", _INFERENCE.batch_size, "Examples per batch.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("num_readers", _INFERENCE.num_readers, "Files read in parallel.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_string("checkpoint", _INFERENCE.checkpoint,
                        "Use this checkpoint path instead of the newest in --train_dir.",
                        flag_values=fv)
    define_frame_bucket_flag(fv)


def _values(flag_values, names):
    values = {name: flag_values[name].value for name in names}
    if "frame_buckets" in values:
        values["frame_buckets"] = parse_frame_buckets(values["frame_buckets"])
    return values


def train_config_from_flags(flag_values=flags.FLAGS, model_hparams=None):
    names, sizes = parse_feature_flags(flag_values.feature_names, flag_values.feature_sizes)
    data = DataConfig(feature_names=names, feature_sizes=sizes,
                      **_values(flag_values, ("frame_features", "segment_labels", "num_classes",
                                              "max_frames", "num_readers", "frame_buckets")))
    simple = [field.name for field in dataclasses.fields(TrainConfig)
              if field.name not in ("data", "model_hparams")]
    return TrainConfig(data=data, model_hparams=dict(model_hparams or {}),
                       **_values(flag_values, simple))


def eval_config_from_flags(flag_values=flags.FLAGS):
    return EvalConfig(**_values(flag_values, [f.name for f in dataclasses.fields(EvalConfig)]))


def inference_config_from_flags(flag_values=flags.FLAGS):
    return InferenceConfig(
        **_values(flag_values, [f.name for f in dataclasses.fields(InferenceConfig)]))
