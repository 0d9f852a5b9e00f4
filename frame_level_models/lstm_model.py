"""LstmModel (starter): a stacked LSTM per stream over the valid frames, then a classifier."""
import yt8m  # noqa: F401

from frame_level_models import model_parts
from frame_level_models.layers.lstm import LstmEncoder
from frame_level_models.registry import register


@register("LstmModel", frame_level=True,
          hparams=("lstm_cells", "lstm_layers", "video_level_classifier_model", "l2_penalty",
                   "moe_num_mixtures", "moe_prob_gating", "sample_random_frames", "iterations"),
          description="Stacked LSTM final states, video-level classifier.")
def lstm_model(inputs, num_classes, names, sizes, hp):
    streams, num_frames = model_parts.frame_streams(inputs, names, hp)
    states = [LstmEncoder(hp.lstm_cells, hp.lstm_layers, name=f"{name}_lstm")([stream, num_frames])
              for name, stream in zip(names, streams)]
    embedding = model_parts.concat(states, "lstm_concat")
    return model_parts.classifier_outputs(hp.video_level_classifier_model, embedding,
                                          num_classes, hp)
