"""FrameLevelLogisticModel (starter): mean of the valid frames per stream, then logistic."""
import yt8m  # noqa: F401

from frame_level_models import model_parts
from frame_level_models.layers.frame_ops import MaskedMean
from frame_level_models.registry import register


@register("FrameLevelLogisticModel", frame_level=True,
          hparams=(model_parts.L2_PENALTY,) + model_parts.FRAME_SAMPLING_HPARAMS,
          description="Logistic regression on the mean of the valid frames.")
def frame_level_logistic_model(inputs, num_classes, names, sizes, hp):
    streams, num_frames = model_parts.frame_streams(inputs, names, hp)
    pooled = [MaskedMean(name=f"{name}_mean")([stream, num_frames])
              for name, stream in zip(names, streams)]
    embedding = model_parts.concat(pooled, "mean_features")
    return model_parts.logistic_outputs(embedding, num_classes, hp.l2_penalty)
