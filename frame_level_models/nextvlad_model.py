"""NeXtVLADModel (Lin et al. 2018; SPEC section 4).

[rgb reverse whitening] -> NeXtVLAD per stream (first stream K clusters and G groups, the others
K/2 and G/2) -> concat -> dropout -> hidden dense H without bias -> BN -> SE gating -> classifier
(--video_level_classifier_model: LogisticModel, as linrongc's: He init, L2 on weights and biases;
or linrongc's MoeModel, which has no logits and so cannot be a mixture branch).
"""
import yt8m  # noqa: F401
import tf_keras as keras

from frame_level_models import model_parts
from frame_level_models.hparams import HParam, integer
from frame_level_models.layers import common
from frame_level_models.layers.dense import WideDense
from frame_level_models.layers.frame_ops import ReverseWhitening, load_eigenvalues
from frame_level_models.layers.gating import SEGating
from frame_level_models.layers.nextvlad import NeXtVLAD
from frame_level_models.registry import register
from yt8m.losses import LINRONGC_EPSILON


HPARAMS = (
    integer("nextvlad_cluster_size", 128, "NeXtVLAD clusters of the first stream (half for the "
            "others)."),
    integer("nextvlad_hidden_size", 2048, "Hidden layer after the NeXtVLAD concatenation."),
    integer("groups", 8, "NeXtVLAD groups of the first stream (half for the others)."),
    integer("expansion", 2, "NeXtVLAD expansion factor lambda."),
    HParam("drop_rate", "float", 0.5, "Dropout before the NeXtVLAD hidden layer.",
           lower_bound=0.0, upper_bound=0.999),
    integer("gating_reduction", 8, "SE gating reduction r of the NeXtVLAD model."),
    model_parts.VIDEO_LEVEL_CLASSIFIER,
    model_parts.L2_PENALTY,
    model_parts.MOE_NUM_MIXTURES,
    HParam("pca_eigenvalues_file", "string", "",
           "NeXtVLAD reverse whitening: a .npy of rgb PCA eigenvalues, shape (N,) or (N, 1) with N "
           ">= the rgb size (linrongc's yt8m_pca/eigenvals.npy, (2048, 1): the first 1024 are "
           "used); rgb frames become (x - 4/512) * (sqrt(eigenvalue) + 1e-4), mixture gates read "
           "them too. Empty: off."),
) + model_parts.FRAME_SAMPLING_HPARAMS + (model_parts.BN_MOMENTUM,)
WHITENED_STREAM = 0  # reverse whitening applies to the first stream (rgb)


def reverse_whitening(hp, name, size):
    """The ReverseWhitening layer of --pca_eigenvalues_file for the stream `name` of `size`
    dimensions, or None when the option is off (mixture gates use it too)."""
    if not hp.pca_eigenvalues_file:
        return None
    return ReverseWhitening(load_eigenvalues(hp.pca_eigenvalues_file, size),
                            name=f"{name}_reverse_whitening")


def classifier_outputs(embedding, num_classes, hp):
    """linrongc's video_level_models: LogisticModel (variance-scaling init, L2 on weights and
    biases) or MoeModel (the starter's, default 4 mixtures, no probability gating)."""
    if hp.video_level_classifier_model == "LogisticModel":
        return model_parts.logistic_outputs(embedding, num_classes, hp.l2_penalty,
                                            kernel_initializer=common.he_normal(),
                                            l2_on_bias=True)
    return model_parts.moe_outputs(embedding, num_classes, hp.moe_num_mixtures, hp.l2_penalty,
                                   prob_gating=False, bn_momentum=hp.bn_momentum)


# Defaults: the paper's configuration (and every linrongc/MOD script's classifier, LogisticModel;
# linrongc's flag default MoeModel with 4 mixtures is --video_level_classifier_model=MoeModel).
@register("NeXtVLADModel", frame_level=True, hparams=HPARAMS,
          defaults={"l2_penalty": 1e-5, "video_level_classifier_model": "LogisticModel",
                    "moe_num_mixtures": 4},
          description="NeXtVLAD pooling, SE context gating, logistic (or MoE) classifier.",
          loss_epsilon=LINRONGC_EPSILON)
def nextvlad_model(inputs, num_classes, names, sizes, hp):
    streams, num_frames = model_parts.frame_streams(inputs, names, hp)
    whitening = reverse_whitening(hp, names[WHITENED_STREAM], sizes[WHITENED_STREAM])
    if whitening is not None:
        streams[WHITENED_STREAM] = whitening([streams[WHITENED_STREAM], num_frames])
    pooled = []
    for index, (name, stream) in enumerate(zip(names, streams)):
        pooled.append(NeXtVLAD(model_parts.stream_share(hp.nextvlad_cluster_size, index),
                               model_parts.stream_share(hp.groups, index), hp.expansion,
                               bn_momentum=hp.bn_momentum,
                               name=f"{name}_nextvlad")([stream, num_frames]))
    activation = model_parts.concat(pooled, "nextvlad_concat")
    if hp.drop_rate > 0:
        activation = keras.layers.Dropout(hp.drop_rate, name="dropout")(activation)
    activation = WideDense(hp.nextvlad_hidden_size, use_bias=False,
                           kernel_initializer=common.he_normal(), name="hidden")(activation)
    activation = common.batch_norm("hidden_bn", hp.bn_momentum)(activation)
    embedding = SEGating(hp.gating_reduction, bn_momentum=hp.bn_momentum,
                         name="se_gating")(activation)
    return classifier_outputs(embedding, num_classes, hp)
