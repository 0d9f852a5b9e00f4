"""--optimizer names of the starter (tf.compat.v1.train classes) mapped to Keras optimizers."""
import yt8m  # noqa: F401
import tf_keras as keras

from yt8m.training import model_parallel
from yt8m.core import errors

# Starter name -> (Keras optimizer class, extra constructor arguments).
_STARTER_NAMES = {
    "AdamOptimizer": (keras.optimizers.Adam, {}),
    "GradientDescentOptimizer": (keras.optimizers.SGD, {}),
    "MomentumOptimizer": (keras.optimizers.SGD, {"momentum": 0.9}),
    "RMSPropOptimizer": (keras.optimizers.RMSprop, {}),
    "AdagradOptimizer": (keras.optimizers.Adagrad, {}),
    "Adam": (keras.optimizers.Adam, {}),
    "SGD": (keras.optimizers.SGD, {}),
    "RMSprop": (keras.optimizers.RMSprop, {}),
    "Adagrad": (keras.optimizers.Adagrad, {}),
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
