"""DbofModel (starter Deep Bag-of-Frames): DBoF pooling per stream, hidden layer, classifier."""
import yt8m  # noqa: F401
import tf_keras as keras

from frame_level_models import model_parts
from frame_level_models.hparams import HParam, integer
from frame_level_models.layers import common
from frame_level_models.layers.dense import WideDense
from frame_level_models.layers.dbof import DbofPooling
from frame_level_models.registry import register


HPARAMS = (
    integer("dbof_cluster_size", 8192, "DBoF clusters of the first feature stream (half for the "
            "others)."),
    integer("dbof_hidden_size", 1024, "DBoF hidden layer size."),
    HParam("dbof_add_batch_norm", "bool", True,
           "Batch norm on the DBoF input, cluster activations and hidden layer (else biases)."),
    HParam("dbof_pooling_method", "enum", "max", "Pooling of DBoF cluster activations over the "
           "valid frames.", choices=("max", "average")),
) + model_parts.CLASSIFIER_HPARAMS + model_parts.FRAME_SAMPLING_HPARAMS + (
    model_parts.BN_MOMENTUM,)


@register("DbofModel", frame_level=True, hparams=HPARAMS,
          description="Deep Bag-of-Frames pooling, ReLU6 hidden layer, video-level classifier.")
def dbof_model(inputs, num_classes, names, sizes, hp):
    streams, num_frames = model_parts.frame_streams(inputs, names, hp)
    pooled = []
    for index, (name, stream) in enumerate(zip(names, streams)):
        clusters = model_parts.stream_share(hp.dbof_cluster_size, index)
        pooled.append(DbofPooling(clusters, hp.dbof_add_batch_norm, hp.dbof_pooling_method,
                                  bn_momentum=hp.bn_momentum,
                                  name=f"{name}_dbof")([stream, num_frames]))
    activation = model_parts.concat(pooled, "dbof_concat")
    # Starter: hidden weights drawn with stddev 1/sqrt(cluster_size); a bias only without BN.
    activation = WideDense(
        hp.dbof_hidden_size, use_bias=not hp.dbof_add_batch_norm,
        kernel_initializer=keras.initializers.RandomNormal(stddev=hp.dbof_cluster_size ** -0.5),
        name="hidden")(activation)
    if hp.dbof_add_batch_norm:
        activation = common.batch_norm("hidden_bn", hp.bn_momentum)(activation)
    embedding = keras.layers.ReLU(max_value=6.0, name="hidden_relu6")(activation)
    return model_parts.classifier_outputs(hp.video_level_classifier_model, embedding,
                                          num_classes, hp)
