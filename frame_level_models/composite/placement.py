"""Which device each top-level sub-tree of a MOD tree lives on (model parallelism, SPEC 4 and 8).

A sub-tree's weights are created under its `tf.device` and its forward ops run there (see
`MixtureModel.call`); `MixtureModel.compute_gradients` then puts the gradient ops next to the
forward ops, and the trainer's optimizer (yt8m.training.model_parallel) the updates next to the
variables.
The devices: round-robin over the visible accelerators (without any, over the logical CPUs), or the
list given by `--mod_devices`.
"""
import contextlib

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf
from yt8m.core import errors


def visible_devices():
    """Names of the devices sub-trees may use: the logical GPUs, else the logical CPUs."""
    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in (gpus or tf.config.list_logical_devices("CPU"))]


def _same_device(spec, other):
    return (spec.device_type or "").upper() == (other.device_type or "").upper() and (
        spec.device_index == other.device_index)


def parse_devices(text, flag_name="--mod_devices"):
    """'/gpu:0, GPU:1' -> the matching logical device names, each checked to exist.

    Empty text means every visible device (`visible_devices`).
    """
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if not names:
        return visible_devices()
    logical = [(tf.DeviceSpec.from_string(device.name), device.name)
               for device in tf.config.list_logical_devices()]
    resolved = []
    for name in names:
        try:
            spec = tf.DeviceSpec.from_string(name if ":" in name else name + ":0")
        except ValueError as error:
            raise errors.InvalidInputError(
                f"{flag_name}={text!r}: {name!r} is not a device name such as "
                f"/GPU:0 ({error})") from None
        matches = [full for other, full in logical if _same_device(spec, other)]
        if not matches:
            raise errors.InvalidInputError(
                f"{flag_name}={text!r}: no device {name!r} on this machine; the logical devices "
                f"are {', '.join(full for _, full in logical)}")
        resolved.append(matches[0])
    return resolved


def assign_round_robin(devices, count):
    """Device of each of `count` sub-trees: devices[i % len(devices)]; None everywhere (no explicit
    placement, the caller's scope decides) when there is only one distinct device."""
    if len(set(devices)) <= 1:
        return [None] * count
    return [devices[index % len(devices)] for index in range(count)]


def device_scope(device):
    """tf.device(device), or no scope for None (tf.device(None) would clear an outer scope)."""
    return tf.device(device) if device else contextlib.nullcontext()


def check_strategy_allows_placement(devices):
    """Fails clearly when a tf.distribute strategy would override the sub-trees' devices.

    OneDeviceStrategy and MirroredStrategy create every variable on their own device(s) whatever
    `tf.device` says, so a model-parallel tree must be built under the default strategy.
    """
    if len({device for device in devices if device}) <= 1 or not tf.distribute.has_strategy():
        return
    strategy = tf.distribute.get_strategy()
    raise errors.InvalidInputError(
        f"A MOD tree placed on several devices ({', '.join(sorted(set(devices)))}) cannot be built "
        f"under {type(strategy).__name__}: that strategy puts every variable on its own device(s). "
        "Build it outside any strategy scope (several machines: "
        "yt8m.training.model_parallel.make_model_parallel_step), or pass --mod_devices with a "
        "single device.")
