"""Atomic writes, the one way the project writes a result: readers never see a half-written file
or directory, and a failed write leaves nothing behind.

Everything is first written under a temporary name next to the target (a leading dot keeps
checkpoint and shard globs and TensorBoard from picking it up), then renamed over it. `tf.io.gfile`
is used so that train dirs and exports on GCS work like local ones.

    write_text_atomically / write_json_atomically / write_bytes_atomically   whole files
    atomic_output(path, mode)    a file object to write a file piece by piece (CSV rows)
    atomic_path(path)            a temporary file name, for writers that want a name
                                 (tf.io.TFRecordWriter, matplotlib's savefig)
    atomic_directory(path)       a temporary directory to fill, which then replaces `path`
"""
import contextlib
import json
import os
import uuid

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf


def _temp_path_for(path):
    directory, name = os.path.split(os.path.normpath(path))
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove(path):
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def _make_parent(path):
    directory = os.path.dirname(os.path.normpath(path))
    if directory:
        tf.io.gfile.makedirs(directory)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary file name next to `path`; on a clean exit the file written there
    replaces `path`, on an error it is removed."""
    _make_parent(path)
    temp_path = _temp_path_for(path)
    try:
        yield temp_path
        tf.io.gfile.rename(temp_path, path, overwrite=True)
    except BaseException:
        _remove(temp_path)
        raise


@contextlib.contextmanager
def atomic_output(path, mode="w"):
    """Yields a file object ("w" text, "wb" bytes); on a clean exit the file replaces `path`, on
    an error it is removed."""
    with atomic_path(path) as temp_path:
        with tf.io.gfile.GFile(temp_path, mode) as handle:
            yield handle


def write_text_atomically(path, text):
    with atomic_output(path) as handle:
        handle.write(text)


def write_bytes_atomically(path, data):
    with atomic_output(path, "wb") as handle:
        handle.write(data)


def write_json_atomically(path, value):
    write_text_atomically(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_json(path):
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


@contextlib.contextmanager
def atomic_directory(path):
    """Yields an empty temporary directory next to `path` to fill. On a clean exit it becomes
    `path`: an existing `path` is removed only once the new one is in place. On an error the
    temporary directory is removed and `path` is left as it was."""
    temp_dir = _temp_path_for(path)
    tf.io.gfile.makedirs(temp_dir)
    try:
        yield temp_dir
        if tf.io.gfile.exists(path):
            old = temp_dir + "-old"
            tf.io.gfile.rename(path, old)
            tf.io.gfile.rename(temp_dir, path)
            tf.io.gfile.rmtree(old)
        else:
            tf.io.gfile.rename(temp_dir, path)
    finally:
        _remove(temp_dir)
