"""The model registry: `build(name, num_classes, **hparams)` -> functional tf_keras model.

Model modules register a builder with the hparams it uses; the registry resolves defaults, checks
names and values (hparams.py), creates the Keras inputs and wraps the builder's outputs in a model.
"""
import dataclasses
from typing import Callable, Tuple

import yt8m  # noqa: F401
import tf_keras as keras

from frame_level_models import hparams as hparams_lib
from frame_level_models import model_parts


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable  # (inputs dict, num_classes, names, sizes, hp namespace) -> outputs dict
    frame_level: bool
    hparams: Tuple[str, ...]
    description: str
    # Composite models (mixtures / MOD trees, yt8m.distillation) build the whole Keras model:
    # builder(name, num_classes, **hparams) -> keras.Model, checking their own hparams.
    builds_model: bool = False


_REGISTRY = {}


def register(name, frame_level, hparams, description):
    """Decorator that adds a model builder to the registry under `name` (the --model value)."""
    unknown = sorted(set(hparams) - {h.name for h in hparams_lib.MODEL_HPARAMS})
    if unknown:
        raise ValueError(f"model {name} declares unknown hparams {unknown}")

    def decorator(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name} is registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, frame_level, tuple(hparams), description)
        return builder

    return decorator


def register_composite(name, frame_level, hparams, description):
    """Decorator that registers a factory building a whole model (see ModelSpec.builds_model)."""

    def decorator(factory):
        if name in _REGISTRY:
            raise ValueError(f"model {name} is registered twice")
        _REGISTRY[name] = ModelSpec(name, factory, frame_level, tuple(hparams), description, True)
        return factory

    return decorator


def model_names():
    return tuple(_REGISTRY)


def spec(name):
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def hparam_names(name):
    """The hyper-parameters model `name` uses (input hparams excluded)."""
    return spec(name).hparams


def is_frame_level(name):
    return spec(name).frame_level


def build(name, num_classes, **hparams):
    """Builds model `name` for `num_classes` classes.

    hparams: any of hparams.MODEL_HPARAMS plus feature_names / feature_sizes (sequences or
    comma-separated strings). Unused but known names are ignored; unknown ones raise ValueError.
    Returns a functional keras.Model taking a dict (feature names, plus num_frames for frame-level
    models) and returning a dict with `predictions` and, where defined, `logits` and `embedding`.
    """
    model = spec(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"{name}: num_classes must be a positive integer, got {num_classes!r}")
    if model.builds_model:
        return model.builder(name, num_classes, **hparams)
    hp = hparams_lib.resolve(name, model.hparams, hparams)
    names, sizes = hparams_lib.resolve_features(
        name, model.frame_level, hparams.get("feature_names"), hparams.get("feature_sizes"))
    inputs = model_parts.make_inputs(names, sizes, model.frame_level)
    outputs = model.builder(inputs, num_classes, names, sizes, hp)
    return keras.Model(inputs=inputs, outputs=outputs, name=name)
