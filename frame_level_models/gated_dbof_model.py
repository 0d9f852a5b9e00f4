"""GatedDbofModelLF: Willow's gated soft Deep Bag-of-Frames with late fusion ("Gated Soft-DBoW" of
Willow's README).

frames L2-normalised as one vector -> `iterations` frames sampled -> input BN -> GatedDBoF on the
first stream (K clusters), SoftDBoF on the others (K/8, with --softdbof_maxpool its max too) ->
concat -> the head of SoftDbofModelLF. The README's configuration: --dbof_cluster_size=4096
--dbof_hidden_size=1024 --dbof_relu=False --moe_l2=1e-6.
"""
import yt8m  # noqa: F401

from frame_level_models import model_parts, soft_dbof_model, willow_parts
from frame_level_models.layers.soft_dbof import GatedDBoF, SoftDBoF
from frame_level_models.registry import register


@register("GatedDbofModelLF", frame_level=True, hparams=soft_dbof_model.HPARAMS,
          defaults=soft_dbof_model.DEFAULTS,
          description="Gated soft Deep Bag-of-Frames, late fusion (Willow).")
def gated_dbof_model(inputs, num_classes, names, sizes, hp):
    def pooling(index, name):
        if index == 0:
            return GatedDBoF(hp.dbof_cluster_size, hp.dbof_add_batch_norm,
                             bn_momentum=hp.bn_momentum, name=f"{name}_gated_dbof")
        # Willow passes --softdbof_maxpool to both poolings; only SoftDBoF reads it.
        return SoftDBoF(model_parts.stream_share(hp.dbof_cluster_size, index,
                                                 soft_dbof_model.AUDIO_DIVISOR),
                        hp.dbof_add_batch_norm, hp.softdbof_maxpool, bn_momentum=hp.bn_momentum,
                        name=f"{name}_soft_dbof")

    pooled = willow_parts.pooled_streams(inputs, names, sizes, hp, hp.dbof_add_batch_norm,
                                         pooling)
    return soft_dbof_model.dbof_head(pooled, num_classes, hp)
