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
  MultiWorkerMirroredStrategy (one model replica per worker, built outside the strategy scope).
"""
import functools

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.core import training_protocol
from yt8m.training import mixed_precision
from yt8m.training import multi_worker


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


def make_model_parallel_step(strategy, model, optimizer, loss_fn, average_gradients=False):
    """Training step for a model that places its own sub-models on this worker's devices (a MOD
    tree over the worker's GPUs), built outside the strategy scope on every worker.

    `step(features, labels)` takes this worker's share of the global batch, computes the
    gradients where the model puts them (its `compute_gradients`), sums them over the workers
    (as the trainer sums replicas' gradients, the starter's towers; `average_gradients`: the mean,
    --average_replica_gradients), and applies them here (`optimizer`: built with
    `on_variable_devices` for a placed model);
    batch-norm moving statistics, updated from each worker's own examples, are averaged too, so
    every worker keeps the same model. Returns the loss averaged over the workers.
    `loss_fn(outputs, labels)` -> scalar.
    """
    trained = training_protocol.as_training_model(model)

    @tf.function
    def step(features, labels):
        with tf.GradientTape() as tape:
            outputs = trained(features, training=True)
            loss = loss_fn(outputs, labels)
            scaled_loss = mixed_precision.scale_loss(optimizer, loss)  # mixed_float16
        variables = trained.trainable_variables
        # Unscaled before the sum over the workers and the (per-variable) clipping.
        gradients = mixed_precision.unscale_gradients(
            optimizer, trained.compute_gradients(tape, scaled_loss, variables))
        reduce = multi_worker.all_reduce_mean if average_gradients else multi_worker.all_reduce_sum
        optimizer.apply_gradients(zip(reduce(strategy, gradients), variables))
        statistics = [variable for variable in model.non_trainable_variables
                      if variable.dtype.is_floating]
        if statistics:
            for variable, value in zip(statistics,
                                       multi_worker.all_reduce_mean(strategy, statistics)):
                variable.assign(value)
        return multi_worker.all_reduce_mean(strategy, [loss])[0]

    return step
