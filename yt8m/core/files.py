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

Nothing is ever deleted through a symbolic link: replacing or removing a path that is a link
replaces or removes the link, never what it points to (`remove`).

Outputs are checked before anything is written:

    check_output_path(output, flag, inputs)   refuses an output that equals, contains or lies
                                              inside an input (replacing it would destroy it)
    check_replaceable_directory(...)          an existing output directory is replaced only with
                                              --overwrite, and only when it is recognisably this
                                              tool's earlier output (or empty)
    check_output_file(...)                    the same for an output file (--output_file)
"""
import contextlib
import json
import os
import shutil
import uuid

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.core import errors


def _temp_path_for(path):
    directory, name = os.path.split(os.path.normpath(path))
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_local(path):
    """True for a path of the local file system (no scheme://, or file://)."""
    return "://" not in str(path) or str(path).startswith("file://")


def _local(path):
    return str(path)[len("file://"):] if str(path).startswith("file://") else str(path)


def remove(path):
    """Removes a file or a directory tree; a symbolic link (at `path` or inside the tree) is
    removed itself, never followed. (tf.io.gfile.rmtree follows links: it would empty the
    directory a link points to.) Nothing there: nothing to do."""
    if is_local(path):
        path = _local(path)
        if os.path.islink(path) or os.path.isfile(path):
            os.remove(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)
        return
    if tf.io.gfile.isdir(path):  # object stores have no links
        tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


@contextlib.contextmanager
def refused_write_as_user_error(path):
    """A file system that refuses to write `path` (permission, read-only or full file system, a
    file where a directory should be) raises OutputWriteError naming it; other errors pass."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 (re-raised unless the file system refused)
        if isinstance(error, errors.UserError) or not errors.write_refused(error):
            raise
        raise errors.OutputWriteError(
            f"cannot write {path!r}: {errors.describe(error)}") from error


def _make_parent(path):
    directory = os.path.dirname(os.path.normpath(path))
    if directory:
        with refused_write_as_user_error(path):
            tf.io.gfile.makedirs(directory)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary file name next to `path`; on a clean exit the file written there
    replaces `path`, on an error it is removed."""
    _make_parent(path)
    temp_path = _temp_path_for(path)
    try:
        yield temp_path
        with refused_write_as_user_error(path):
            tf.io.gfile.rename(temp_path, path, overwrite=True)
    except BaseException:
        remove(temp_path)
        raise


@contextlib.contextmanager
def atomic_output(path, mode="w"):
    """Yields a file object ("w" text, "wb" bytes); on a clean exit the file replaces `path`, on
    an error it is removed. A file system refusing the write raises OutputWriteError."""
    with atomic_path(path) as temp_path:
        with refused_write_as_user_error(path):
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
    `path`: an existing `path` is removed only once the new one is in place (a symbolic link is
    replaced itself: what it points to stays). On an error the temporary directory is removed
    and `path` is left as it was."""
    temp_dir = _temp_path_for(path)
    with refused_write_as_user_error(path):
        tf.io.gfile.makedirs(temp_dir)
    try:
        yield temp_dir
        with refused_write_as_user_error(path):
            if tf.io.gfile.exists(path) or (is_local(path) and os.path.islink(_local(path))):
                old = temp_dir + "-old"
                tf.io.gfile.rename(path, old)  # a link is renamed itself (rename(2))
                tf.io.gfile.rename(temp_dir, path)
                remove(old)
            else:
                tf.io.gfile.rename(temp_dir, path)
    finally:
        remove(temp_dir)


# ----------------------------------------------------------------------------------------------
# Output checks, before anything is written.


def _resolved(path):
    """`path` absolute with every link resolved (what an input path reads)."""
    if not is_local(path):
        return str(path).rstrip("/")
    return os.path.realpath(_local(path))


def _replaced(path):
    """The path a replace of `path` removes: its directory's links resolved, its last component
    kept (a link there is replaced itself, not followed)."""
    if not is_local(path):
        return str(path).rstrip("/")
    path = os.path.abspath(_local(path))
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _inside(path, directory):
    return path.startswith(directory.rstrip("/") + "/")


def check_output_path(output, flag, inputs):
    """Refuses an output that is, contains or lies inside one of the inputs.

    inputs: (description, path) pairs, e.g. ("--members", train_dir) or ("a --data_pattern
    file", path). Writing the output must neither replace nor delete an input, nor write into
    one (a train dir, a teacher, an export). Links are resolved, except an output's own last
    component (replacing a link does not touch what it points to).
    """
    target = _replaced(output)
    for description, path in inputs:
        source = _resolved(path)
        if target == source or _resolved(output) == source:
            relation = "is"
        elif _inside(source, target):
            relation = "contains"
        elif _inside(target, source):
            relation = "lies inside"
        else:
            continue
        raise errors.InvalidInputError(
            f"{flag}={output!r} {relation} the input {path!r} ({description}): writing it would "
            "destroy or change an input; choose an output outside the inputs")


def check_replaceable_directory(path, flag, overwrite, marker_files, written_by):
    """An existing output directory may be replaced only with `overwrite`, and only when it is
    recognisably an earlier output of this tool (it holds every one of `marker_files`) or empty:
    --overwrite never deletes what the tool did not write."""
    if not (tf.io.gfile.exists(path) or (is_local(path) and os.path.islink(_local(path)))):
        return
    if not overwrite:
        raise errors.OutputExistsError(f"{flag}={path!r} already exists; pass --overwrite to "
                                       "replace it")
    if not tf.io.gfile.isdir(path):
        raise errors.OutputExistsError(
            f"{flag}={path!r} is a file, not a directory written by {written_by}; --overwrite "
            "replaces only such a directory: remove it yourself or choose another path")
    if not tf.io.gfile.listdir(path):
        return
    missing = [name for name in marker_files
               if not tf.io.gfile.exists(os.path.join(path, name))]
    if missing:
        raise errors.OutputExistsError(
            f"{flag}={path!r} is not a directory written by {written_by} (it has no "
            f"{', '.join(missing)}); --overwrite replaces only such a directory: remove it "
            "yourself or choose another path")


def check_output_file(path, flag, overwrite, inputs=()):
    """An output file (--output_file): not one of the inputs (nor inside one: a train dir), not a
    directory, and an existing file is replaced only with `overwrite`."""
    if not path:
        raise errors.InvalidInputError(f"{flag} is empty: give the path of the file to write")
    check_output_path(path, flag, inputs)
    if tf.io.gfile.isdir(path):
        raise errors.OutputExistsError(f"{flag}={path!r} is a directory; give a file path")
    if tf.io.gfile.exists(path) and not overwrite:
        raise errors.OutputExistsError(f"{flag}={path!r} already exists; pass --overwrite to "
                                       "replace it")
