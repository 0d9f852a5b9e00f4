"""NetVLADModelLF: Willow's Gated NetVLAD with late fusion, the 2017 winner (SPEC section 4).

frames L2-normalised as one vector -> input BN -> NetVLAD per stream (first stream K, others K/2)
-> concat -> hidden dense H with bias (no BN/ReLU unless netvlad_relu) -> context gating
-> MoE with probability gating.
"""
import yt8m  # noqa: F401
import tf_keras as keras

from frame_level_models import model_parts
from frame_level_models.hparams import HParam, integer
from frame_level_models.layers import common
from frame_level_models.layers.dense import WideDense
from frame_level_models.layers.frame_ops import FrameBatchNorm, FrameL2Normalize, SplitFeatures
from frame_level_models.layers.gating import ContextGating
from frame_level_models.layers.netvlad import NetVLAD
from frame_level_models.registry import register


# Defaults are the winning configuration.
HPARAMS = (
    integer("netvlad_cluster_size", 256, "NetVLAD clusters of the first stream (half for the "
            "others)."),
    integer("netvlad_hidden_size", 1024, "Hidden layer after the NetVLAD concatenation."),
    HParam("netvlad_relu", "bool", False,
           "BN + ReLU6 on the NetVLAD hidden layer (the winner used a plain affine layer)."),
    HParam("netvlad_add_batch_norm", "bool", True,
           "Batch norm on the input frames and the cluster assignments (else assignment biases)."),
    HParam("gating", "bool", True, "Context gating on the NetVLAD hidden layer."),
) + model_parts.MOE_HPARAMS + (model_parts.L2_PENALTY,) + model_parts.FRAME_SAMPLING_HPARAMS + (
    model_parts.BN_MOMENTUM,)


@register("NetVLADModelLF", frame_level=True, hparams=HPARAMS,
          defaults={"l2_penalty": 1e-6, "moe_prob_gating": True},
          description="Gated NetVLAD, late fusion (2017 winner).")
def netvlad_model(inputs, num_classes, names, sizes, hp):
    streams, num_frames = model_parts.frame_streams(inputs, names, hp)
    frames = FrameL2Normalize(name="frame_l2_norm")(model_parts.concat(streams, "frame_concat"))
    if hp.netvlad_add_batch_norm:
        frames = FrameBatchNorm(bn_momentum=hp.bn_momentum, name="input_bn")([frames, num_frames])
    streams = SplitFeatures(sizes, name="split_features")(frames) if len(sizes) > 1 else [frames]
    pooled = []
    for index, (name, stream) in enumerate(zip(names, streams)):
        clusters = model_parts.stream_share(hp.netvlad_cluster_size, index)
        pooled.append(NetVLAD(clusters, hp.netvlad_add_batch_norm, bn_momentum=hp.bn_momentum,
                              name=f"{name}_netvlad")([stream, num_frames]))
    activation = model_parts.concat(pooled, "netvlad_concat")
    with_bn = hp.netvlad_add_batch_norm and hp.netvlad_relu
    # Willow drew the hidden weights with stddev 1/sqrt(cluster_size).
    activation = WideDense(
        hp.netvlad_hidden_size, use_bias=not with_bn,
        kernel_initializer=keras.initializers.RandomNormal(
            stddev=hp.netvlad_cluster_size ** -0.5), name="hidden")(activation)
    if with_bn:
        activation = common.batch_norm("hidden_bn", hp.bn_momentum)(activation)
    if hp.netvlad_relu:
        activation = keras.layers.ReLU(max_value=6.0, name="hidden_relu6")(activation)
    if hp.gating:
        activation = ContextGating(bn_momentum=hp.bn_momentum,
                                   name="context_gating")(activation)
    return model_parts.moe_outputs(activation, num_classes, hp.moe_num_mixtures, hp.l2_penalty,
                                   hp.moe_prob_gating, hp.bn_momentum)
