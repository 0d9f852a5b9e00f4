"""Assembly steps and hparam rows shared by Willow's models (antoine77340/Youtube-8M-WILLOW, the
2017 winner): NetVLADModelLF, NetFVModelLF, GatedDbofModelLF, SoftDbofModelLF, GruModel and
Willow's LstmModel.

Every Willow model sees the frames L2-normalised as one 1152-d vector (Willow's train.py, as the
starter's). The *ModelLF sample frames as the starter's DbofModel does (`iterations` frames, at
training and, with --deterministic_eval=False, evaluation), add an input batch norm, pool rgb and
audio separately, pass the concatenation through a hidden layer (bias, or batch norm when it has a
ReLU6) and optionally context gating; the recurrent models run a GRU / LSTM stack; all classify
with Willow's MoeModel.
"""
import yt8m  # noqa: F401
import tf_keras as keras

from frame_level_models import model_parts
from frame_level_models.hparams import HParam, integer
from frame_level_models.layers import common
from frame_level_models.layers.dense import WideDense
from frame_level_models.layers.frame_ops import (FrameBatchNorm, RandomFrameSampler,
                                                 ReverseFrames, SplitFeatures)
from frame_level_models.layers.gating import ContextGating
from frame_level_models.layers.lstm import LstmEncoder
from frame_level_models.layers.moe import PROB_GATING_INPUTS, MoeClassifier

GATING = HParam(
    "gating", "bool", None,
    "Context gating on the hidden layer of NetVLADModelLF / NetFVModelLF. Default per model: on "
    "for NetVLADModelLF (the winning configuration), off (Willow's flag default) for "
    "NetFVModelLF.", fallback=False)
GATING_REMOVE_DIAG = HParam(
    "gating_remove_diag", "bool", False,
    "Willow models: the context gating of NetVLADModelLF and the MoE probability gating drop the "
    "diagonal of their matrix (no channel or class gates itself).")
NETVLAD_ADD_BATCH_NORM = HParam(
    "netvlad_add_batch_norm", "bool", True,
    "NetVLADModelLF / NetFVModelLF: batch norm on the input frames, the cluster assignments and "
    "(with a ReLU) the hidden layer; else biases.")
MOE_LOW_RANK_GATING = integer(
    "moe_low_rank_gating", -1, "Willow models: rank r of the MoE gate matrix factorised as "
    "(D x r)(r x V(M+1)); -1: full rank.", lower=-1)
MOE_PROB_GATING_INPUT = HParam(
    "moe_prob_gating_input", "enum", "prob",
    "Willow models: what the MoE probability gating reads, the class probabilities (prob, V x V "
    "matrix) or the classifier input (input, D x V).", choices=PROB_GATING_INPUTS)
# Willow's MoeModel: the starter's MoE with Willow's options; --moe_l2 is l2_penalty's alias.
MOE_HPARAMS = model_parts.MOE_HPARAMS + (
    model_parts.L2_PENALTY, MOE_LOW_RANK_GATING, MOE_PROB_GATING_INPUT, GATING_REMOVE_DIAG)
# Rows of the *ModelLF besides their own, and their defaults: Willow samples frames (random
# frames, --sample_random_frames=True) at training and evaluation; evaluation here uses every frame
# unless --deterministic_eval=False (docs/models.md, deviations).
COMMON_HPARAMS = MOE_HPARAMS + model_parts.STARTER_SAMPLING_HPARAMS + (model_parts.BN_MOMENTUM,)
SAMPLING_DEFAULTS = {"sample_random_frames": True, "deterministic_eval": True}
# Rows of GruModel and Willow's LstmModel besides their own.
RECURRENT_HPARAMS = MOE_HPARAMS + (model_parts.ITERATIONS, model_parts.DETERMINISTIC_EVAL,
                                   model_parts.BN_MOMENTUM)
LSTM_RANDOM_SEQUENCE = HParam(
    "lstm_random_sequence", "bool", None,
    "Willow's LstmModel: feed `iterations` frames drawn with replacement (Willow's "
    "SampleRandomFrames, at evaluation too with --deterministic_eval=False). Given (True or "
    "False), --model=LstmModel builds Willow's LstmModel instead of the starter's.")
LSTM_BACKWARD = HParam(
    "lstm_backward", "bool", None,
    "Willow's LstmModel: read each video's frames last to first. Given (True or False), "
    "--model=LstmModel builds Willow's LstmModel instead of the starter's.")
WILLOW_LSTM_HPARAMS = (LSTM_RANDOM_SEQUENCE, LSTM_BACKWARD) + RECURRENT_HPARAMS


def sampled_frames(inputs, names, hp):
    """(frames [B, T', sum(sizes)] L2-normalised per frame, num_frames) sampled as Willow's
    *ModelLF did (model_parts.starter_sampling)."""
    frames = model_parts.starter_input(inputs, names)
    return model_parts.starter_sampling(frames, inputs[model_parts.NUM_FRAMES], hp)


def pooled_streams(inputs, names, sizes, hp, add_batch_norm, pooling):
    """Input batch norm over the concatenated frames, then the layer `pooling(index, name)` on each
    stream, concatenated (late fusion)."""
    frames, num_frames = sampled_frames(inputs, names, hp)
    if add_batch_norm:
        frames = FrameBatchNorm(bn_momentum=hp.bn_momentum, name="input_bn")([frames, num_frames])
    streams = SplitFeatures(sizes, name="split_features")(frames) if len(sizes) > 1 else [frames]
    pooled = [pooling(index, name)([stream, num_frames])
              for index, (name, stream) in enumerate(zip(names, streams))]
    return model_parts.concat(pooled, "pooled_concat")


def hidden_layer(activation, hidden_size, cluster_size, relu, add_batch_norm, hp, gating=False,
                 remove_diagonal=False):
    """Willow's hidden layer: x W (stddev 1/sqrt(cluster_size)) + bias (stddev 0.01), or batch
    norm instead of the bias when it has a ReLU6 (and batch norms are on); then context gating."""
    with_bn = add_batch_norm and relu
    activation = WideDense(
        hidden_size, use_bias=not with_bn,
        kernel_initializer=keras.initializers.RandomNormal(stddev=cluster_size ** -0.5),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.01), name="hidden")(activation)
    if with_bn:
        activation = common.batch_norm("hidden_bn", hp.bn_momentum)(activation)
    if relu:
        activation = keras.layers.ReLU(max_value=6.0, name="hidden_relu6")(activation)
    if gating:
        activation = ContextGating(remove_diagonal=remove_diagonal, bn_momentum=hp.bn_momentum,
                                   name="context_gating")(activation)
    return activation


def moe_outputs(embedding, num_classes, hp):
    """Willow's MoeModel on `embedding` (the outputs dict of model_parts.moe_outputs)."""
    predictions = MoeClassifier(
        num_classes, hp.moe_num_mixtures, hp.l2_penalty, hp.moe_prob_gating,
        gating_rank=None if hp.moe_low_rank_gating == -1 else hp.moe_low_rank_gating,
        prob_gating_input=hp.moe_prob_gating_input, remove_diagonal=hp.gating_remove_diag,
        bn_momentum=hp.bn_momentum, name="moe")(embedding)
    return {"predictions": predictions, "embedding": embedding}


def recurrent_inputs(inputs, names, hp, random_sequence, backward):
    """(frames, num_frames) for GruModel / Willow's LstmModel: the L2-normalised frames, then

    random_sequence (Willow's --gru_random_sequence / --lstm_random_sequence): `iterations` frames
    drawn with replacement (SampleRandomFrames, despite the name), at training and, with
    --deterministic_eval=False, evaluation; the stack still stops at the video's own num_frames,
    as Willow's sequence_length did;
    backward: each video's frames read last to first.
    """
    frames = model_parts.starter_input(inputs, names)
    num_frames = inputs[model_parts.NUM_FRAMES]
    if random_sequence:
        frames, _ = RandomFrameSampler(hp.iterations, at_inference=not hp.deterministic_eval,
                                       name="frame_sampler")([frames, num_frames])
    if backward:
        frames = ReverseFrames(name="reverse_frames")([frames, num_frames])
    return frames, num_frames


def lstm_outputs(inputs, names, num_classes, hp):
    """Willow's LstmModel: BasicLSTMCell(lstm_cells) x lstm_layers over the (sampled, reversed)
    frames; Willow's MoE reads the whole final state [c_0, h_0, c_1, h_1, ...]."""
    if hp.video_level_classifier_model != "MoeModel":
        raise ValueError(f"Willow's LstmModel (--lstm_random_sequence / --lstm_backward given) "
                         f"classifies with MoeModel, its only video-level model; got "
                         f"video_level_classifier_model={hp.video_level_classifier_model}")
    frames, num_frames = recurrent_inputs(inputs, names, hp, hp.lstm_random_sequence,
                                          hp.lstm_backward)
    state = LstmEncoder(hp.lstm_cells, hp.lstm_layers, state_output="all",
                        name="lstm")([frames, num_frames])
    return moe_outputs(state, num_classes, hp)
