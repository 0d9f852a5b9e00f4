"""LstmModel (the starter's): rgb ++ audio per frame (1152), L2-normalised, through ONE stack of
LSTMs over each video's valid frames; the classifier reads the last layer's h at the last valid
frame (lstm_cells wide).

Willow's LstmModel has the same name: a command line that gives one of the flags only Willow's
LstmModel defines (--lstm_random_sequence, --lstm_backward, True or False) builds Willow's
(willow_parts.lstm_outputs: the whole state [c_0, h_0, c_1, h_1] into Willow's MoE), as Willow's
README command does; without them this is the starter's model.
"""
import yt8m  # noqa: F401

from frame_level_models import model_parts, willow_parts
from frame_level_models.hparams import integer
from frame_level_models.layers.lstm import LstmEncoder
from frame_level_models.registry import register


# Shared with HierarchicalLstmModel.
LSTM_HPARAMS = (
    integer("lstm_cells", 1024, "LSTM units per layer."),
    integer("lstm_layers", 2, "Stacked LSTM layers."),
)
HPARAMS = (LSTM_HPARAMS + model_parts.CLASSIFIER_HPARAMS + model_parts.FRAME_SAMPLING_HPARAMS
           + (model_parts.BN_MOMENTUM,) + willow_parts.WILLOW_LSTM_HPARAMS)


@register("LstmModel", frame_level=True, hparams=HPARAMS, defaults={"deterministic_eval": True},
          description="Stacked LSTM over the frames, last layer's final state, video-level "
                      "classifier (the starter's).")
def lstm_model(inputs, num_classes, names, sizes, hp):
    if hp.lstm_random_sequence is not None or hp.lstm_backward is not None:
        return willow_parts.lstm_outputs(inputs, names, num_classes, hp)
    frames = model_parts.starter_input(inputs, names)
    (frames,), num_frames = model_parts.sampled_streams(
        [frames], inputs[model_parts.NUM_FRAMES], hp)
    embedding = LstmEncoder(hp.lstm_cells, hp.lstm_layers, name="lstm")([frames, num_frames])
    return model_parts.classifier_outputs(hp.video_level_classifier_model, embedding,
                                          num_classes, hp)
