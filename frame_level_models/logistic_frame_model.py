"""FrameLevelLogisticModel (the starter's): rgb ++ audio per frame, L2-normalised, averaged over
the valid frames (the starter sums every row and divides by num_frames: padded rows are zero),
then logistic regression."""
import yt8m  # noqa: F401

from frame_level_models import model_parts
from frame_level_models.layers.frame_ops import MaskedMean
from frame_level_models.registry import register


@register("FrameLevelLogisticModel", frame_level=True,
          hparams=(model_parts.L2_PENALTY,) + model_parts.FRAME_SAMPLING_HPARAMS,
          description="Logistic regression on the mean of the valid frames.")
def frame_level_logistic_model(inputs, num_classes, names, sizes, hp):
    frames = model_parts.starter_input(inputs, names)
    (frames,), num_frames = model_parts.sampled_streams(
        [frames], inputs[model_parts.NUM_FRAMES], hp)
    embedding = MaskedMean(name="frame_mean")([frames, num_frames])
    return model_parts.logistic_outputs(embedding, num_classes, hp.l2_penalty)
