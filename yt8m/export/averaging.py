"""Checkpoint averaging (SPEC 6): one model whose variables are the mean over several checkpoints.

The model is restored from each checkpoint in turn (through the training package's
`restore_model_weights`, so the checkpoint layout is known in one place only) and the values are
accumulated in float64, so the mean of N float32 checkpoints is rounded once.

Pruned train dirs: each checkpoint contributes the weights it serves (its own masks applied on
restore), and the mean gets the newest checkpoint's masks applied, so a weight pruned in the
newest checkpoint stays zero even where an older checkpoint had not pruned it yet: the average has
the newest checkpoint's sparsity, which is what the sparse export stores.
"""
from absl import logging

import yt8m  # noqa: F401
import numpy as np

from frame_level_models import pruning
from yt8m.export.member_module import unique_variables
from yt8m.training import checkpoints
from yt8m.core import errors


def average_checkpoints(model, checkpoint_paths, description="the model"):
    """Sets `model`'s variables to their mean over `checkpoint_paths` (oldest first) and returns
    the model.

    Floating variables (weights and batch-norm statistics alike) are averaged; any other variable
    (an integer counter) and the pruning state (masks, thresholds) keep the value of the last
    checkpoint, whose masks are then applied to the mean.
    """
    checkpoint_paths = list(checkpoint_paths)
    if not checkpoint_paths:
        raise errors.InvalidInputError(f"no checkpoint to average for {description}")
    variables = unique_variables(model)
    pruning_state = {id(variable) for variable in pruning.state_variables(model)}
    averaged = [variable.dtype.is_floating and id(variable) not in pruning_state
                for variable in variables]
    sums = None
    for path in checkpoint_paths:
        checkpoints.restore_model_weights(model, path, description)
        values = [variable.numpy() for variable in variables]
        if sums is None:
            sums = [value.astype(np.float64) if average else value
                    for average, value in zip(averaged, values)]
        else:
            sums = [total + value if average else value
                    for average, total, value in zip(averaged, sums, values)]
    if len(checkpoint_paths) > 1:
        count = len(checkpoint_paths)
        for variable, average, total in zip(variables, averaged, sums):
            if average:
                variable.assign((total / count).astype(variable.dtype.as_numpy_dtype))
        pruning.apply_masks(model)  # the newest checkpoint's masks (no-op when not pruned)
        logging.info("Averaged %d checkpoints of %s: %s", count, description,
                     ", ".join(checkpoint_paths))
    return model
