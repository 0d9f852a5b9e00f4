"""Video-level models of the starter: classifiers on the concatenated mean features, L2-normalised
as the starter's train.py / eval.py normalise their input."""
import yt8m  # noqa: F401

from frame_level_models import model_parts
from frame_level_models.registry import register


@register("LogisticModel", frame_level=False, hparams=(model_parts.L2_PENALTY,),
          description="Logistic regression on the video-level mean features.")
def logistic_model(inputs, num_classes, names, sizes, hp):
    embedding = model_parts.starter_input(inputs, names)
    return model_parts.logistic_outputs(embedding, num_classes, hp.l2_penalty)


@register("MoeModel", frame_level=False,
          hparams=(model_parts.L2_PENALTY,) + model_parts.MOE_HPARAMS + (model_parts.BN_MOMENTUM,),
          description="Mixture of experts on the video-level mean features.")
def moe_model(inputs, num_classes, names, sizes, hp):
    embedding = model_parts.starter_input(inputs, names)
    return model_parts.classifier_outputs("MoeModel", embedding, num_classes, hp)
