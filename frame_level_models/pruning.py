"""Magnitude pruning of zoo models with tensorflow-model-optimization (tfmot).

    pruned = pruning.prune(model, target_sparsity=0.5, begin_step=0, end_step=1000, frequency=100)
    ... train `pruned` (every call with training=True counts as one step) ...
    final = pruning.strip(pruned)      # masks applied, wrappers removed: same layers as `model`

The zoo's large layers implement tfmot's PrunableLayer; Dense is pruned through tfmot's registry.
tfmot wraps every layer and counts steps itself (each training call adds one), so the model must
be called once per optimizer step with training=True. `prune` starts that counter (the job of the
UpdatePruningStep callback in `model.fit`), so custom training loops need nothing else; the counter
is a model variable, so checkpoints carry it.
"""
import numpy as np
from absl import flags

import yt8m  # noqa: F401
import tf_keras as keras
import tensorflow_model_optimization as tfmot
# The wrapper class is not exported by tfmot.sparsity.keras; strip_pruning uses the same one.
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from frame_level_models import hparams as hparams_lib
from yt8m.core import errors

_PruneLowMagnitude = pruning_wrapper.PruneLowMagnitude

# The pruning flags (hparams.define_flags(pruning=True) defines them).
PRUNING_HPARAMS = (
    hparams_lib.HParam(
        "pruning_target_sparsity", "float", 0.0,
        "Magnitude pruning: final fraction of zeros in the large weight matrices (0: off).",
        lower_bound=0.0, upper_bound=0.999),
    hparams_lib.integer("pruning_begin_step", 0, "Step at which pruning starts.", lower=0),
    hparams_lib.integer("pruning_end_step", 10000, "Step at which the target sparsity is reached."),
    hparams_lib.integer("pruning_frequency", 100, "Masks are updated every this many steps."),
)
hparams_lib.add_rows(PRUNING_HPARAMS, hparams_lib.PRUNING)


def pruning_from_flags(flag_values=flags.FLAGS):
    """The pruning flags as keyword arguments of `prune` (None when --pruning_target_sparsity is
    0)."""
    values = hparams_lib.values_from_flags(PRUNING_HPARAMS, flag_values)
    if not values["pruning_target_sparsity"]:
        return None
    return {"target_sparsity": values["pruning_target_sparsity"],
            "begin_step": values["pruning_begin_step"],
            "end_step": values["pruning_end_step"],
            "frequency": values["pruning_frequency"]}


def _check_schedule(target_sparsity, begin_step, end_step, frequency):
    if not 0.0 < target_sparsity < 1.0:
        raise errors.InvalidInputError(
            f"pruning_target_sparsity={target_sparsity} must be in (0, 1)")
    if begin_step < 0:
        raise errors.InvalidInputError(f"pruning_begin_step={begin_step} must be >= 0")
    if end_step <= begin_step:
        raise errors.InvalidInputError(f"pruning_end_step={end_step} must be after "
                                       f"pruning_begin_step={begin_step}")
    if frequency <= 0:
        raise errors.InvalidInputError(f"pruning_frequency={frequency} must be positive")


def pruning_layers(model):
    """The tfmot pruning wrappers of `model`."""
    return [layer for layer in model.layers if isinstance(layer, _PruneLowMagnitude)]


def set_step(model, step):
    """Sets the pruning step counter of every wrapper (e.g. to the optimizer step after a restore)."""
    for layer in pruning_layers(model):
        layer.pruning_step.assign(step)


def prune(model, target_sparsity, begin_step=0, end_step=10000, frequency=100):
    """Wraps `model` for magnitude pruning: sparsity rises polynomially (cubic, tfmot's
    PolynomialDecay) from 0 at `begin_step` to `target_sparsity` at `end_step`, masks updated every
    `frequency` steps. Returns a new functional model sharing `model`'s weights.
    """
    _check_schedule(target_sparsity, begin_step, end_step, frequency)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=float(target_sparsity), begin_step=int(begin_step),
        end_step=int(end_step), frequency=int(frequency))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    set_step(pruned, 0)
    return pruned


def apply_masks(model):
    """weights <- weights * mask for every pruned weight (the masks are applied before each forward
    pass, so after the last update the weights still hold the values of the last optimizer step)."""
    for layer in pruning_layers(model):
        layer.pruning_obj.weight_mask_op()


def strip(model):
    """Applies the masks and removes the pruning wrappers: a model with the original layers whose
    pruned weights are zeros (export and serve this one)."""
    apply_masks(model)
    return tfmot.sparsity.keras.strip_pruning(model)


def prunable_weights(model):
    """(name, variable) of each weight that pruning acts on, for a pruned or a stripped model."""
    weights = []
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, _PruneLowMagnitude) else layer
        if hasattr(inner, "get_prunable_weights"):
            weights += inner.get_prunable_weights()
        elif isinstance(inner, keras.layers.Dense):
            weights.append(inner.kernel)
    return [(weight.name, weight) for weight in weights]


def sparsity(model):
    """Fraction of exact zeros over all prunable weights of `model` (after `apply_masks`/`strip`)."""
    zeros = total = 0
    for _, weight in prunable_weights(model):
        values = weight.numpy()
        zeros += int(np.count_nonzero(values == 0))
        total += values.size
    return zeros / total if total else 0.0


def prune_from_hparams(model, target_sparsity=0.0, **schedule):
    """`prune` when target_sparsity > 0 (the flags of PRUNING_HPARAMS), else `model`."""
    if not target_sparsity:
        return model
    return prune(model, target_sparsity, **schedule)


__all__ = ["prune", "strip", "apply_masks", "set_step", "sparsity", "prunable_weights",
           "pruning_layers", "prune_from_hparams", "pruning_from_flags", "PRUNING_HPARAMS"]
