"""DbofModel (the starter's Deep Bag-of-Frames), early fusion as the starter:

rgb ++ audio per frame (1152), L2-normalised -> `iterations` frames sampled per video (training AND
evaluation; --deterministic_eval: every valid frame outside training) -> ONE DBoF pooling (input BN,
cluster weights [1152, 8192], cluster BN, --dbof_activation, max over the frames) -> hidden layer
(weights [8192, 1024], BN) -> --dbof_activation -> video-level classifier (MoE by default).
"""
import yt8m  # noqa: F401
import tf_keras as keras

from frame_level_models import model_parts
from frame_level_models.hparams import HParam
from frame_level_models.layers import common
from frame_level_models.layers.dense import WideDense
from frame_level_models.layers.dbof import ACTIVATIONS, DbofPooling, activation_function
from frame_level_models.registry import register


# Shared with Willow's GatedDbofModelLF / SoftDbofModelLF (their flag defaults: 16384, 2048).
DBOF_SHARED_HPARAMS = (
    HParam("dbof_cluster_size", "integer", None, "DBoF clusters (words); Willow's DBoF models: "
           "of the rgb stream (audio K/8). Default per model: 8192 (DbofModel, the starter's), "
           "16384 (Willow's).", lower_bound=1, fallback=8192),
    HParam("dbof_hidden_size", "integer", None, "DBoF hidden layer size. Default per model: 1024 "
           "(DbofModel), 2048 (Willow's).", lower_bound=1, fallback=1024),
    HParam("dbof_add_batch_norm", "bool", True,
           "Batch norm on the DBoF input, cluster activations and hidden layer (else biases)."),
)
HPARAMS = DBOF_SHARED_HPARAMS + (
    HParam("dbof_pooling_method", "enum", "max", "Pooling of DBoF cluster activations over the "
           "sampled frames.", choices=("max", "average")),
    HParam("dbof_activation", "enum", "sigmoid", "Activation of the DBoF clusters and hidden "
           "layer.", choices=tuple(ACTIVATIONS)),
) + model_parts.CLASSIFIER_HPARAMS + model_parts.STARTER_SAMPLING_HPARAMS + (
    model_parts.BN_MOMENTUM,)


@register("DbofModel", frame_level=True, hparams=HPARAMS,
          defaults={"sample_random_frames": True},
          description="Deep Bag-of-Frames pooling of sampled frames, hidden layer, video-level "
                      "classifier (the starter's).")
def dbof_model(inputs, num_classes, names, sizes, hp):
    frames = model_parts.starter_input(inputs, names)
    frames, num_frames = model_parts.starter_sampling(frames, inputs[model_parts.NUM_FRAMES], hp)
    activation = DbofPooling(hp.dbof_cluster_size, hp.dbof_add_batch_norm,
                             hp.dbof_pooling_method, hp.dbof_activation,
                             bn_momentum=hp.bn_momentum, name="dbof")([frames, num_frames])
    # Starter: hidden1_weights drawn with stddev 1/sqrt(cluster_size); hidden1_biases (stddev
    # 0.01) only without batch norm.
    activation = WideDense(
        hp.dbof_hidden_size, use_bias=not hp.dbof_add_batch_norm,
        kernel_initializer=keras.initializers.RandomNormal(stddev=hp.dbof_cluster_size ** -0.5),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.01), name="hidden")(activation)
    if hp.dbof_add_batch_norm:
        activation = common.batch_norm("hidden_bn", hp.bn_momentum)(activation)
    embedding = keras.layers.Activation(activation_function(hp.dbof_activation),
                                        name="hidden_activation")(activation)
    return model_parts.classifier_outputs(hp.video_level_classifier_model, embedding,
                                          num_classes, hp)
