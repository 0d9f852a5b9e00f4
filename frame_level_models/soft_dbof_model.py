"""SoftDbofModelLF: Willow's soft Deep Bag-of-Frames with late fusion ("Soft-DBoW" of Willow's
README); its rows and head are shared with GatedDbofModelLF.

frames L2-normalised as one vector -> `iterations` frames sampled -> input BN -> SoftDBoF per
stream (first stream K clusters, others K/8) -> concat -> (--fc_dimred) hidden dense H (bias, or BN
+ ReLU6 with --dbof_relu) -> Willow's MoE. No context gating. Defaults are Willow's flag defaults;
the README's Soft-DBoW is --dbof_cluster_size=8000 --dbof_hidden_size=1024 --dbof_relu=False.
"""
import yt8m  # noqa: F401

from frame_level_models import dbof_model, model_parts, willow_parts
from frame_level_models.hparams import HParam
from frame_level_models.layers.soft_dbof import SoftDBoF
from frame_level_models.registry import register

AUDIO_DIVISOR = 8  # Willow's DBoF models give the audio stream cluster_size/8 clusters
DBOF_HPARAMS = dbof_model.DBOF_SHARED_HPARAMS + (
    HParam("dbof_relu", "bool", True,
           "GatedDbofModelLF / SoftDbofModelLF: ReLU6 (with batch norm) on the hidden layer."),
    HParam("softdbof_maxpool", "bool", False,
           "SoftDBoF pooling also appends the L2-normalised max of the assignments over frames "
           "(Willow's GatedDbofModelLF: its audio stream only)."),
    HParam("fc_dimred", "bool", True,
           "GatedDbofModelLF / SoftDbofModelLF: the hidden layer between pooling and classifier."),
)
HPARAMS = DBOF_HPARAMS + willow_parts.COMMON_HPARAMS
DEFAULTS = {"dbof_cluster_size": 16384, "dbof_hidden_size": 2048, **willow_parts.SAMPLING_DEFAULTS}


def dbof_head(pooled, num_classes, hp):
    """Willow's DBoF models after the pooling: optional hidden layer, then the MoE."""
    if hp.fc_dimred:
        pooled = willow_parts.hidden_layer(pooled, hp.dbof_hidden_size, hp.dbof_cluster_size,
                                           hp.dbof_relu, hp.dbof_add_batch_norm, hp)
    return willow_parts.moe_outputs(pooled, num_classes, hp)


@register("SoftDbofModelLF", frame_level=True, hparams=HPARAMS, defaults=DEFAULTS,
          description="Soft Deep Bag-of-Frames, late fusion (Willow).")
def soft_dbof_model(inputs, num_classes, names, sizes, hp):
    def pooling(index, name):
        return SoftDBoF(model_parts.stream_share(hp.dbof_cluster_size, index, AUDIO_DIVISOR),
                        hp.dbof_add_batch_norm, hp.softdbof_maxpool, bn_momentum=hp.bn_momentum,
                        name=f"{name}_soft_dbof")

    pooled = willow_parts.pooled_streams(inputs, names, sizes, hp, hp.dbof_add_batch_norm,
                                         pooling)
    return dbof_head(pooled, num_classes, hp)
