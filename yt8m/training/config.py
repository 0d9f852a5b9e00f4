"""Plain configuration records for training, evaluation and inference.

The entry points turn absl flags into these (flags.py derives each flag's default from the field
default here, so a default lives in one place); the library functions take only these records,
which keeps them callable from the demo and the tests without touching global flag state.
"""
import dataclasses
from typing import Optional

import yt8m  # noqa: F401


@dataclasses.dataclass
class DataConfig:
    """What the input files hold and how to read them (shared by train, eval and inference)."""
    feature_names: tuple = ("mean_rgb",)
    feature_sizes: tuple = (1024,)
    frame_features: bool = False
    segment_labels: bool = False
    num_classes: int = 3862
    max_frames: int = 300
    num_readers: int = 8
    frame_buckets: tuple = ()  # bucket upper bounds in frames; () pads every video to max_frames


@dataclasses.dataclass
class TrainConfig:
    train_dir: str = "/tmp/yt8m_model/"
    train_data_pattern: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: str = "LogisticModel"
    model_hparams: dict = dataclasses.field(default_factory=dict)
    start_new_model: bool = False
    batch_size: int = 1024  # per replica; the global batch is batch_size x replicas
    base_learning_rate: float = 0.01
    learning_rate_decay: float = 0.95
    learning_rate_decay_examples: int = 4000000
    num_epochs: int = 5
    max_steps: Optional[int] = None
    regularization_penalty: float = 1.0
    label_loss: str = "CrossEntropyLoss"
    optimizer: str = "AdamOptimizer"
    clip_gradient_norm: float = 1.0
    export_model_steps: int = 1000  # checkpoint period in steps
    save_checkpoint_secs: float = 600.0
    keep_checkpoint_max: int = 5
    log_every_steps: int = 10
    checkpoint_input_pipeline: bool = True
    dequantize_in_step: bool = True
    shuffle_seed: Optional[int] = None
    distribution_strategy: str = "default"


@dataclasses.dataclass
class EvalConfig:
    train_dir: str = "/tmp/yt8m_model/"
    eval_data_pattern: str = ""
    segment_labels: bool = False
    batch_size: int = 1024
    num_readers: int = 8
    top_k: int = 20
    run_once: bool = False
    checkpoint: Optional[str] = None
    eval_timeout_secs: Optional[float] = None  # stop waiting for new checkpoints after this long
    frame_buckets: tuple = ()


@dataclasses.dataclass
class InferenceConfig:
    train_dir: str = "/tmp/yt8m_model/"
    input_data_pattern: str = ""
    output_file: str = ""
    top_k: int = 20
    batch_size: int = 8192
    num_readers: int = 1
    checkpoint: Optional[str] = None
    frame_buckets: tuple = ()
