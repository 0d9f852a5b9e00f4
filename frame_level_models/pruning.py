"""Gradual magnitude pruning of zoo models with tensorflow-model-optimization (tfmot).

    pruned = pruning.prune(model, target_sparsity=0.5, begin_step=0, end_step=1000, frequency=100)
    ... train `pruned` (train.py: --pruning_target_sparsity and the other --pruning_* options) ...
    final = pruning.strip(pruned)      # masks applied, wrappers removed: the layers of `model`

Which weights: the large matrices a zoo layer lists in `get_prunable_weights` (tfmot's
PrunableLayer interface) and Dense kernels (tfmot's registry). Only layers with such weights get
tfmot's PruneLowMagnitude wrapper (a pruning policy); the others stay as they are. A mixture or MOD
tree (`MixtureModel`, not a functional model) is pruned branch by branch, each branch under its
own device; its gate stays dense.

The schedule is tfmot's PolynomialDecay (cubic, Zhu & Gupta 2017) from the model's current
sparsity (0 for a freshly built model) to the target, masks updated every `frequency` steps from
`begin_step` to `end_step`. Masks, thresholds and each wrapper's step counter are variables of the
model, so checkpoints carry them. A wrapper advances its counter at every call with
training=True; train.py sets the counters to the optimizer's step before each step
(yt8m.training.pruning_steps), so the schedule counts optimizer steps.

The checkpoints hold the weights as the optimizer left them (the masks are applied before each
forward pass, not after the update): `apply_masks` or `strip` give the weights the model serves.
"""
import numpy as np

import yt8m  # noqa: F401
import tf_keras as keras
import tensorflow_model_optimization as tfmot
# The wrapper class is not exported by tfmot.sparsity.keras; strip_pruning uses the same one.
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from frame_level_models.composite import placement
from frame_level_models.composite.mixture import MixtureModel
from yt8m.core import errors
from yt8m.core.config import PruningConfig

_PruneLowMagnitude = pruning_wrapper.PruneLowMagnitude


def _own_prunable_weights(layer):
    """The weights tfmot prunes in an unwrapped `layer` ([] when it prunes none of them)."""
    if hasattr(layer, "get_prunable_weights"):
        return list(layer.get_prunable_weights())
    if prune_registry.PruneRegistry.supports(layer):  # a Keras layer: tfmot's own list
        return list(prune_registry.PruneRegistry.make_prunable(layer).get_prunable_weights())
    return []


class _LayersWithPrunableWeights(tfmot.sparsity.keras.PruningPolicy):
    """Wraps only the layers that have weights to prune (tfmot wraps every layer otherwise, and
    refuses layers it does not know, such as a student's frame selection)."""

    def allow_pruning(self, layer):
        return bool(_own_prunable_weights(layer))

    def ensure_model_supports_pruning(self, model):
        del model  # any functional model: the layers without prunable weights stay unwrapped


def _graph_layers(model):
    """The layers of `model`'s graph: functional models and mixture branches are entered."""
    if isinstance(model, MixtureModel):
        for branch in model.branch_models:
            yield from _graph_layers(branch)
    elif isinstance(model, keras.Model):
        for layer in model.layers:
            yield from _graph_layers(layer)
    else:
        yield model


def pruning_layers(model):
    """The tfmot pruning wrappers of `model` (of every branch of a mixture)."""
    return [layer for layer in _graph_layers(model) if isinstance(layer, _PruneLowMagnitude)]


def is_pruned(model):
    """True when `model` holds pruning wrappers (built by `prune`, not yet stripped)."""
    return bool(pruning_layers(model))


def prunable_weights(model):
    """(name, variable) of each weight that pruning acts on, for a pruned or a stripped model."""
    weights = []
    for layer in _graph_layers(model):
        inner = layer.layer if isinstance(layer, _PruneLowMagnitude) else layer
        weights += _own_prunable_weights(inner)
    return [(weight.name, weight) for weight in weights]


def state_variables(model):
    """The pruning state of a pruned model: every mask, threshold and step counter."""
    variables = []
    for layer in pruning_layers(model):
        for _, mask, threshold in layer.pruning_vars:
            variables += [mask, threshold]
        variables.append(layer.pruning_step)
    return variables


def masks(model):
    """(weight, mask) of every pruned weight of a pruned model."""
    return [(weight, mask) for layer in pruning_layers(model)
            for weight, mask, _ in layer.pruning_vars]


def sparsity(model):
    """Fraction of exact zeros over all prunable weights of `model` (after `apply_masks`/`strip`
    for a pruned model)."""
    zeros = total = 0
    for _, weight in prunable_weights(model):
        values = weight.numpy()
        zeros += int(np.count_nonzero(values == 0))
        total += values.size
    return zeros / total if total else 0.0


def set_step(model, step):
    """Sets the pruning step counter of every wrapper."""
    for layer in pruning_layers(model):
        layer.pruning_step.assign(step)


def _wrap(model, schedule, device=None):
    """`model` with pruning wrappers: a new functional model sharing `model`'s weights, or for a
    mixture the same object with its branches replaced by pruned ones."""
    with placement.device_scope(device):  # a branch's masks beside the branch's weights
        if isinstance(model, MixtureModel):
            model.branch_models = [_wrap(branch, schedule, branch_device) for branch, branch_device
                                   in zip(model.branch_models, model.branch_devices)]
            return model
        return tfmot.sparsity.keras.prune_low_magnitude(
            model, pruning_schedule=schedule, pruning_policy=_LayersWithPrunableWeights())


def prune(model, target_sparsity, begin_step=0, end_step=10000, frequency=100):
    """Wraps `model` for gradual magnitude pruning: each prunable weight's sparsity rises along
    tfmot's cubic PolynomialDecay from the model's current sparsity at `begin_step` to
    `target_sparsity` at `end_step`, masks updated every `frequency` steps. Returns the pruned
    model (for a functional model a new one sharing `model`'s weights; a mixture is pruned in
    place). Values are checked as the --pruning_* options (yt8m.core.config.PruningConfig).
    """
    options = PruningConfig(pruning_target_sparsity=target_sparsity,
                            pruning_begin_step=begin_step, pruning_end_step=end_step,
                            pruning_frequency=frequency)
    if not options.enabled:
        raise errors.InvalidInputError(
            "--pruning_target_sparsity=0 means no pruning; give a fraction in (0, 1)")
    if not prunable_weights(model):
        raise errors.InvalidInputError(
            f"--pruning_target_sparsity={target_sparsity}: model {model.name!r} has no prunable "
            "layer (no layer lists weights in get_prunable_weights and it has no Dense layer)")
    initial = sparsity(model)
    if initial >= target_sparsity:
        raise errors.InvalidInputError(
            f"--pruning_target_sparsity={target_sparsity}: model {model.name!r} already has "
            f"sparsity {initial:.4f}")
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=initial, final_sparsity=float(target_sparsity),
        begin_step=int(begin_step), end_step=int(end_step), frequency=int(frequency))
    pruned = _wrap(model, schedule)
    set_step(pruned, 0)  # tfmot's UpdatePruningStep.on_train_begin for a fresh model
    return pruned


def prune_with_options(model, options):
    """`prune` with a {--pruning_* option: value} record (model_flags.json's "pruning"); `model`
    itself when the record is empty."""
    if not options:
        return model
    return prune(model, options["pruning_target_sparsity"], options["pruning_begin_step"],
                 options["pruning_end_step"], options["pruning_frequency"])


def apply_masks(model):
    """weights <- weights * mask for every pruned weight: the weights the model serves (the
    optimizer moves masked weights between two forward passes; the next pass masks them again).
    Does nothing to a model without pruning wrappers."""
    for weight, mask in masks(model):
        weight.assign(weight * mask)


def strip(model):
    """Applies the masks and removes the pruning wrappers: a model with the original layers whose
    pruned weights are zeros (export and serve this one). A model without wrappers is returned as
    it is; a mixture is stripped in place."""
    if not is_pruned(model):
        return model
    apply_masks(model)
    if isinstance(model, MixtureModel):
        model.branch_models = [strip(branch) for branch in model.branch_models]
        return model
    return tfmot.sparsity.keras.strip_pruning(model)


__all__ = ["prune", "prune_with_options", "strip", "apply_masks", "set_step", "sparsity",
           "prunable_weights", "pruning_layers", "is_pruned", "masks", "state_variables"]
