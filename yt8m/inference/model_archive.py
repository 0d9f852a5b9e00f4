"""The model archive of inference.py (the starter's Kaggle model upload): `--output_model_tgz`
bundles what `inference.py --train_dir` needs into a .tgz; `--input_model_tgz` untars one into
`--untar_model_dir` and predicts with it.

Layout, at the archive's root, so that the untarred directory is itself a train dir:

    model_flags.json
    checkpoint                          names the one checkpoint (tf.train.latest_checkpoint)
    ckpt-<step>.index
    ckpt-<step>.data-00000-of-00001

The starter also tars its files at the root, but its loader then looks for them in
`inference_model/`, so its own round trip fails; this layout round-trips. Its archives hold TF1
meta graphs, which this project cannot load: they are refused with that reason.
"""
import dataclasses
import gzip
import io
import os
import tarfile
import zlib

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.core import files
from yt8m.core import model_flags as model_flags_lib
from yt8m.training import checkpoints
from yt8m.core import errors

# What reading a damaged .tgz raises.
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def _add(tar, name, handle, size):
    info = tarfile.TarInfo(name)
    info.size = size
    tar.addfile(info, handle)


def _add_file(tar, path, name):
    with tf.io.gfile.GFile(path, "rb") as handle:
        _add(tar, name, handle, tf.io.gfile.stat(path).length)


def write_model_archive(output_tgz, train_dir, checkpoint_path):
    """Writes output_tgz (atomically) holding train_dir's model_flags.json and the files of
    `checkpoint_path`, named by a `checkpoint` state file; returns the archive's member names."""
    parts = sorted(path for path in tf.io.gfile.glob(checkpoint_path + ".*")
                   if checkpoints.CHECKPOINT_FILE.match(os.path.basename(path)))
    if not any(path.endswith(".index") for path in parts):
        raise checkpoints.NoCheckpointError(
            f"--output_model_tgz: {checkpoint_path} is not a "
            f"{checkpoints.CHECKPOINT_PREFIX}-<step> checkpoint to bundle")
    name = os.path.basename(checkpoint_path)
    state = (f'model_checkpoint_path: "{name}"\n'
             f'all_model_checkpoint_paths: "{name}"\n').encode("utf-8")
    names = [model_flags_lib.MODEL_FLAGS_FILE, checkpoints.CHECKPOINT_STATE_FILE]
    with files.atomic_output(output_tgz, "wb") as handle:
        with tarfile.open(fileobj=handle, mode="w:gz") as tar:
            _add_file(tar, model_flags_lib.model_flags_path(train_dir), names[0])
            _add(tar, names[1], io.BytesIO(state), len(state))
            for path in parts:
                names.append(os.path.basename(path))
                _add_file(tar, path, names[-1])
    return names


def _is_archive_name(name):
    return (name in (model_flags_lib.MODEL_FLAGS_FILE, checkpoints.CHECKPOINT_STATE_FILE)
            or checkpoints.CHECKPOINT_FILE.match(name) is not None)


def _check_members(members, where):
    """The members must be this module's layout: plain files, one checkpoint."""
    names = [member.name for member in members]
    unexpected = [member.name for member in members
                  if not member.isfile() or not _is_archive_name(member.name)]
    if unexpected:
        starter = any(name.endswith(".meta") for name in names)
        raise errors.InvalidInputError(
            f"{where} holds {', '.join(sorted(unexpected)[:5])}: not an archive written by "
            "inference.py --output_model_tgz (model_flags.json, checkpoint, ckpt-<step>.*)"
            + ("; the starter's archives hold TF1 meta graphs, which this project cannot load"
               if starter else ""))
    matches = [checkpoints.CHECKPOINT_FILE.match(name) for name in names]
    steps = {match.group(1) for match in matches if match}
    required = {model_flags_lib.MODEL_FLAGS_FILE, checkpoints.CHECKPOINT_STATE_FILE}
    if len(steps) != 1 or not required <= set(names) or not any(
            match and match.group(2) == "index" for match in matches):
        held = ", ".join(sorted(names)) or "nothing"
        raise errors.InvalidInputError(f"{where} must hold model_flags.json, checkpoint and one "
                                       f"ckpt-<step> checkpoint; it holds {held}")


def _check_untar_dir(untar_dir):
    """--untar_model_dir is replaced: it must be new, empty or an earlier untarred model (never a
    directory holding anything else)."""
    if not tf.io.gfile.exists(untar_dir):
        return
    if not tf.io.gfile.isdir(untar_dir):
        raise errors.InvalidInputError(
            f"--untar_model_dir={untar_dir!r} is a file, not a directory")
    others = sorted(name for name in tf.io.gfile.listdir(untar_dir) if not _is_archive_name(name))
    if others:
        raise errors.InvalidInputError(
            f"--untar_model_dir={untar_dir!r} holds {', '.join(others[:5])}, which an untarred "
            "model does not: give a new or empty directory (it is replaced)")


def extract_model_archive(input_tgz, untar_dir):
    """Untars input_tgz into untar_dir (replacing an earlier untarred model there; on any error
    untar_dir is left as it was) and returns untar_dir."""
    where = f"--input_model_tgz={input_tgz!r}"
    if not tf.io.gfile.exists(input_tgz):
        raise errors.MissingInputError(f"{where}: no such file")
    _check_untar_dir(untar_dir)
    try:
        with tf.io.gfile.GFile(input_tgz, "rb") as handle, \
                tarfile.open(fileobj=handle, mode="r:*") as tar:
            members = tar.getmembers()
            _check_members(members, where)
            with files.atomic_directory(untar_dir) as temp_dir:
                tar.extractall(temp_dir, members=members, filter="data")
    except _ARCHIVE_ERRORS as error:
        raise errors.InvalidInputError(f"{where} is not a readable .tgz ({error})") from None
    return untar_dir


def use_input_archive(config):
    """The InferenceConfig to predict with: with --input_model_tgz, its model untarred into
    --untar_model_dir becomes the train dir (which must not be given, as in the starter)."""
    if not config.input_model_tgz:
        return config
    for flag, value in (("--train_dir", config.train_dir), ("--checkpoint", config.checkpoint)):
        if value:
            raise errors.InvalidInputError(
                f"{flag} and --input_model_tgz exclude each other: the model comes "
                "from the archive")
    if not config.untar_model_dir:
        raise errors.InvalidInputError("--untar_model_dir is empty: give the directory to untar "
                                       "--input_model_tgz into")
    extract_model_archive(config.input_model_tgz, config.untar_model_dir)
    return dataclasses.replace(config, train_dir=config.untar_model_dir)
