"""The pruning step of a custom training loop: what tfmot's UpdatePruningStep callback does for
`model.fit`.

tfmot's wrappers read the schedule at their own step counter, a model variable (so checkpoints
carry it) that each call with training=True advances by one before the mask update. Setting the
counters to the optimizer's step at the start of every step ties the schedule to the global step,
whoever calls the model how often, and after a restore or a warm start alike: a step that leaves
the optimizer at step s updates the masks when the schedule says so for step s.
"""
import yt8m  # noqa: F401

from frame_level_models import pruning


class PruningSteps:
    """Called by the trainer: `before_step(optimizer.iterations)` inside each replica's step
    (a model without pruning wrappers makes it a no-op)."""

    def __init__(self, model):
        self.step_variables = [layer.pruning_step for layer in pruning.pruning_layers(model)]

    @property
    def enabled(self):
        return bool(self.step_variables)

    def before_step(self, optimizer_step):
        for variable in self.step_variables:
            variable.assign(optimizer_step)
