"""--mixed_precision: the tf_keras mixed-precision policy a model is built with, and the loss
scaling that float16 training needs (docs/training.md "Mixed precision").

- `policy_scope(name)`: layers created inside take the policy `name` (float32, mixed_bfloat16 or
  mixed_float16): float32 variables, 16-bit compute; Keras casts each layer's floating inputs to
  the compute dtype. The models keep their numerically sensitive parts in float32 themselves
  (frame_level_models.layers.common: softmax, L2 normalisation; Keras batch norm computes its
  statistics in float32; every model's outputs are float32), so losses and metrics see float32.
- mixed_float16 needs loss scaling (float16 gradients below ~6e-8 flush to zero): the optimizer is
  wrapped in Keras' `LossScaleOptimizer` (dynamic scale), and a custom step multiplies its loss by
  the scale before differentiating (`scale_loss`) and divides the gradients by it after
  (`unscale_gradients`), so clipping, summing over replicas and the update all see the true
  gradients; a step whose scaled gradients overflowed is skipped and the scale halved.
  bfloat16 has float32's exponent range: no loss scaling.
"""
import contextlib

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tf_keras as keras

from yt8m.core import errors
from yt8m.core.config import MIXED_PRECISION_POLICIES

FLOAT32 = "float32"
LOSS_SCALED_POLICIES = ("mixed_float16",)


def check_policy(name, flag="--mixed_precision"):
    if name not in MIXED_PRECISION_POLICIES:
        raise errors.InvalidInputError(
            f"{flag}={name!r} is not one of: {', '.join(MIXED_PRECISION_POLICIES)}")
    return name


@contextlib.contextmanager
def policy_scope(name):
    """Layers created in this scope take the mixed-precision policy `name`; the previous global
    policy comes back afterwards (a layer keeps the policy it was created with)."""
    check_policy(name)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def needs_loss_scaling(policy_name):
    return policy_name in LOSS_SCALED_POLICIES


def with_loss_scaling(optimizer, policy_name):
    """`optimizer` wrapped in a dynamic LossScaleOptimizer for a loss-scaled policy, else itself.
    The inner optimizer keeps its clipping (it runs on the unscaled gradients, see module doc)."""
    if not needs_loss_scaling(policy_name):
        return optimizer
    return keras.mixed_precision.LossScaleOptimizer(optimizer)


def is_loss_scaled(optimizer):
    return isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)


def scale_loss(optimizer, loss):
    """The loss to differentiate: multiplied by the loss scale when the optimizer scales it."""
    return optimizer.get_scaled_loss(loss) if is_loss_scaled(optimizer) else loss


def unscale_gradients(optimizer, gradients):
    """The true gradients from those of `scale_loss(optimizer, loss)`."""
    if not is_loss_scaled(optimizer):
        return list(gradients)
    return optimizer.get_unscaled_gradients(list(gradients))
