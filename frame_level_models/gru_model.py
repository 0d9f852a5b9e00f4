"""GruModel (Willow): a stack of TF1 GRU cells over the L2-normalised 1152-d frames; Willow's MoE
reads the whole final state [h_0, h_1, ...] (layers x cells). The README's GRU is
--gru_cells=1200 --moe_l2=1e-6 (2 layers, 2400-d state)."""
import yt8m  # noqa: F401

from frame_level_models import willow_parts
from frame_level_models.hparams import HParam, integer
from frame_level_models.layers.gru import GruEncoder
from frame_level_models.registry import register

HPARAMS = (
    integer("gru_cells", 1024, "GruModel: GRU units per layer."),
    integer("gru_layers", 2, "GruModel: stacked GRU layers."),
    HParam("gru_random_sequence", "bool", False,
           "GruModel: feed --iterations frames drawn with replacement (Willow's "
           "SampleRandomFrames; at evaluation too with --deterministic_eval=False)."),
    HParam("gru_backward", "bool", False, "GruModel: read each video's frames last to first."),
) + willow_parts.RECURRENT_HPARAMS


@register("GruModel", frame_level=True, hparams=HPARAMS, defaults={"deterministic_eval": True},
          description="Stacked GRU, whole final state, Willow's MoE (Willow).")
def gru_model(inputs, num_classes, names, sizes, hp):
    del sizes
    frames, num_frames = willow_parts.recurrent_inputs(inputs, names, hp, hp.gru_random_sequence,
                                                       hp.gru_backward)
    state = GruEncoder(hp.gru_cells, hp.gru_layers, name="gru")([frames, num_frames])
    return willow_parts.moe_outputs(state, num_classes, hp)
