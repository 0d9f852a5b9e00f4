"""Checkpoint averaging (SPEC 6): one model whose variables are the mean over several checkpoints.

The model is restored from each checkpoint in turn (through the training package's
`restore_model_weights`, so the checkpoint layout is known in one place only) and the values are
accumulated in float64, so the mean of N float32 checkpoints is rounded once.
"""
from absl import logging

import yt8m  # noqa: F401
import numpy as np

from yt8m.export.member_module import unique_variables
from yt8m.training import checkpoints
from yt8m.core import errors


def average_checkpoints(model, checkpoint_paths, description="the model"):
    """Sets `model`'s variables to their mean over `checkpoint_paths` and returns the model.

    Floating variables (weights and batch-norm statistics alike) are averaged; any other variable
    (an integer counter) keeps the value of the last checkpoint.
    """
    checkpoint_paths = list(checkpoint_paths)
    if not checkpoint_paths:
        raise errors.InvalidInputError(f"no checkpoint to average for {description}")
    variables = unique_variables(model)
    sums = None
    for path in checkpoint_paths:
        checkpoints.restore_model_weights(model, path, description)
        values = [variable.numpy() for variable in variables]
        if sums is None:
            sums = [value.astype(np.float64) if _is_floating(variable) else value
                    for variable, value in zip(variables, values)]
        else:
            sums = [total + value if _is_floating(variable) else value
                    for variable, total, value in zip(variables, sums, values)]
    if len(checkpoint_paths) > 1:
        count = len(checkpoint_paths)
        for variable, total in zip(variables, sums):
            if _is_floating(variable):
                variable.assign((total / count).astype(variable.dtype.as_numpy_dtype))
        logging.info("Averaged %d checkpoints of %s: %s", count, description,
                     ", ".join(checkpoint_paths))
    return model


def _is_floating(variable):
    return variable.dtype.is_floating

