"""--optimizer names of the starter (tf.compat.v1.train classes) as tf_keras optimizers with TF1's
constants.

The starter builds `optimizer_class(learning_rate)`, so the TF1 constructor defaults apply; the
Keras classes differ in some constants, set here to TF1's values (the update formulas are the
same):
- AdamOptimizer: beta1 0.9, beta2 0.999, epsilon 1e-8 (Keras: 1e-7).
- RMSPropOptimizer: decay 0.9, momentum 0, epsilon 1e-10 inside the square root, and the
  mean-square accumulator starts at ONES (Keras: epsilon 1e-7 and zeros): `TF1RMSprop`.
- AdagradOptimizer: accumulator starts at 0.1, no epsilon (Keras adds 1e-7 inside the sqrt).
- AdadeltaOptimizer: rho 0.95, epsilon 1e-8 (Keras: 1e-7).
- GradientDescentOptimizer: plain SGD.
- MomentumOptimizer: the starter cannot build it (TF1's MomentumOptimizer has no default
  momentum: `optimizer_class(learning_rate)` raises TypeError); here it is SGD with momentum 0.9
  (docs/deviations.md).
The Keras names (Adam, SGD, RMSprop, Adagrad, Adadelta) give the Keras defaults.
"""
import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from yt8m.training import model_parallel
from yt8m.core import errors


@keras.utils.register_keras_serializable(package="yt8m")
class TF1RMSprop(keras.optimizers.RMSprop):
    """Keras RMSprop whose mean-square accumulator (`velocity`) starts at ones, as
    tf.compat.v1.train.RMSPropOptimizer's `rms` slot does (the first steps are then small
    instead of ~lr / sqrt(0.1) in size)."""

    def add_variable_from_reference(self, model_variable, variable_name, shape=None,
                                    initial_value=None):
        if variable_name == "velocity" and initial_value is None:
            dtype = getattr(model_variable, "true_dtype", model_variable.dtype)
            initial_value = tf.ones(model_variable.shape if shape is None else shape, dtype)
        return super().add_variable_from_reference(model_variable, variable_name, shape,
                                                   initial_value)


# Starter name -> (Keras optimizer class, the TF1 constants as constructor arguments).
_STARTER_NAMES = {
    "AdamOptimizer": (keras.optimizers.Adam, {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8}),
    "GradientDescentOptimizer": (keras.optimizers.SGD, {}),
    "MomentumOptimizer": (keras.optimizers.SGD, {"momentum": 0.9}),
    "RMSPropOptimizer": (TF1RMSprop, {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-10}),
    "AdagradOptimizer": (keras.optimizers.Adagrad,
                         {"initial_accumulator_value": 0.1, "epsilon": 0.0}),
    "AdadeltaOptimizer": (keras.optimizers.Adadelta, {"rho": 0.95, "epsilon": 1e-8}),
    "Adam": (keras.optimizers.Adam, {}),
    "SGD": (keras.optimizers.SGD, {}),
    "RMSprop": (keras.optimizers.RMSprop, {}),
    "Adagrad": (keras.optimizers.Adagrad, {}),
    "Adadelta": (keras.optimizers.Adadelta, {}),
}
OPTIMIZER_NAMES = tuple(_STARTER_NAMES)


def make_optimizer(name, learning_rate, clip_gradient_norm, on_variable_devices=False):
    """Keras optimizer; `clipnorm` clips each variable's gradient separately (after the replicas'
    gradients are summed), which is the starter's per-variable clipping, not a global-norm clip.

    on_variable_devices: clip and update each variable on that variable's device (a model that
    places its own variables, `TrainingModel.is_model_parallel`; see model_parallel.py).
    """
    if name not in _STARTER_NAMES:
        raise errors.InvalidInputError(
            f"--optimizer={name!r} is not one of: {', '.join(OPTIMIZER_NAMES)}")
    if clip_gradient_norm < 0:
        raise errors.InvalidInputError(
            f"--clip_gradient_norm must be >= 0, got {clip_gradient_norm}")
    optimizer_class, arguments = _STARTER_NAMES[name]
    if on_variable_devices:
        optimizer_class = model_parallel.on_variable_devices(optimizer_class)
    return optimizer_class(learning_rate=learning_rate,
                           clipnorm=clip_gradient_norm if clip_gradient_norm > 0 else None,
                           **arguments)
