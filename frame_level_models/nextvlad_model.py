"""NeXtVLADModel (Lin et al. 2018; SPEC section 4).

[rgb reverse whitening] -> NeXtVLAD per stream (first stream K clusters and G groups, the others
K/2 and G/2) -> concat -> dropout -> hidden dense H without bias -> BN -> SE gating -> logistic.
"""
import yt8m  # noqa: F401
import tf_keras as keras

from frame_level_models import model_parts
from frame_level_models.layers import common
from frame_level_models.layers.dense import WideDense
from frame_level_models.layers.frame_ops import ReverseWhitening, load_eigenvalues
from frame_level_models.layers.gating import SEGating
from frame_level_models.layers.nextvlad import NeXtVLAD
from frame_level_models.registry import register


@register("NeXtVLADModel", frame_level=True,
          hparams=("nextvlad_cluster_size", "nextvlad_hidden_size", "groups", "expansion",
                   "drop_rate", "gating_reduction", "l2_penalty", "pca_eigenvalues_file",
                   "sample_random_frames", "iterations"),
          description="NeXtVLAD pooling, SE context gating, logistic classifier.")
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
                               name=f"{name}_nextvlad")([stream, num_frames]))
    activation = model_parts.concat(pooled, "nextvlad_concat")
    if hp.drop_rate > 0:
        activation = keras.layers.Dropout(hp.drop_rate, name="dropout")(activation)
    activation = WideDense(hp.nextvlad_hidden_size, use_bias=False,
                                    kernel_initializer=common.he_normal(),
                                    name="hidden")(activation)
    activation = common.batch_norm("hidden_bn")(activation)
    embedding = SEGating(hp.gating_reduction, name="se_gating")(activation)
    return model_parts.logistic_outputs(embedding, num_classes, hp.l2_penalty)
