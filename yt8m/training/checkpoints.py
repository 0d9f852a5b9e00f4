"""Checkpoints of a train dir: finding them, and rebuilding + restoring the model they hold.

train.py writes `train_dir/ckpt-<step>` through tf.train.CheckpointManager over
`tf.train.Checkpoint(model=..., optimizer=..., [data_iterator=...])`. Everything that reads a
trained model (eval, inference, export, distillation teachers) goes through `load_model`.
"""
import os
import re

from absl import logging

import yt8m  # noqa: F401
import tensorflow as tf

from frame_level_models import pruning
from yt8m.core import errors
from yt8m.core import model_flags as model_flags_lib
from yt8m.training.model_builder import build_model

CHECKPOINT_PREFIX = "ckpt"
CHECKPOINT_STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's list of the checkpoints
_STEP_PATTERN = re.compile(r"-(\d+)$")
# The files of one checkpoint: ckpt-<step>.index and ckpt-<step>.data-<shard>-of-<shards>.
CHECKPOINT_FILE = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)\.(index|data-\d+-of-\d+)$")


class NoCheckpointError(errors.MissingInputError):
    pass


class CheckpointMismatchError(errors.InvalidInputError):
    pass


def checkpoint_step(checkpoint_path):
    """ckpt-1200 -> 1200 (the trainer numbers checkpoints by global step)."""
    match = _STEP_PATTERN.search(checkpoint_path)
    if not match:
        raise errors.InvalidInputError(
            f"checkpoint path {checkpoint_path!r} does not end in -<step>")
    return int(match.group(1))


def latest_checkpoint(train_dir):
    """Newest checkpoint of `train_dir`, or NoCheckpointError naming the directory."""
    path = tf.train.latest_checkpoint(train_dir) if tf.io.gfile.isdir(train_dir) else None
    if path is None:
        raise NoCheckpointError(
            f"--train_dir={train_dir!r} holds no checkpoint (train.py writes "
            f"{CHECKPOINT_PREFIX}-<step>.index files there)")
    return path


def require_checkpoint(train_dir, checkpoint=None):
    """The checkpoint to use: `checkpoint` when given (it must exist), else the newest one."""
    if checkpoint:
        _require_checkpoint_files(checkpoint)
        return checkpoint
    return latest_checkpoint(train_dir)


def _require_checkpoint_files(checkpoint_path):
    if not tf.io.gfile.exists(checkpoint_path + ".index"):
        raise NoCheckpointError(
            f"--checkpoint={checkpoint_path!r}: no such checkpoint ({checkpoint_path}.index "
            "does not exist)")


def restore_model_weights(model, checkpoint_path, description):
    """Restores only the model's variables; every one of them must be in the checkpoint. A model
    with pruning wrappers (a pruned train dir's, see build_model) gets its masks applied: its
    weights are then those it serves."""
    _restore_matching(tf.train.Checkpoint(model=model), checkpoint_path,
                      f"the weights of {description}")
    pruning.apply_masks(model)


def _restore_matching(checkpoint, checkpoint_path, what):
    """Restores `checkpoint` requiring every one of its objects in the file (extra ones, such as
    optimizer slots when only the model is wanted, are fine)."""
    _require_checkpoint_files(checkpoint_path)
    try:
        status = checkpoint.restore(checkpoint_path)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
        raise CheckpointMismatchError(
            f"checkpoint {checkpoint_path} does not hold {what}: "
            f"{str(error).splitlines()[0]}") from error


def restore_training_state(checkpoint_path, model, optimizer, description, data_iterator=None,
                           input_signature=None, extra_objects=None):
    """Restores model and optimizer (both required) and `extra_objects` ({name: trackable} saved
    beside them, also required), then the data iterator when the checkpoint holds one saved for the
    same input pipeline (`input_signature`, a tf.Variable of the JSON description of files, batch
    and epochs); otherwise the data restarts from its beginning."""
    _restore_matching(tf.train.Checkpoint(model=model, optimizer=optimizer,
                                          **(extra_objects or {})), checkpoint_path,
                      f"the weights and optimizer state of {description}")
    if data_iterator is not None:
        restore_input_position(checkpoint_path, data_iterator, input_signature)


def restore_input_position(checkpoint_path, data_iterator, input_signature):
    """Restores `data_iterator` from `checkpoint_path` when it holds a position saved for the same
    input pipeline (`input_signature`); returns whether it did (otherwise the data restarts from
    its beginning, with a warning)."""
    if not tf.io.gfile.exists(checkpoint_path + ".index"):
        logging.warning("%s does not exist: no input-pipeline position; the data restarts from "
                        "its beginning.", checkpoint_path)
        return False
    saved = dict(tf.train.list_variables(checkpoint_path))
    signature_key = "input_signature/.ATTRIBUTES/VARIABLE_VALUE"
    if signature_key not in saved:
        logging.warning("%s holds no input-pipeline position; the data restarts from its "
                        "beginning.", checkpoint_path)
        return False
    saved_signature = tf.train.load_variable(checkpoint_path, signature_key)
    if saved_signature != input_signature.numpy():
        logging.warning("%s was saved reading other data (files, batch size, epochs, seed or "
                        "share of the workers changed); the data restarts from its beginning.",
                        checkpoint_path)
        return False
    tf.train.Checkpoint(data_iterator=data_iterator).restore(checkpoint_path).expect_partial()
    return True


def load_model(train_dir, checkpoint=None):
    """Rebuilds the model described by train_dir/model_flags.json and restores its weights.

    Args:
      train_dir: directory written by train.py.
      checkpoint: a checkpoint path (ckpt-<step>); default the newest one in train_dir.
    Returns:
      The tf_keras model (uncompiled); a pruned train dir's stripped of its pruning wrappers, its
      pruned weights zeros.
    """
    flags = model_flags_lib.read_model_flags(train_dir)
    checkpoint_path = require_checkpoint(train_dir, checkpoint)
    model = build_model(flags)
    restore_model_weights(
        model, checkpoint_path,
        f"model {flags['model']!r} described by {model_flags_lib.model_flags_path(train_dir)}")
    return pruning.strip(model)


def make_checkpoint_manager(checkpoint, train_dir, max_to_keep):
    """max_to_keep: the newest checkpoints kept; 0 keeps all (as the starter's
    Saver(max_to_keep=0))."""
    if max_to_keep < 0:
        raise ValueError(f"--keep_checkpoint_max must be >= 0, got {max_to_keep}")
    return tf.train.CheckpointManager(checkpoint, train_dir, max_to_keep=max_to_keep or None,
                                      checkpoint_name=CHECKPOINT_PREFIX)


def remove_checkpoints(train_dir):
    """Deletes train_dir's checkpoints (ckpt-<step>.* and the `checkpoint` state file) and nothing
    else: --start_new_model must not leave an earlier model's checkpoints among the new ones (the
    exporter averages step ranges of whatever ckpt-<step> files it finds). Returns how many
    checkpoints were removed."""
    paths = [path for path in tf.io.gfile.glob(os.path.join(train_dir, f"{CHECKPOINT_PREFIX}-*"))
             if CHECKPOINT_FILE.match(os.path.basename(path))]
    state = os.path.join(train_dir, CHECKPOINT_STATE_FILE)
    for path in paths + ([state] if tf.io.gfile.exists(state) else []):
        tf.io.gfile.remove(path)
    return sum(path.endswith(".index") for path in paths)


def checkpoint_paths(train_dir):
    """All checkpoints listed in train_dir's `checkpoint` state file, oldest first."""
    state = tf.train.get_checkpoint_state(train_dir)
    if state is None:
        return []
    return [path if os.path.isabs(path) else os.path.join(train_dir, path)
            for path in state.all_model_checkpoint_paths]
