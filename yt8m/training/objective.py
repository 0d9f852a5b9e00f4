"""The quantity the trainer minimises (the references' train.py, docs/design.md):

  total = label_loss_weight * label_loss(predictions, labels[, label_weights])
          + sum over model.auxiliary_predictions(outputs) of label_loss(p, labels[, ...])
          + regularization_penalty * (sum(model.losses) + model.regularization_terms(outputs))
          + model.auxiliary_loss(labels, outputs, label_weights)

The hooks come from the model's training protocol (yt8m.core.training_protocol: a plain model has
none). A mixture's branch predictions are auxiliary predictions and its distillation KL a
regularisation term, as in linrongc's and MOD's train.py; distillation wrappers scale the label
loss (label_loss_weight: 0 without L_CE, 1 - lambda in multi-teacher distillation) and add their
terms through auxiliary_loss.
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
    """Returns a dict of scalar tensors: label_loss (of the model's predictions),
    regularization_loss (weight penalties and regularisation terms, before the penalty factor),
    auxiliary_loss (the auxiliary predictions' label losses and the model's auxiliary loss), total.
    """
    model = training_protocol.as_training_model(model)
    predictions, logits = model_predictions(outputs)
    label_term = label_loss.calculate_loss(predictions, labels, label_weights=label_weights,
                                           logits=logits)
    regularization = tf.add_n(list(model.losses) + [model.regularization_terms(outputs)])
    auxiliary = model.auxiliary_loss(labels, outputs, label_weights)
    for aux_predictions, aux_logits in model.auxiliary_predictions(outputs):
        auxiliary += label_loss.calculate_loss(aux_predictions, labels,
                                               label_weights=label_weights, logits=aux_logits)
    total = (model.label_loss_weight * label_term + regularization_penalty * regularization
             + auxiliary)
    return {"label_loss": label_term, "regularization_loss": regularization,
            "auxiliary_loss": auxiliary, "total_loss": total}
