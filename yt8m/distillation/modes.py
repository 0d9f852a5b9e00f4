"""The registry of distillation modes (--distill_mode).

A mode is one module: its DistillationModel, the checks of its settings and the factory that wraps
the student, declared as a `Mode`; yt8m.distillation.training_setup registers the built-in ones
(a new mode: its module, and its `Mode` added there):

    MODE = modes.Mode("multi_teacher", build=build, check=check)

build(student, train_config, config, label_loss) -> the DistillationModel the trainer trains in
  place of the built student (train_config: the TrainConfig of --model; config: the DistillConfig;
  label_loss: the trainer's label loss, for a teacher trained jointly).
check(config) raises ValueError naming the flag at fault; called once the settings every mode
  shares are checked.
"""
import dataclasses
from typing import Callable

from yt8m.core import errors


def _no_checks(config):
    del config


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    build: Callable
    check: Callable = _no_checks


_MODES = {}


def register(mode):
    """Makes `mode` a choice of --distill_mode; returns it."""
    if mode.name in _MODES:
        raise ValueError(f"distillation mode {mode.name!r} is already registered")
    _MODES[mode.name] = mode
    return mode


def names():
    """The registered modes, in registration order."""
    return tuple(_MODES)


def get(name):
    if name not in _MODES:
        raise errors.InvalidInputError(
            f"--distill_mode={name!r}: choose one of {', '.join(_MODES)} (or leave "
            "it empty for no distillation)")
    return _MODES[name]
