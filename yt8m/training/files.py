"""Atomic file writes: readers of a result file never see it half-written.

Everything the training, evaluation and inference tools write (model_flags.json, per-checkpoint
metric JSON files, submission CSVs) goes to a temporary file next to the target and is then renamed
over it. `tf.io.gfile` is used so that train dirs on GCS work like local ones.
"""
import contextlib
import json
import os
import uuid

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf


def _temp_path_for(path):
    directory, name = os.path.split(path)
    # The leading dot keeps checkpoint globbing and TensorBoard from picking the temp file up.
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_output(path, mode="w"):
    """Yields a file object; on a clean exit the file replaces `path`, on an error it is removed."""
    directory = os.path.dirname(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    temp_path = _temp_path_for(path)
    try:
        with tf.io.gfile.GFile(temp_path, mode) as handle:
            yield handle
        tf.io.gfile.rename(temp_path, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(temp_path):
            tf.io.gfile.remove(temp_path)
        raise


def write_text_atomically(path, text):
    with atomic_output(path) as handle:
        handle.write(text)


def write_json_atomically(path, value):
    write_text_atomically(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_json(path):
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)
