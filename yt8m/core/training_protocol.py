"""What the trainer needs of the model it trains, with the plain behaviour as defaults.

    total loss = label_loss_weight * label loss(outputs)
                 + sum of label loss(p) over auxiliary_predictions(outputs)
                 + regularization_penalty * (sum(losses) + regularization_terms(outputs))
                 + auxiliary_loss(labels, outputs, label_weights)
    gradients  = compute_gradients(tape, total loss / replicas, trainable_variables)

A model with more to say (mixtures and MOD trees, the distillation wrappers, your own) subclasses
`TrainingModel` beside keras.Model and overrides what differs:

    class MyModel(TrainingModel, keras.Model):
        def auxiliary_loss(self, labels, outputs, label_weights=None): ...

Any other model (the zoo's functional models) is trained through `as_training_model(model)`, a
`PlainTrainingModel` with every default. This module sits below the models and the trainer, so
both import it.
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf


class TrainingModel:
    """Mixin of the training hooks; every default is the plain model's behaviour."""

    # Weight of the trainer's label loss on `outputs["predictions"]` (distillation: 0 without
    # L_CE, 1 - lambda in multi-teacher and graph distillation).
    label_loss_weight = 1.0
    # Batch entries besides the model inputs that the trainer passes to the call (a teacher
    # cache looks teachers' outputs up by video id).
    extra_batch_keys = ()
    # True when the model puts its own variables on several devices (MOD trees): the trainer
    # then clips and updates each variable on that variable's device
    # (yt8m.training.model_parallel).
    is_model_parallel = False

    def auxiliary_loss(self, labels, outputs, label_weights=None):
        """Loss terms besides the label loss and the regularisation (a scalar tensor)."""
        del labels, outputs, label_weights
        return tf.constant(0.0)

    def auxiliary_predictions(self, outputs):
        """[(predictions, logits or None)] that the trainer also scores with its label loss, each
        added unweighted (linrongc's `aux_predictions`: a mixture's branches)."""
        del outputs
        return []

    def regularization_terms(self, outputs):
        """Loss terms the model counts as regularisation (the references'
        `result["regularization_loss"]`: the mixtures' distillation KL): the trainer multiplies
        them by --regularization_penalty together with the weight penalties (a scalar tensor)."""
        del outputs
        return tf.constant(0.0)

    def compute_gradients(self, tape, loss, variables):
        """Gradients of `loss` with respect to `variables` (recorded on `tape`)."""
        return tape.gradient(loss, variables)


class PlainTrainingModel(TrainingModel):
    """A model that does not implement TrainingModel, trained with the defaults."""

    def __init__(self, model):
        self.model = model

    def __call__(self, inputs, training=None):
        return self.model(inputs, training=training)

    @property
    def trainable_variables(self):
        return self.model.trainable_variables

    @property
    def losses(self):
        return self.model.losses


def as_training_model(model):
    """`model` itself when it implements TrainingModel, else a PlainTrainingModel around it."""
    return model if isinstance(model, TrainingModel) else PlainTrainingModel(model)
