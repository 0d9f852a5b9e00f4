"""The configuration records of training, evaluation and inference, which are also the options of
train.py, eval.py and inference.py (`yt8m.core.options`: each field declares its flag once; names
and defaults follow the starter code).

The library functions take only these records, which keeps them callable from the demo and the
tests without touching global flag state. Model hyper-parameters are declared by
`frame_level_models.hparams`, not here.
"""
import dataclasses
from typing import Optional

import yt8m  # noqa: F401
from yt8m.core import errors
from yt8m.core.option_groups import (Batching, CheckpointSelection, CorruptRecords, FrameBuckets,
                                     InputFeatures, PredictionFiles, StepCompilation, TopK)
from yt8m.core.options import option, override

# Names of yt8m.training.distribution.make_strategy (declared here, the lowest layer, so that the
# flag can list them).
DISTRIBUTION_STRATEGIES = ("default", "mirrored", "one_device", "multi_worker", "none")
# tf_keras mixed-precision policies of --mixed_precision (yt8m.training.mixed_precision).
MIXED_PRECISION_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass
class DataConfig(InputFeatures, FrameBuckets, CorruptRecords):
    """What the input files hold and how to read them (shared by train, eval and inference)."""
    segment_labels: bool = option(
        False, "Train on rated segments (label loss only at rated classes).")
    num_readers: int = override(Batching, "num_readers")


@dataclasses.dataclass
class PruningConfig:
    """Gradual magnitude pruning during training (tfmot's polynomial decay, Zhu & Gupta 2017);
    frame_level_models.pruning applies it, train.py records it in model_flags.json."""
    pruning_target_sparsity: float = option(
        0.0, "Gradual magnitude pruning: fraction of zeros the large weight matrices reach at "
        "--pruning_end_step, in [0, 1) (0: no pruning).", lower=0.0)
    pruning_begin_step: int = option(0, "Global step of the first mask update.", lower=0)
    pruning_end_step: int = option(
        10000, "Global step at which the sparsity reaches --pruning_target_sparsity (the masks "
        "stay fixed after it).", lower=0)
    pruning_frequency: int = option(100, "Masks are updated every this many steps.", lower=1)

    def __post_init__(self):
        if not 0.0 <= self.pruning_target_sparsity < 1.0:
            raise errors.InvalidInputError(
                f"--pruning_target_sparsity={self.pruning_target_sparsity} must be in [0, 1) "
                "(0: no pruning)")
        if not self.enabled:
            return
        if self.pruning_begin_step < 0:
            raise errors.InvalidInputError(
                f"--pruning_begin_step={self.pruning_begin_step} must be >= 0")
        if self.pruning_frequency < 1:
            raise errors.InvalidInputError(
                f"--pruning_frequency={self.pruning_frequency} must be >= 1")
        if self.pruning_end_step <= self.pruning_begin_step:
            raise errors.InvalidInputError(
                f"--pruning_end_step={self.pruning_end_step} must be after "
                f"--pruning_begin_step={self.pruning_begin_step}")
        span = self.pruning_end_step - self.pruning_begin_step
        if span % self.pruning_frequency:
            # tfmot updates the masks only at begin + k * frequency <= end: the last update
            # would come before end_step, below the target.
            raise errors.InvalidInputError(
                f"--pruning_end_step={self.pruning_end_step} minus --pruning_begin_step="
                f"{self.pruning_begin_step} ({span}) must be a multiple of --pruning_frequency="
                f"{self.pruning_frequency}, so that a mask update falls on the end step")

    @property
    def enabled(self):
        return self.pruning_target_sparsity > 0.0

    def record(self):
        """The options as model_flags.json records them (empty when pruning is off)."""
        return dataclasses.asdict(self) if self.enabled else {}


@dataclasses.dataclass
class TrainConfig:
    train_dir: str = override(CheckpointSelection, "train_dir",
                              help="Directory for checkpoints, summaries and model_flags.json.")
    train_data_pattern: str = option("", "Glob of the training TFRecord files.")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: str = option("LogisticModel", "Model name from the frame_level_models registry.")
    model_hparams: dict = dataclasses.field(default_factory=dict)  # frame_level_models.hparams
    pruning: PruningConfig = dataclasses.field(default_factory=PruningConfig)
    start_new_model: bool = option(
        False, "Ignore checkpoints in --train_dir and start from a fresh model.")
    batch_size: int = override(
        Batching, "batch_size",
        help="Examples per replica per step (global batch = this x replicas).")
    base_learning_rate: float = option(0.01, "Learning rate at step 0.")
    learning_rate_decay: float = option(
        0.95, "Factor applied every --learning_rate_decay_examples examples.")
    learning_rate_decay_examples: float = option(
        4000000.0, "Examples seen between two learning-rate decays (staircase); a number, so "
        "2.5e6 works as in the starter.")
    num_epochs: int = option(5, "Passes over the training data.", lower=1)
    max_steps: Optional[int] = option(
        None, "Stop at this global step (after the data runs out at the latest). --max_step "
        "(Willow's README spelling, an abbreviation its TF 1.0 flags accepted) is an alias.",
        lower=1, aliases=("max_step",))
    regularization_penalty: float = option(
        1.0, "Weight of the models' regularization losses in the total loss.")
    label_loss: str = option(
        "CrossEntropyLoss", "CrossEntropyLoss, HingeLoss or SoftmaxLoss (the starter's, on the "
        "predictions), or LogitsCrossEntropyLoss / LogitsSoftmaxLoss (from the logits where the "
        "model has them).")
    optimizer: str = option(
        "AdamOptimizer", "AdamOptimizer, GradientDescentOptimizer, MomentumOptimizer, "
        "RMSPropOptimizer, AdagradOptimizer or AdadeltaOptimizer with TF1's constants (Keras "
        "names such as Adam work too, with Keras' constants).")
    clip_gradient_norm: float = option(
        1.0, "Clip each variable's gradient to this L2 norm (0 disables).")
    average_replica_gradients: bool = option(
        False, "Average the replicas' gradients before clipping. Default: sum them, as the "
        "starter sums its towers' gradients (with --batch_size examples per tower).")
    export_model_steps: int = option(
        1000, "Write a checkpoint (what eval, inference and export read) every this many steps.",
        lower=1)
    save_checkpoint_secs: float = option(
        900.0, "Also write a checkpoint when this many seconds passed since the last one (the "
        "starter's 15 minutes).")
    keep_checkpoint_max: int = option(
        0, "Checkpoints kept in --train_dir, the newest ones; 0 keeps every checkpoint (the "
        "starter's max_to_keep=0), so the exporter can average any step range.", lower=0)
    divergence_factor: float = option(
        1000.0, "Stop (as on a NaN loss, without saving) when a step's loss exceeds this many "
        "times the median loss of the last 100 steps (checked from the 20th step of a run); 0 "
        "turns the check off. A healthy run's spikes stay far below 1000x its median.", lower=0)
    allow_unlabelled: bool = option(
        False, "Train on records without labels (e.g. distillation from teachers on test "
        "files); otherwise a first batch without a single label stops the run.")
    log_every_steps: int = option(10, "Progress line and summaries every this many steps.",
                                  lower=1)
    checkpoint_input_pipeline: bool = option(
        True, "Save the tf.data iterator in checkpoints so a resumed run continues at the same "
        "position of the epoch (costs the shuffle buffer's size on disk).")
    dequantize_in_step: bool = option(
        True, "Frame features travel as uint8 and are dequantized inside the train step.")
    device_prefetch: bool = option(
        True, "Copy the next batch to the replicas' devices while a step runs (never before a "
        "checkpoint, so resume stays exact); on CPUs there is nothing to copy.")
    shuffle_seed: Optional[int] = option(
        None, "Seed of the input shuffling and model initialisation (reproducible runs).")
    mixed_precision: str = option(
        "float32", "Keras mixed-precision policy of the model: float32 (the references'), or "
        "mixed_bfloat16 / mixed_float16: 16-bit compute with float32 weights, the softmaxes, "
        "normalisations, batch-norm statistics, losses and outputs in float32; mixed_float16 "
        "adds dynamic loss scaling. Recorded in model_flags.json: eval, inference and export "
        "build the model the same way (docs/training.md).", choices=MIXED_PRECISION_POLICIES)
    jit_compile: bool = override(StepCompilation, "jit_compile")
    distribution_strategy: str = option(
        "default", "default: mirrored over the local GPUs (--num_gpu of them; or over "
        "--num_cpu_devices), else one device.",
        choices=DISTRIBUTION_STRATEGIES)


_RECORDED_HELP = ("train.py's flag, accepted as the references' eval/inference commands repeat it: "
                  "the model is rebuilt from --train_dir's model_flags.json, and a value that "
                  "differs from the record is ignored with a warning.")


def _recorded(group, name):
    return override(group, name, None, help=_RECORDED_HELP)


@dataclasses.dataclass
class RecordedModelFlags:
    """train.py's model flags on the command line of a tool that rebuilds the model from a train
    dir (eval.py, inference.py); None = not given. The model's hyper-parameter flags join them
    (frame_level_models.hparams)."""
    model: Optional[str] = _recorded(TrainConfig, "model")
    frame_features: Optional[bool] = _recorded(InputFeatures, "frame_features")
    feature_names: Optional[tuple[str, ...]] = _recorded(InputFeatures, "feature_names")
    feature_sizes: Optional[tuple[int, ...]] = _recorded(InputFeatures, "feature_sizes")
    num_classes: Optional[int] = _recorded(InputFeatures, "num_classes")
    max_frames: Optional[int] = _recorded(InputFeatures, "max_frames")
    label_loss: Optional[str] = _recorded(TrainConfig, "label_loss")


@dataclasses.dataclass
class EvalConfig(CheckpointSelection, Batching, TopK, FrameBuckets, CorruptRecords,
                 StepCompilation):
    eval_data_pattern: str = option("", "Glob of the evaluation TFRecord files.")
    segment_labels: bool = override(
        DataConfig, "segment_labels",
        help="Evaluate on rated segments (metrics on the rated classes).")
    top_k: int = override(TopK, "top_k", help="Predictions per video kept for GAP and MAP.")
    run_once: bool = option(
        False, "Evaluate the newest checkpoint once instead of waiting for new ones.")
    checkpoint: Optional[str] = override(
        CheckpointSelection, "checkpoint",
        help="Evaluate this checkpoint path instead of the newest (implies run_once).")
    eval_timeout_secs: Optional[float] = option(
        None, "Stop after waiting this long for a new checkpoint (default: forever).")


# The starter's default --segment_label_ids_file: the 1000 classes rated in the 2019 challenge.
SEGMENT_LABEL_IDS_URL = (
    "https://raw.githubusercontent.com/google/youtube-8m/master/segment_label_ids.csv")


@dataclasses.dataclass
class InferenceConfig(PredictionFiles, CheckpointSelection, Batching, TopK, FrameBuckets,
                      CorruptRecords, StepCompilation):
    # "" as in the starter: --input_model_tgz refuses a --train_dir.
    train_dir: str = override(CheckpointSelection, "train_dir", "",
                              help="Directory written by train.py (or give --input_model_tgz).")
    batch_size: int = override(Batching, "batch_size", 512)
    num_readers: int = override(Batching, "num_readers", 1)
    top_k: int = override(
        TopK, "top_k", help="Classes per video in the CSV (with --segment_labels: the classes "
        "each segment offers to the per-class ranking).")
    segment_labels: bool = override(
        DataConfig, "segment_labels",
        help="The starter's segment mode: cut the frame-level videos of --input_data_pattern "
        "into 5-frame segments, score each with the model and write the Class,Segments CSV "
        "(--batch_size then counts segments).")
    segment_max_pred: int = option(
        100000, "With --segment_labels: segments kept per class.", lower=1)
    segment_label_ids_file: str = option(
        SEGMENT_LABEL_IDS_URL, "With --segment_labels: the whitelist CSV (header Index) of the "
        "classes ranked, a path or an http(s) URL; empty: every class.")
    input_model_tgz: str = option(
        "", "Predict with the model of this .tgz written by --output_model_tgz (untarred to "
        "--untar_model_dir) instead of a --train_dir.")
    untar_model_dir: str = option(
        "/tmp/yt8m-model", "Where --input_model_tgz is untarred (replaced if it holds an earlier "
        "untarred model).")
    output_model_tgz: str = option(
        "", "Also bundle the model used (model_flags.json and its checkpoint) into this .tgz, "
        "which --input_model_tgz reads (the Kaggle model upload).")


@dataclasses.dataclass
class LocalDevices:
    """The devices of this machine that train.py uses; applied before TensorFlow starts
    (yt8m.training.distribution.configure_local_devices)."""
    num_gpu: int = option(
        1, "The maximum number of local GPUs to use (the first N; 0: none). Without GPUs the "
        "model trains on one CPU device (see --num_cpu_devices).", lower=0)
    num_cpu_devices: int = option(
        1, "Split the CPU into this many logical devices (data-parallel tests and demos on a "
        "machine without GPUs).", lower=1)
    log_device_placement: bool = option(
        False, "Log the device every operation runs on.")
