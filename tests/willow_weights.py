"""Keras weights of the Willow models in the reference's layout: {Willow variable name: array}, the
dict tests/reference/willow_numpy.py reads (names as in tests/reference/param_counts.py).

The mapping is by layer type and the models' layer names: `<stream>_<pooling>` layers go under
the reference's stream scopes (video_VLAD/, audio_FV/, ...), `hidden`, `hidden_bn`,
`context_gating` and `moe` to Willow's hidden1 / gating / MoE variables, `input_bn` to input_bn,
the GRU / LSTM stacks to Willow's RNN/ scope (TF1 cell layout).
"""
import numpy as np

import yt8m  # noqa: F401
import tf_keras as keras

from frame_level_models import layers
from reference import starter_numpy, willow_numpy

STREAM_SCOPES = {"rgb": "video", "audio": "audio"}
POOLING_SCOPES = {"netvlad": "VLAD", "netfv": "FV", "soft_dbof": "DBOF", "gated_dbof": "DBOF"}


def batch_norm(bn, scope):
    return {f"{scope}/gamma": bn.gamma.numpy(), f"{scope}/beta": bn.beta.numpy(),
            f"{scope}/moving_mean": bn.moving_mean.numpy(),
            f"{scope}/moving_variance": bn.moving_variance.numpy()}


def pooling(layer, scope):
    """A pooling layer's variables under `scope` (ending in '/')."""
    weights = {scope + "cluster_weights": layer.cluster_kernel.numpy()}
    if layer.add_batch_norm:
        weights.update(batch_norm(layer.cluster_bn, scope + "cluster_bn"))
    else:
        weights[scope + "cluster_biases"] = layer.cluster_bias.numpy()
    if isinstance(layer, layers.NetVLAD):
        weights[scope + "cluster_weights2"] = layer.centroids.numpy()[None]
    elif isinstance(layer, layers.NetVLAGD):
        weights[scope + "gate_weights"] = layer.gate_kernel.numpy().T[None]  # [1, K, N]
    elif isinstance(layer, layers.NetFV):
        weights[scope + "covar_weights"] = layer.covar_kernel.numpy()
        if not layer.couple_weights:
            weights[scope + "cluster_weights2"] = layer.centroids.numpy()[None]
    elif isinstance(layer, layers.GatedDBoF):
        weights[scope + "dim_red"] = layer.reduction_kernel.numpy()
        weights[scope + "cluster_weights_2"] = layer.gate_kernel.numpy()
        if layer.add_batch_norm:
            weights.update(batch_norm(layer.gate_bn, scope + "cluster_bn_2"))
        else:
            weights[scope + "cluster_biases_2"] = layer.gate_bias.numpy()
    return weights


def moe(layer):
    weights = {"experts/weights": layer.expert_kernel.numpy(),
               "experts/biases": layer.expert_bias.numpy()}
    if layer.gating_rank:
        weights["gates1/weights"] = layer.gate_low_rank_kernel.numpy()
        weights["gates2/weights"] = layer.gate_kernel.numpy()
    else:
        weights["gates/weights"] = layer.gate_kernel.numpy()
    if layer.prob_gating:
        weights["gating_prob_weights"] = layer.prob_gating_kernel.numpy()
        weights.update(batch_norm(layer.prob_gating_bn, "gating_prob_bn"))
    return weights


def gru(layer):
    """GruEncoder -> RNN/rnn/multi_rnn_cell/cell_<i>/gru_cell/{gates,candidate}/{kernel,bias}."""
    weights = {}
    for index, rnn in enumerate(layer.grus):
        cell = rnn.cell
        gates, gates_bias, candidate, candidate_bias = willow_numpy.keras_gru_to_tf1_gru(
            cell.kernel.numpy(), cell.recurrent_kernel.numpy(), cell.bias.numpy())
        scope = f"RNN/rnn/multi_rnn_cell/cell_{index}/gru_cell/"
        weights.update({scope + "gates/kernel": gates, scope + "gates/bias": gates_bias,
                        scope + "candidate/kernel": candidate,
                        scope + "candidate/bias": candidate_bias})
    return weights


def lstm(layer):
    """LstmEncoder -> RNN/rnn/multi_rnn_cell/cell_<i>/basic_lstm_cell/{kernel,bias}."""
    weights = {}
    for index, rnn in enumerate(layer.lstms):
        kernel, bias = starter_numpy.keras_lstm_to_basic_lstm(
            rnn.cell.kernel.numpy(), rnn.cell.recurrent_kernel.numpy(), rnn.cell.bias.numpy())
        scope = f"RNN/rnn/multi_rnn_cell/cell_{index}/basic_lstm_cell/"
        weights.update({scope + "kernel": kernel, scope + "bias": bias})
    return weights


def model_weights(model):
    """Every variable of a Willow model, by its reference name."""
    weights = {}
    for layer in model.layers:
        name = layer.name
        if name == "input_bn":
            weights.update(batch_norm(layer.batch_norm, "input_bn"))
        elif name == "hidden":
            weights["hidden1_weights"] = layer.kernel.numpy()
            if layer.use_bias:
                weights["hidden1_biases"] = layer.bias.numpy()
        elif name == "hidden_bn":
            weights.update(batch_norm(layer, "hidden1_bn"))
        elif name == "context_gating":
            weights["gating_weights_2"] = layer.kernel.numpy()
            weights.update(batch_norm(layer.batch_norm, "gating_bn"))
        elif name == "moe":
            weights.update(moe(layer))
        elif isinstance(layer, layers.GruEncoder):
            weights.update(gru(layer))
        elif isinstance(layer, layers.LstmEncoder):
            weights.update(lstm(layer))
        elif layer.weights:
            stream, kind = name.split("_", 1)
            scope = f"{STREAM_SCOPES[stream]}_{POOLING_SCOPES[kind]}/"
            weights.update(pooling(layer, scope))
    return weights


def randomize_batch_norms(model, rng):
    """Non-trivial batch-norm parameters and moving statistics, so the reference must apply them."""
    for sub in model._flatten_layers(include_self=True):
        if isinstance(sub, keras.layers.BatchNormalization):
            n = sub.gamma.shape[0]
            sub.gamma.assign(rng.uniform(0.5, 1.5, n))
            sub.beta.assign(rng.normal(0, 0.3, n))
            sub.moving_mean.assign(rng.normal(0, 0.3, n))
            sub.moving_variance.assign(rng.uniform(0.5, 1.5, n))


def shapes(weights):
    return {name: tuple(np.shape(value)) for name, value in weights.items()}
