"""The quantity the trainer minimises (SPEC convention, docs/design.md):

  total = label_loss_weight * label_loss(predictions, labels[, label_weights])
          + regularization_penalty * sum(model.losses)
          + model.auxiliary_loss(labels, outputs, label_weights)   (when the model defines it)

label_loss_weight is the model's `label_loss_weight` attribute, 1 when it has none (distillation
wrappers scale the label loss: 0 without L_CE, 1 - lambda in multi-teacher distillation).
"""
import yt8m  # noqa: F401
import tensorflow as tf


def model_predictions(outputs):
    """Models return a dict with `predictions` (and `logits` where defined); a bare tensor is
    taken as the predictions."""
    if isinstance(outputs, dict):
        return outputs["predictions"], outputs.get("logits")
    return outputs, None


def training_loss(model, outputs, labels, label_weights, label_loss, regularization_penalty):
    """Returns a dict of scalar tensors: label_loss, regularization_loss, auxiliary_loss, total."""
    predictions, logits = model_predictions(outputs)
    label_term = label_loss.calculate_loss(predictions, labels, label_weights=label_weights,
                                           logits=logits)
    regularization = tf.add_n(model.losses) if model.losses else tf.constant(0.0)
    auxiliary_loss = getattr(model, "auxiliary_loss", None)
    auxiliary = (auxiliary_loss(labels, outputs, label_weights) if auxiliary_loss is not None
                 else tf.constant(0.0))
    label_loss_weight = getattr(model, "label_loss_weight", 1.0)
    total = label_loss_weight * label_term + regularization_penalty * regularization + auxiliary
    return {"label_loss": label_term, "regularization_loss": regularization,
            "auxiliary_loss": auxiliary, "total_loss": total}
