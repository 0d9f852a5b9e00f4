"""Shared by the training/eval/inference tests: a tiny synthetic data set and tiny configs."""
import dataclasses
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys

from absl import flags

import yt8m  # noqa: F401
from yt8m import synthetic
from yt8m.core import options
from yt8m.core.config import DataConfig, TrainConfig
from yt8m.segments import finetune

from frame_level_models import hparams as zoo_hparams

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 6
MAX_FRAMES = 24
VIDEO_DATA = DataConfig(feature_names=("mean_rgb", "mean_audio"), feature_sizes=(1024, 128),
                        frame_features=False, num_classes=NUM_CLASSES, num_readers=2)
FRAME_DATA = DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                        frame_features=True, num_classes=NUM_CLASSES, max_frames=MAX_FRAMES,
                        num_readers=2)


def make_small_dataset(root):
    """60 frame-level videos (42 train, 9 validate, 9 test) of 20-30 frames (models keep 24),
    6 classes, and 12 segment-rated videos; about a second to write."""
    synthetic.generate(str(root), num_videos=60, num_classes=NUM_CLASSES, seed=3, num_shards=2,
                       min_frames=20, max_frames=30, num_segment_videos=12)
    return str(root)


def pattern(data_dir, level, split):
    return os.path.join(data_dir, level, f"{split}*.tfrecord")


def train_config(train_dir, data_dir, frame_level=False, **overrides):
    """A tiny, reproducible TrainConfig (LogisticModel on video-level means by default)."""
    level = "frame" if frame_level else "video"
    config = TrainConfig(
        train_dir=str(train_dir), train_data_pattern=pattern(data_dir, level, "train"),
        data=FRAME_DATA if frame_level else VIDEO_DATA,
        model="FrameLevelLogisticModel" if frame_level else "LogisticModel",
        batch_size=4, base_learning_rate=0.01, learning_rate_decay=0.5,
        learning_rate_decay_examples=8, num_epochs=3, max_steps=6, export_model_steps=1000,
        log_every_steps=2, shuffle_seed=11, distribution_strategy="one_device")
    return dataclasses.replace(config, **overrides)


def copy_tree(source, destination):
    """A writable copy of a shared fixture's directory (checkpoint paths are relative: the copy
    is a train dir of its own); returns its path as a string."""
    shutil.copytree(source, destination)
    return str(destination)


def tree_state(directory):
    """(relative path, size, modification time) of every file below `directory`, sorted."""
    state = []
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            info = os.stat(path)
            state.append((os.path.relpath(path, directory), info.st_size, info.st_mtime_ns))
    return sorted(state)


def python_command(script, *args):
    return [sys.executable, os.path.join(REPO, script), *args]


def start(command, stdout=subprocess.PIPE):
    """Starts a subprocess with the test environment (single-threaded TF, no GPU); its stdout
    and stderr go together to `stdout` (a pipe, or an open file for long outputs)."""
    environment = dict(os.environ, TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="1",
                       CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO)
    return subprocess.Popen(command, cwd=REPO, env=environment, stdout=stdout,
                            stderr=subprocess.STDOUT, text=True)


def last_error_line(output):
    """The `<program>: error: ...` line of a failed entry point."""
    lines = [line for line in output.splitlines() if re.match(r"^\w+\.py: error: ", line)]
    return lines[-1] if lines else ""


def once_per_session(tmp_path_factory, name, produce):
    """produce(directory) -> JSON-able result, run once per test session even under xdist.

    pytest-xdist gives every worker its own module fixtures; expensive ones (a batch of program
    runs) would run once per worker. The first worker to get the lock produces the result in the
    session's shared temp dir, the others read it.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return produce(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent  # the session's dir, above the workers' dirs
    result_file = shared / f"{name}.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result_file.exists():
            directory = shared / name
            directory.mkdir(exist_ok=True)
            result_file.write_text(json.dumps(produce(directory)))
    return json.loads(result_file.read_text())


def train_flag_values(argv):
    """train.py's flags (options, model hparams, finetune) parsed from `argv`."""
    fv = flags.FlagValues()
    options.define_flags(TrainConfig, fv)
    zoo_hparams.define_flags(fv)
    finetune.define_flags(fv)
    fv(["train.py"] + argv)
    return fv
