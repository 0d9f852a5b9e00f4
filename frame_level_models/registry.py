"""The model registry: `build(name, num_classes, **hparams)` -> tf_keras model.

Model modules register a builder with the hparam rows it uses (hparams.py records them); the
registry resolves defaults, checks names and values, creates the Keras inputs and wraps the
builder's outputs in a functional model. Composite models (mixtures, MOD trees, frame-skipping
students) register a factory that builds the whole model.
"""
import dataclasses
from typing import Callable, Optional

import yt8m  # noqa: F401
import tf_keras as keras

from frame_level_models import hparams as hparams_lib
from frame_level_models import model_parts


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable  # (inputs dict, num_classes, names, sizes, hp namespace) -> outputs dict
    frame_level: bool
    description: str
    # Composite models build the whole Keras model: builder(name, num_classes, **hparams) ->
    # keras.Model, checking their own hparams.
    builds_model: bool = False
    # Epsilon of CrossEntropyLoss's probability logs in the model's reference training code
    # (None: the starter's 1e-5; linrongc's NeXtVLAD and MOD code used 1e-8).
    loss_epsilon: Optional[float] = None
    # Composite models that place sub-models on devices (MOD trees): (name, hparams) -> the
    # device of each top-level sub-model (None: unplaced).
    sub_model_devices: Optional[Callable] = None


_REGISTRY = {}
_ALIASES = {}  # other name -> registered name (e.g. a reference repository's spelling)


def _add(spec):
    if spec.name in _REGISTRY or spec.name in _ALIASES:
        raise ValueError(f"model {spec.name} is registered twice")
    _REGISTRY[spec.name] = spec


def register(name, frame_level, hparams, description, defaults=None, loss_epsilon=None):
    """Decorator that adds a model builder to the registry under `name` (the --model value).

    hparams: the HParam rows the model uses; defaults: its values for rows whose flag default is
    None (hparams.py); loss_epsilon: see ModelSpec.
    """

    def decorator(builder):
        hparams_lib.declare_model(name, hparams, defaults)
        _add(ModelSpec(name, builder, frame_level, description, loss_epsilon=loss_epsilon))
        return builder

    return decorator


def register_composite(name, frame_level, hparams, description, other_names=(),
                       every_hparam=False, loss_epsilon=None, sub_model_devices=None):
    """Decorator that registers a factory building a whole model (see ModelSpec.builds_model).

    other_names: settings the factory checks itself (no flag); every_hparam: the model also takes
    every model hparam (its leaf may be any zoo model); loss_epsilon, sub_model_devices: see
    ModelSpec.
    """

    def decorator(factory):
        hparams_lib.declare_model(name, hparams, other_names=other_names,
                                  every_hparam=every_hparam)
        _add(ModelSpec(name, factory, frame_level, description, builds_model=True,
                       loss_epsilon=loss_epsilon, sub_model_devices=sub_model_devices))
        return factory

    return decorator


def register_alias(alias, name):
    """Makes `alias` another name of the registered model `name` (same builder, hparams and
    defaults); what a run records is the registered name (`canonical_name`)."""
    spec(name)
    if alias in _REGISTRY or alias in _ALIASES:
        raise ValueError(f"model {alias} is registered twice")
    _ALIASES[alias] = name


def canonical_name(name):
    """The registered name of `name` (itself, or the model an alias names)."""
    return _ALIASES.get(name, name)


def model_names():
    """The registered names (aliases left out: `aliases()`)."""
    return tuple(_REGISTRY)


def aliases():
    """{alias: registered name}."""
    return dict(_ALIASES)


def spec(name):
    name = canonical_name(name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def hparam_names(name):
    """The hyper-parameters model `name` uses (input hparams excluded)."""
    return hparams_lib.model_hparam_names(spec(name).name)


def is_frame_level(name):
    return spec(name).frame_level


def loss_epsilon(name):
    """The CrossEntropyLoss epsilon of model `name`'s reference training code (None: the
    starter's)."""
    return spec(name).loss_epsilon


def places_sub_models(name, **hparams):
    """True when model `name` with `hparams` puts its sub-models on several devices (a MOD tree
    over the visible devices): built outside any tf.distribute strategy scope, it trains through
    yt8m.training.model_parallel."""
    model = spec(name)
    if model.sub_model_devices is None:
        return False
    devices = model.sub_model_devices(model.name, hparams_lib.canonical(model.name, hparams))
    return len({device for device in devices if device}) > 1


def build(name, num_classes, **hparams):
    """Builds model `name` for `num_classes` classes.

    hparams: any model hparam (hparams.all_names()) plus feature_names / feature_sizes (sequences
    or comma-separated strings); a row's alias (`moe_l2`) stands for the row. Unused but known names
    are ignored; unknown ones raise ValueError.
    Returns a keras.Model taking a dict (feature names, plus num_frames for frame-level models) and
    returning a dict with `predictions` and, where defined, `logits` and `embedding`, all float32
    under any Keras mixed-precision policy (the policy in force when `build` runs applies).
    """
    model = spec(name)
    name = model.name
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"{name}: num_classes must be a positive integer, got {num_classes!r}")
    hparams_lib.check_known(name, hparams)
    hparams = hparams_lib.canonical(name, hparams)
    if model.builds_model:
        return model.builder(name, num_classes, **hparams)
    hp = hparams_lib.resolve(name, hparams)
    names, sizes = model_parts.resolve_features(
        name, model.frame_level, hparams.get("feature_names"), hparams.get("feature_sizes"))
    inputs = model_parts.make_inputs(names, sizes, model.frame_level)
    outputs = model_parts.float32_outputs(model.builder(inputs, num_classes, names, sizes, hp))
    return keras.Model(inputs=inputs, outputs=outputs, name=name)
