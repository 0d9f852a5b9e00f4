"""NetVLADModelLF: Willow's Gated NetVLAD with late fusion, the 2017 winner (SPEC section 4), and
its two pooling variants (--lightvlad: "Gated NetRVLAD" of Willow's README; --vlagd).

frames L2-normalised as one vector -> `iterations` frames sampled -> input BN -> NetVLAD per stream
(first stream K, others K/2) -> concat -> hidden dense H with bias (no BN/ReLU unless netvlad_relu)
-> context gating -> MoE with probability gating.
"""
import yt8m  # noqa: F401

from frame_level_models import model_parts, willow_parts
from frame_level_models.hparams import HParam, integer
from frame_level_models.layers.netvlad import LightVLAD, NetVLAD, NetVLAGD
from frame_level_models.registry import register


# Defaults are the winning configuration (Willow's flag defaults differ: docs/models.md).
HPARAMS = (
    integer("netvlad_cluster_size", 256, "NetVLAD clusters of the first stream (half for the "
            "others)."),
    integer("netvlad_hidden_size", 1024, "Hidden layer after the NetVLAD concatenation."),
    HParam("netvlad_relu", "bool", False,
           "BN + ReLU6 on the NetVLAD hidden layer (the winner used a plain affine layer)."),
    willow_parts.NETVLAD_ADD_BATCH_NORM,
    HParam("lightvlad", "bool", False,
           "NetVLADModelLF: LightVLAD pooling, NetVLAD without centroids (Willow's \"Gated "
           "NetRVLAD\"); wins over --vlagd as in Willow."),
    HParam("vlagd", "bool", False,
           "NetVLADModelLF: NetVLAGD pooling, the cluster sums gated by sigmoid(learned gates) "
           "instead of centred."),
    willow_parts.GATING,
) + willow_parts.COMMON_HPARAMS


@register("NetVLADModelLF", frame_level=True, hparams=HPARAMS,
          defaults={"l2_penalty": 1e-6, "moe_prob_gating": True, "gating": True,
                    "iterations": 300, **willow_parts.SAMPLING_DEFAULTS},
          description="Gated NetVLAD, late fusion (2017 winner); LightVLAD / NetVLAGD variants.")
def netvlad_model(inputs, num_classes, names, sizes, hp):
    pooling_class = LightVLAD if hp.lightvlad else NetVLAGD if hp.vlagd else NetVLAD

    def pooling(index, name):
        return pooling_class(model_parts.stream_share(hp.netvlad_cluster_size, index),
                             hp.netvlad_add_batch_norm, bn_momentum=hp.bn_momentum,
                             name=f"{name}_netvlad")

    activation = willow_parts.pooled_streams(inputs, names, sizes, hp, hp.netvlad_add_batch_norm,
                                             pooling)
    activation = willow_parts.hidden_layer(
        activation, hp.netvlad_hidden_size, hp.netvlad_cluster_size, hp.netvlad_relu,
        hp.netvlad_add_batch_norm, hp, gating=hp.gating, remove_diagonal=hp.gating_remove_diag)
    return willow_parts.moe_outputs(activation, num_classes, hp)
