"""DbofModel (starter Deep Bag-of-Frames): DBoF pooling per stream, hidden layer, classifier."""
import yt8m  # noqa: F401
import tf_keras as keras

from frame_level_models import model_parts
from frame_level_models.layers import common
from frame_level_models.layers.dense import WideDense
from frame_level_models.layers.dbof import DbofPooling
from frame_level_models.registry import register


@register("DbofModel", frame_level=True,
          hparams=("dbof_cluster_size", "dbof_hidden_size", "dbof_add_batch_norm",
                   "dbof_pooling_method", "video_level_classifier_model", "l2_penalty",
                   "moe_num_mixtures", "moe_prob_gating", "sample_random_frames", "iterations"),
          description="Deep Bag-of-Frames pooling, ReLU6 hidden layer, video-level classifier.")
def dbof_model(inputs, num_classes, names, sizes, hp):
    streams, num_frames = model_parts.frame_streams(inputs, names, hp)
    pooled = []
    for index, (name, stream) in enumerate(zip(names, streams)):
        clusters = model_parts.stream_share(hp.dbof_cluster_size, index)
        pooled.append(DbofPooling(clusters, hp.dbof_add_batch_norm, hp.dbof_pooling_method,
                                  name=f"{name}_dbof")([stream, num_frames]))
    activation = model_parts.concat(pooled, "dbof_concat")
    # Starter: hidden weights drawn with stddev 1/sqrt(cluster_size); a bias only without BN.
    activation = WideDense(
        hp.dbof_hidden_size, use_bias=not hp.dbof_add_batch_norm,
        kernel_initializer=keras.initializers.RandomNormal(stddev=hp.dbof_cluster_size ** -0.5),
        name="hidden")(activation)
    if hp.dbof_add_batch_norm:
        activation = common.batch_norm("hidden_bn")(activation)
    embedding = keras.layers.ReLU(max_value=6.0, name="hidden_relu6")(activation)
    return model_parts.classifier_outputs(hp.video_level_classifier_model, embedding,
                                          num_classes, hp)
