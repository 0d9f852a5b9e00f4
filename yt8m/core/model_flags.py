"""`train_dir/model_flags.json`: what model a train dir holds, so eval, inference, export and
distillation can rebuild it, and so a run with different model flags cannot silently continue it.
"""
import os

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.core import files
from yt8m.core.option_groups import parse_features
from yt8m.core import errors

MODEL_FLAGS_FILE = "model_flags.json"
PRUNING = "pruning"  # key of the pruning options (yt8m.core.config.PruningConfig), when pruned
# Entries added after the first train dirs were written, with the value those dirs meant.
_ADDED_ENTRIES = {"mixed_precision": "float32"}


class ModelFlagsMismatchError(errors.InvalidInputError):
    pass


def model_flags_path(train_dir):
    return os.path.join(train_dir, MODEL_FLAGS_FILE)


def model_flags_from_config(config):
    """The part of a TrainConfig that defines the model and its inputs (JSON-serialisable);
    a pruned run adds its pruning options (its checkpoints hold the masks)."""
    record = {
        "model": config.model,
        "feature_names": ",".join(config.data.feature_names),
        "feature_sizes": ",".join(str(size) for size in config.data.feature_sizes),
        "frame_features": bool(config.data.frame_features),
        "num_classes": int(config.data.num_classes),
        "max_frames": int(config.data.max_frames),
        "label_loss": config.label_loss,
        "mixed_precision": config.mixed_precision,
        "hparams": dict(sorted(config.model_hparams.items())),
    }
    if config.pruning.enabled:
        record[PRUNING] = config.pruning.record()
    return record


def mixed_precision(model_flags):
    """The Keras mixed-precision policy the model of a model_flags record is built with."""
    return model_flags.get("mixed_precision", _ADDED_ENTRIES["mixed_precision"])


def features(model_flags):
    """(feature names, feature sizes) of a model_flags record, as tuples."""
    return parse_features(model_flags["feature_names"], model_flags["feature_sizes"])


def pruning_options(model_flags):
    """{option: value} of a pruned train dir's model_flags record, {} when it was not pruned."""
    return dict(model_flags.get(PRUNING) or {})


def read_model_flags(train_dir):
    path = model_flags_path(train_dir)
    if not tf.io.gfile.exists(path):
        raise errors.MissingInputError(
            f"--train_dir={train_dir!r} has no {MODEL_FLAGS_FILE}: it is not a directory written "
            "by train.py")
    try:
        recorded = files.read_json(path)
    except ValueError as error:
        raise errors.InvalidInputError(f"{path} is not valid JSON: {error}") from error
    # A train dir written before an entry existed meant its default (e.g. float32).
    return {**_ADDED_ENTRIES, **recorded} if isinstance(recorded, dict) else recorded


def _differences(recorded, requested, hparam_defaults):
    requested = {**_ADDED_ENTRIES, **requested}  # an entry left out means its default here too
    keys = sorted(set(recorded) | set(requested))
    lines = []
    for key in keys:
        if key == "hparams":
            lines += _hparam_differences(recorded.get(key, {}), requested.get(key, {}),
                                         hparam_defaults if recorded.get("model") ==
                                         requested.get("model") else {})
        elif recorded.get(key) != requested.get(key):
            lines.append(f"  {key}: {recorded.get(key)!r} in the file, {requested.get(key)!r} now")
    return lines


def _hparam_differences(old, new, defaults):
    """A hyper-parameter added after the file was written is missing there (and train.py records
    an unset one as None): that run used its default, so it differs only from another value."""
    def shown(values, name):
        if name in values:
            return repr(values[name])
        return f"unset (default {defaults[name]!r})" if name in defaults else "unset"

    def used(values, name):  # None (a flag left unset on the command line) is the default too
        value = values.get(name)
        return defaults.get(name) if value is None else value

    lines = []
    for name in sorted(set(old) | set(new)):
        if used(old, name) != used(new, name):
            lines.append(f"  hparams.{name}: {shown(old, name)} in the file, {shown(new, name)} "
                         "now")
    return lines


def check_model_flags(train_dir, model_flags, start_new_model, hparam_defaults=None):
    """Raises ModelFlagsMismatchError when train_dir's model_flags.json exists, differs from
    `model_flags` and start_new_model is False. Returns True when the file is there and agrees.

    hparam_defaults: {name: default} of the model's hyper-parameters; one missing from the
    existing file (written before it existed) counts as its default.
    """
    path = model_flags_path(train_dir)
    if not tf.io.gfile.exists(path) or start_new_model:
        return False
    differences = _differences(read_model_flags(train_dir), model_flags, hparam_defaults or {})
    if differences:
        raise ModelFlagsMismatchError(
            f"Model flags do not match the existing {path}:\n" + "\n".join(differences)
            + "\nDelete the file, change --train_dir, or pass --start_new_model.")
    return True


def check_and_write_model_flags(train_dir, model_flags, start_new_model, hparam_defaults=None):
    """Writes model_flags.json, refusing to continue a train dir of a different model
    (check_model_flags)."""
    if not check_model_flags(train_dir, model_flags, start_new_model, hparam_defaults):
        files.write_json_atomically(model_flags_path(train_dir), model_flags)
