"""LstmModel (starter): a stacked LSTM per stream over the valid frames, then a classifier."""
import yt8m  # noqa: F401

from frame_level_models import model_parts
from frame_level_models.hparams import integer
from frame_level_models.layers.lstm import LstmEncoder
from frame_level_models.registry import register


# Shared with HierarchicalLstmModel.
LSTM_HPARAMS = (
    integer("lstm_cells", 1024, "LSTM units per layer (one stack per feature stream)."),
    integer("lstm_layers", 2, "Stacked LSTM layers."),
)
HPARAMS = (LSTM_HPARAMS + model_parts.CLASSIFIER_HPARAMS + model_parts.FRAME_SAMPLING_HPARAMS
           + (model_parts.BN_MOMENTUM,))


@register("LstmModel", frame_level=True, hparams=HPARAMS,
          description="Stacked LSTM final states, video-level classifier.")
def lstm_model(inputs, num_classes, names, sizes, hp):
    streams, num_frames = model_parts.frame_streams(inputs, names, hp)
    states = [LstmEncoder(hp.lstm_cells, hp.lstm_layers, name=f"{name}_lstm")([stream, num_frames])
              for name, stream in zip(names, streams)]
    embedding = model_parts.concat(states, "lstm_concat")
    return model_parts.classifier_outputs(hp.video_level_classifier_model, embedding,
                                          num_classes, hp)
