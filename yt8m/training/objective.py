"""The quantity the trainer minimises (SPEC convention, docs/design.md):

  total = label_loss_weight * label_loss(predictions, labels[, label_weights])
          + regularization_penalty * sum(model.losses)
          + model.auxiliary_loss(labels, outputs, label_weights)

label_loss_weight and auxiliary_loss come from the model's training protocol
(yt8m.core.training_protocol: 1 and 0 for a plain model; distillation wrappers scale the label
loss: 0 without L_CE, 1 - lambda in multi-teacher distillation).
"""
import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.core import training_protocol


def model_predictions(outputs):
    """Models return a dict with `predictions` (and `logits` where defined); a bare tensor is
    taken as the predictions."""
    if isinstance(outputs, dict):
        return outputs["predictions"], outputs.get("logits")
    return outputs, None


def training_loss(model, outputs, labels, label_weights, label_loss, regularization_penalty):
    """Returns a dict of scalar tensors: label_loss, regularization_loss, auxiliary_loss, total."""
    model = training_protocol.as_training_model(model)
    predictions, logits = model_predictions(outputs)
    label_term = label_loss.calculate_loss(predictions, labels, label_weights=label_weights,
                                           logits=logits)
    model_losses = model.losses
    regularization = tf.add_n(model_losses) if model_losses else tf.constant(0.0)
    auxiliary = model.auxiliary_loss(labels, outputs, label_weights)
    total = (model.label_loss_weight * label_term + regularization_penalty * regularization
             + auxiliary)
    return {"label_loss": label_term, "regularization_loss": regularization,
            "auxiliary_loss": auxiliary, "total_loss": total}
