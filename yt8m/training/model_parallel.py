"""Training a model that places its own variables on several devices (MOD trees, SPEC 4 and 8).

- `on_variable_devices(optimizer_class)`: the optimizer class whose per-variable gradient clipping
  and update run on that variable's device. Keras optimizers leave those ops unplaced under the
  default strategy, so they would all run on the first device and pull every gradient and slot
  across. The extension point is tf_keras' public `update_step` (the method a custom optimizer
  overrides): it is wrapped in `tf.device(variable.device)`, and the per-variable clip moves into
  it. Same slots, same checkpoint layout as the base class.
  Not chosen: `apply_gradients` once per device group would count the step once per group
  (`iterations`, hence Adam's bias correction and the learning-rate schedule, would go wrong).
- `make_model_parallel_step`: the step of such a model across the workers of a
  MultiWorkerMirroredStrategy (one model replica per worker, built outside the strategy scope):
  what train.py runs for a placed MOD tree under --distribution_strategy=multi_worker.
"""
import functools

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.core import training_protocol
from yt8m.training import mixed_precision
from yt8m.training import multi_worker
from yt8m.training import objective


class _UpdatesOnVariableDevices:
    """Optimizer mixin: `clipnorm` and the update of each variable on the variable's device."""

    def __init__(self, *args, clipnorm=None, jit_compile=False, **kwargs):
        # The base class would clip every gradient before the updates, off their devices; and an
        # XLA-compiled update runs where tf_keras calls it, unplaced: both stay off here.
        del jit_compile
        super().__init__(*args, clipnorm=None, jit_compile=False, **kwargs)
        self.variable_clipnorm = clipnorm

    def update_step(self, gradient, variable):
        with tf.device(variable.device):
            if self.variable_clipnorm and self.variable_clipnorm > 0:
                gradient = tf.clip_by_norm(gradient, self.variable_clipnorm)
            return super().update_step(gradient, variable)

    def get_config(self):
        return {**super().get_config(), "clipnorm": self.variable_clipnorm}


@functools.cache
def on_variable_devices(optimizer_class):
    """The subclass of a tf_keras optimizer class that clips and updates each variable on its
    device (constructor arguments as the base class's; `clipnorm` is per variable)."""
    return type(f"{optimizer_class.__name__}OnVariableDevices",
                (_UpdatesOnVariableDevices, optimizer_class), {})


def non_trainable_variables(model):
    """A Keras model's non-trainable variables (batch-norm statistics, frozen layers); a tf.Module
    wrapper's variables that are not trainable."""
    if hasattr(model, "non_trainable_variables"):
        return model.non_trainable_variables
    return [variable for variable in model.variables if not variable.trainable]


def make_model_parallel_step(strategy, model, optimizer, loss_fn, average_gradients=False):
    """Training step for a model that places its own sub-models on this worker's devices (a MOD
    tree over the worker's GPUs), built outside the strategy scope on every worker (train.py with
    --distribution_strategy=multi_worker and a placed tree, yt8m.training.trainer).

    `step(features, labels, label_weights=None)` takes this worker's batch (its share of the data),
    computes the gradients where the model puts them (its `compute_gradients`; with a
    LossScaleOptimizer of the scaled loss, then unscaled), sums them over the workers (as the
    trainer sums replicas' gradients, the starter's towers; `average_gradients`: the mean,
    --average_replica_gradients), and applies them here (`optimizer`: built with
    `on_variable_devices` for a placed model, so each variable is clipped and updated on its
    device); batch-norm moving statistics, updated from each worker's own examples, are averaged
    too, so every worker keeps the same model.
    `loss_fn(outputs, labels, label_weights)` -> a scalar, or a dict of scalars with
    "total_loss" (yt8m.training.objective.training_loss). Returns (the loss or dict of losses,
    averaged over the workers; this worker's predictions).
    """
    trained = training_protocol.as_training_model(model)

    @tf.function(reduce_retracing=True)
    def step(features, labels, label_weights=None):
        with tf.GradientTape() as tape:
            outputs = trained(features, training=True)
            losses = loss_fn(outputs, labels, label_weights)
            total = losses["total_loss"] if isinstance(losses, dict) else losses
            scaled_loss = mixed_precision.scale_loss(optimizer, total)  # mixed_float16
        variables = trained.trainable_variables
        # Unscaled before the sum over the workers and the (per-variable) clipping.
        gradients = mixed_precision.unscale_gradients(
            optimizer, trained.compute_gradients(tape, scaled_loss, variables))
        reduce = multi_worker.all_reduce_mean if average_gradients else multi_worker.all_reduce_sum
        optimizer.apply_gradients(zip(reduce(strategy, gradients), variables))
        statistics = [variable for variable in non_trainable_variables(model)
                      if variable.dtype.is_floating]
        if statistics:
            for variable, value in zip(statistics,
                                       multi_worker.all_reduce_mean(strategy, statistics)):
                variable.assign(value)
        averaged = tf.nest.pack_sequence_as(
            losses, multi_worker.all_reduce_mean(strategy, tf.nest.flatten(losses)))
        return averaged, objective.model_predictions(outputs)[0]

    return step
