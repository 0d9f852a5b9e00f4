"""Builds the model a model_flags record describes (frame_level_models registry), and the label
loss it trains with."""
import yt8m  # noqa: F401
from yt8m.core import errors
from yt8m.training import mixed_precision

import frame_level_models
from frame_level_models import hparams as zoo_hparams
from frame_level_models import pruning
from frame_level_models import registry
from yt8m.core import model_flags as model_flags_lib
from yt8m.losses import get_label_loss


def check_model_choice(model, frame_features):
    """Clear errors for an unknown --model and a model/data-level mismatch."""
    if model not in frame_level_models.MODEL_NAMES:
        raise errors.InvalidInputError(f"--model={model!r} is not a known model; choose one of: "
                                       f"{', '.join(frame_level_models.MODEL_NAMES)}")
    if frame_level_models.is_frame_level(model) != bool(frame_features):
        if frame_features:
            raise errors.InvalidInputError(
                f"--model={model} is a video-level model but --frame_features is "
                "set; drop --frame_features (and read mean_rgb,mean_audio)")
        raise errors.InvalidInputError(
            f"--model={model} is a frame-level model: pass --frame_features and "
            "frame feature names (--feature_names=rgb,audio)")


def build_model(model_flags):
    """model_flags (the dict of model_flags.json) -> functional tf_keras model, as the train dir's
    checkpoints hold it: with tfmot's pruning wrappers (masks, schedule) when the record has
    pruning options. `pruning.strip` turns that one into the model to serve
    (checkpoints.load_model does). Built under the record's mixed-precision policy (float32
    variables either way, so its checkpoints restore into any build of the same record; outputs
    float32)."""
    check_model_choice(model_flags["model"], model_flags["frame_features"])
    with mixed_precision.policy_scope(model_flags_lib.mixed_precision(model_flags)):
        model = frame_level_models.build(
            model_flags["model"], int(model_flags["num_classes"]),
            feature_names=model_flags["feature_names"],
            feature_sizes=model_flags["feature_sizes"], **model_flags.get("hparams", {}))
        return pruning.prune_with_options(model, model_flags_lib.pruning_options(model_flags))


def places_sub_models(model_flags):
    """True when the model of `model_flags` spreads its sub-models over this machine's devices (a
    MOD tree): it is built outside any strategy scope (yt8m.training.model_parallel)."""
    return frame_level_models.places_sub_models(model_flags["model"],
                                                **model_flags.get("hparams", {}))


def label_loss_for(label_loss, model):
    """The --label_loss `label_loss` as model `model`'s reference code computed it (its
    CrossEntropyLoss epsilon: 1e-5 for the starter's and Willow's models, 1e-8 for linrongc's)."""
    return get_label_loss(label_loss, registry.loss_epsilon(model))


def hparam_defaults(model):
    """{name: the value model `model` uses when it is not given} of its hyper-parameters."""
    return vars(zoo_hparams.resolve(model, {}))
