"""NetVLADModelLF: Willow's Gated NetVLAD with late fusion, the 2017 winner (SPEC section 4).

frames L2-normalised as one vector -> input BN -> NetVLAD per stream (first stream K, others K/2)
-> concat -> hidden dense H with bias (no BN/ReLU unless netvlad_relu) -> context gating
-> MoE with probability gating.
"""
import yt8m  # noqa: F401
import tf_keras as keras

from frame_level_models import model_parts
from frame_level_models.layers import common
from frame_level_models.layers.dense import WideDense
from frame_level_models.layers.frame_ops import FrameBatchNorm, FrameL2Normalize, SplitFeatures
from frame_level_models.layers.gating import ContextGating
from frame_level_models.layers.netvlad import NetVLAD
from frame_level_models.registry import register


@register("NetVLADModelLF", frame_level=True,
          hparams=("netvlad_cluster_size", "netvlad_hidden_size", "netvlad_relu",
                   "netvlad_add_batch_norm", "gating", "moe_num_mixtures", "moe_prob_gating",
                   "l2_penalty", "sample_random_frames", "iterations"),
          description="Gated NetVLAD, late fusion (2017 winner).")
def netvlad_model(inputs, num_classes, names, sizes, hp):
    streams, num_frames = model_parts.frame_streams(inputs, names, hp)
    frames = FrameL2Normalize(name="frame_l2_norm")(model_parts.concat(streams, "frame_concat"))
    if hp.netvlad_add_batch_norm:
        frames = FrameBatchNorm(name="input_bn")([frames, num_frames])
    streams = SplitFeatures(sizes, name="split_features")(frames) if len(sizes) > 1 else [frames]
    pooled = []
    for index, (name, stream) in enumerate(zip(names, streams)):
        clusters = model_parts.stream_share(hp.netvlad_cluster_size, index)
        pooled.append(NetVLAD(clusters, hp.netvlad_add_batch_norm,
                              name=f"{name}_netvlad")([stream, num_frames]))
    activation = model_parts.concat(pooled, "netvlad_concat")
    with_bn = hp.netvlad_add_batch_norm and hp.netvlad_relu
    # Willow drew the hidden weights with stddev 1/sqrt(cluster_size).
    activation = WideDense(
        hp.netvlad_hidden_size, use_bias=not with_bn,
        kernel_initializer=keras.initializers.RandomNormal(
            stddev=hp.netvlad_cluster_size ** -0.5), name="hidden")(activation)
    if with_bn:
        activation = common.batch_norm("hidden_bn")(activation)
    if hp.netvlad_relu:
        activation = keras.layers.ReLU(max_value=6.0, name="hidden_relu6")(activation)
    if hp.gating:
        activation = ContextGating(name="context_gating")(activation)
    return model_parts.moe_outputs(activation, num_classes, hp.moe_num_mixtures, hp.l2_penalty,
                                   hp.moe_prob_gating)
