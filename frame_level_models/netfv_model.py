"""NetFVModelLF: Willow's gated NetFV with late fusion ("Gated NetFV" of Willow's README).

frames L2-normalised as one vector -> `iterations` frames sampled -> input BN -> NetFV per stream
(first stream K clusters, others K/2; 2*N*K values each) -> concat -> hidden dense H (bias, or BN +
ReLU6 with --fv_relu) -> context gating (--gating) -> Willow's MoE. Defaults are Willow's flag
defaults; the README's Gated NetFV is --fv_cluster_size=128 --fv_hidden_size=1024 --fv_relu=False
--gating=True --moe_prob_gating=True --fv_couple_weights=False --moe_l2=1e-6.
"""
import yt8m  # noqa: F401

from frame_level_models import model_parts, willow_parts
from frame_level_models.hparams import HParam, integer
from frame_level_models.layers.netfv import NetFV
from frame_level_models.registry import register

HPARAMS = (
    integer("fv_cluster_size", 64, "NetFV clusters of the first stream (half for the others)."),
    integer("fv_hidden_size", 2048, "Hidden layer after the NetFV concatenation."),
    HParam("fv_relu", "bool", True, "NetFVModelLF: ReLU6 (with batch norm) on the hidden layer."),
    HParam("fv_couple_weights", "bool", True,
           "NetFV centres coupled to the assignment weights (fv_coupling_factor * W) instead of "
           "learned centroids."),
    HParam("fv_coupling_factor", "float", 0.01, "NetFV: centres = factor * assignment weights "
           "when --fv_couple_weights."),
    willow_parts.NETVLAD_ADD_BATCH_NORM,
    willow_parts.GATING,
) + willow_parts.COMMON_HPARAMS


@register("NetFVModelLF", frame_level=True, hparams=HPARAMS,
          defaults=willow_parts.SAMPLING_DEFAULTS,
          description="Gated NetFV (learnable Fisher vectors), late fusion (Willow).")
def netfv_model(inputs, num_classes, names, sizes, hp):
    def pooling(index, name):
        return NetFV(model_parts.stream_share(hp.fv_cluster_size, index),
                     hp.netvlad_add_batch_norm, hp.fv_couple_weights, hp.fv_coupling_factor,
                     bn_momentum=hp.bn_momentum, name=f"{name}_netfv")

    activation = willow_parts.pooled_streams(inputs, names, sizes, hp, hp.netvlad_add_batch_norm,
                                             pooling)
    # Willow's NetFVModelLF gates without --gating_remove_diag (only its MoE reads that flag).
    activation = willow_parts.hidden_layer(activation, hp.fv_hidden_size, hp.fv_cluster_size,
                                           hp.fv_relu, hp.netvlad_add_batch_norm, hp,
                                           gating=hp.gating)
    return willow_parts.moe_outputs(activation, num_classes, hp)
