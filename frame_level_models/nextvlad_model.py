"""NeXtVLADModel (Lin et al. 2018; SPEC section 4).

[rgb reverse whitening] -> NeXtVLAD per stream (first stream K clusters and G groups, the others
K/2 and G/2) -> concat -> dropout -> hidden dense H without bias -> BN -> SE gating -> logistic.
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


# Defaults are the paper's configuration.
HPARAMS = (
    integer("nextvlad_cluster_size", 128, "NeXtVLAD clusters of the first stream (half for the "
            "others)."),
    integer("nextvlad_hidden_size", 2048, "Hidden layer after the NeXtVLAD concatenation."),
    integer("groups", 8, "NeXtVLAD groups of the first stream (half for the others)."),
    integer("expansion", 2, "NeXtVLAD expansion factor lambda."),
    HParam("drop_rate", "float", 0.5, "Dropout before the NeXtVLAD hidden layer.",
           lower_bound=0.0, upper_bound=0.999),
    integer("gating_reduction", 8, "SE gating reduction r of the NeXtVLAD model."),
    model_parts.L2_PENALTY,
    HParam("pca_eigenvalues_file", "string", "",
           "NeXtVLAD reverse whitening: a .npy of the rgb PCA eigenvalues (one per rgb "
           "dimension); rgb frames are multiplied by sqrt(eigenvalue). Empty: off."),
) + model_parts.FRAME_SAMPLING_HPARAMS + (model_parts.BN_MOMENTUM,)


@register("NeXtVLADModel", frame_level=True, hparams=HPARAMS, defaults={"l2_penalty": 1e-5},
          description="NeXtVLAD pooling, SE context gating, logistic classifier.",
          loss_epsilon=LINRONGC_EPSILON)
def nextvlad_model(inputs, num_classes, names, sizes, hp):
    streams, num_frames = model_parts.frame_streams(inputs, names, hp)
    if hp.pca_eigenvalues_file:
        eigenvalues = load_eigenvalues(hp.pca_eigenvalues_file, sizes[0])
        streams[0] = ReverseWhitening(eigenvalues, name=f"{names[0]}_reverse_whitening")(
            streams[0])
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
    return model_parts.logistic_outputs(embedding, num_classes, hp.l2_penalty)
