"""Learning-rate schedule of the starter code: staircase decay on the number of examples seen."""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tf_keras as keras
from yt8m.core import errors


def examples_staircase_decay(base_learning_rate, decay, decay_examples, global_batch_size):
    """lr(step) = base * decay ** floor(step * global_batch_size / decay_examples).

    The starter decays on examples seen (step x global batch), so changing the batch size or the
    number of replicas keeps the schedule in examples; Keras' staircase ExponentialDecay expresses
    the same thing with decay_steps = decay_examples / global_batch_size.
    """
    if base_learning_rate <= 0:
        raise errors.InvalidInputError(
            f"--base_learning_rate must be > 0, got {base_learning_rate}")
    if not 0 < decay <= 1:
        raise errors.InvalidInputError(f"--learning_rate_decay must be in (0, 1], got {decay}")
    if decay_examples <= 0:
        raise errors.InvalidInputError(
            f"--learning_rate_decay_examples must be > 0, got {decay_examples}")
    return keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=base_learning_rate,
        decay_steps=decay_examples / global_batch_size,
        decay_rate=decay,
        staircase=True)
