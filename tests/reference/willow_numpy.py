"""The 2017 winner's models (antoine77340/Youtube-8M-WILLOW @ 0d2a00cc, frame_level_models.py and
video_level_models.py) re-stated in numpy.

Input: Willow's train.py / eval.py / export_model.py L2-normalise the concatenated 1152-d frames
(tf.nn.l2_normalize(model_input_raw, 2)) before the model: use starter_numpy.starter_input.
Every *ModelLF samples `iterations` frames (SampleRandomFrames, with replacement) at training AND
evaluation (is_training only switches batch norm); here `frame_index` [B, n] replaces the draw.
Variable names carry no scope prefix (train.py uses tf.name_scope("model"), which does not prefix
tf.get_variable / slim variables). Python-2 integer division: the audio branch has cluster_size/2
(NetVLAD, NetFV) or cluster_size/8 (DBoF variants) clusters.
"""
import numpy as np

from reference import common
from reference import starter_numpy

VIDEO_SIZE = 1024  # the reference slices reshaped_input[:, 0:1024] and [:, 1024:]


# ----------------------------------------------------------------------------- pooling layers


def netvlad(x, weights, scope, bn_training=False, add_batch_norm=True):
    """NetVLAD.forward on x [B, n, N]: a = softmax_K(BN(x W)) (cluster_weights [N, K], cluster_bn);
    vlad[d, k] = sum_i a_ik x_id - (sum_i a_ik) C_dk (cluster_weights2 [1, N, K]); L2-normalise over
    d (axis 1 of [B, N, K]); flatten to [B, N*K] (index d*K + k); L2-normalise."""
    batch, count, size = x.shape
    activation = x.reshape(-1, size) @ common.as_float(weights[scope + "cluster_weights"])
    if add_batch_norm:
        activation = common.batch_norm(activation, weights, scope + "cluster_bn", bn_training)
    else:
        activation = activation + common.as_float(weights[scope + "cluster_biases"])
    activation = common.softmax(activation).reshape(batch, count, -1)
    a_sum = np.sum(activation, axis=1, keepdims=True)  # [B, 1, K]
    a = a_sum * common.as_float(weights[scope + "cluster_weights2"])  # [B, N, K]
    vlad = np.einsum("bnk,bnd->bdk", activation, x) - a
    vlad = common.l2_normalize(vlad, axis=1)
    return common.l2_normalize(vlad.reshape(batch, -1), axis=1)


def lightvlad(x, weights, scope, bn_training=False, add_batch_norm=True):
    """LightVLAD.forward (--lightvlad, "NetRVLAD"): NetVLAD without centroids,
    vlad[d, k] = sum_i a_ik x_id; intra- then global L2 normalisation."""
    batch, count, size = x.shape
    activation = x.reshape(-1, size) @ common.as_float(weights[scope + "cluster_weights"])
    if add_batch_norm:
        activation = common.batch_norm(activation, weights, scope + "cluster_bn", bn_training)
    else:
        activation = activation + common.as_float(weights[scope + "cluster_biases"])
    activation = common.softmax(activation).reshape(batch, count, -1)
    vlad = common.l2_normalize(np.einsum("bnk,bnd->bdk", activation, x), axis=1)
    return common.l2_normalize(vlad.reshape(batch, -1), axis=1)


def netvlagd(x, weights, scope, bn_training=False, add_batch_norm=True):
    """NetVLAGD.forward (--vlagd): vlagd[k, d] = (sum_i a_ik x_id) * sigmoid(gate_weights
    [1, K, N]); transposed to [B, N, K]; intra- then global L2 normalisation (the batch-norm path
    only: without it the reference creates cluster_biases and never adds them)."""
    if not add_batch_norm:
        raise NotImplementedError("Willow's NetVLAGD without batch norm never adds its biases")
    batch, count, size = x.shape
    activation = x.reshape(-1, size) @ common.as_float(weights[scope + "cluster_weights"])
    activation = common.batch_norm(activation, weights, scope + "cluster_bn", bn_training)
    activation = common.softmax(activation).reshape(batch, count, -1)
    gates = common.sigmoid(common.as_float(weights[scope + "gate_weights"]))  # [1, K, N]
    vlagd = np.einsum("bnk,bnd->bkd", activation, x) * gates
    vlagd = common.l2_normalize(np.transpose(vlagd, (0, 2, 1)), axis=1)
    return common.l2_normalize(vlagd.reshape(batch, -1), axis=1)


def netfv(x, weights, scope, bn_training=False, couple_weights=True, coupling_factor=0.01,
          add_batch_norm=True):
    """NetFV.forward on x [B, n, N] -> [B, 2*N*K] = concat(fv1, fv2).

    sigma = covar_weights^2 + 1e-6 (covar_weights [N, K], init mean 1.0); a = softmax_K(BN(x W));
    C = cluster_weights2 [1, N, K], or coupling_factor * cluster_weights when --fv_couple_weights.
    fv1[d,k] = (sum_i a x_d - a_sum C) / sigma, L2 over d, flatten, L2.
    fv2[d,k] = (a_sum C^2 + sum_i a x_d^2 - 2 C sum_i a x_d) / sigma^2 - a_sum, then flatten and L2
    (twice; the reference has no per-cluster normalisation of fv2)."""
    batch, count, size = x.shape
    cluster_weights = common.as_float(weights[scope + "cluster_weights"])
    sigma = np.square(common.as_float(weights[scope + "covar_weights"])) + 1e-6
    activation = x.reshape(-1, size) @ cluster_weights
    if add_batch_norm:
        activation = common.batch_norm(activation, weights, scope + "cluster_bn", bn_training)
    else:
        activation = activation + common.as_float(weights[scope + "cluster_biases"])
    activation = common.softmax(activation).reshape(batch, count, -1)
    a_sum = np.sum(activation, axis=1, keepdims=True)  # [B, 1, K]
    if couple_weights:
        centers = coupling_factor * cluster_weights[None]
    else:
        centers = common.as_float(weights[scope + "cluster_weights2"])
    first = np.einsum("bnk,bnd->bdk", activation, x)  # [B, N, K]
    second = np.einsum("bnk,bnd->bdk", activation, np.square(x))
    fv2 = a_sum * np.square(centers) + second - 2.0 * first * centers
    fv2 = fv2 / np.square(sigma) - a_sum
    fv2 = common.l2_normalize(common.l2_normalize(fv2.reshape(batch, -1), axis=1), axis=1)
    fv1 = (first - a_sum * centers) / sigma
    fv1 = common.l2_normalize(fv1, axis=1)
    fv1 = common.l2_normalize(fv1.reshape(batch, -1), axis=1)
    return np.concatenate([fv1, fv2], axis=1)


def _soft_assignment(x, weights, scope, bn_scope, bn_training, add_batch_norm, bias_name):
    batch, count, size = x.shape
    activation = x.reshape(-1, size) @ common.as_float(weights[scope + "cluster_weights"])
    if add_batch_norm:
        activation = common.batch_norm(activation, weights, scope + bn_scope, bn_training)
    else:
        activation = activation + common.as_float(weights[scope + bias_name])
    return common.softmax(activation).reshape(batch, count, -1)


def soft_dbof(x, weights, scope, bn_training=False, max_pool=False, add_batch_norm=True):
    """SoftDBoF.forward: a = softmax_K(BN(x W)); L2(sum over frames of a); with --softdbof_maxpool
    also concat L2(max over frames of a). -> [B, K] (or [B, 2K])."""
    activation = _soft_assignment(x, weights, scope, "cluster_bn", bn_training, add_batch_norm,
                                  "cluster_biases")
    pooled = common.l2_normalize(np.sum(activation, axis=1), axis=1)
    if max_pool:
        pooled = np.concatenate(
            [pooled, common.l2_normalize(np.max(activation, axis=1), axis=1)], axis=1)
    return pooled


def gated_dbof(x, weights, scope, bn_training=False, add_batch_norm=True):
    """GatedDBoF.forward: a = softmax_K(BN(x W)); s = sum over frames of a; m = L2(max over frames);
    g = sigmoid(BN_2(m @ dim_red [K, N] @ cluster_weights_2 [N, K])); out = L2(g * s)."""
    activation = _soft_assignment(x, weights, scope, "cluster_bn", bn_training, add_batch_norm,
                                  "cluster_biases")
    summed = np.sum(activation, axis=1)
    maxed = common.l2_normalize(np.max(activation, axis=1), axis=1)
    gates = (maxed @ common.as_float(weights[scope + "dim_red"])
             @ common.as_float(weights[scope + "cluster_weights_2"]))
    if add_batch_norm:
        gates = common.batch_norm(gates, weights, scope + "cluster_bn_2", bn_training)
    else:
        gates = gates + common.as_float(weights[scope + "cluster_biases_2"])
    return common.l2_normalize(common.sigmoid(gates) * summed, axis=1)


# ----------------------------------------------------------------------------- classifier


def moe_model(x, weights, num_mixtures=2, moe_prob_gating=False, bn_training=False,
              gating_input="prob", low_rank_gating=-1, remove_diag=False):
    """Willow video_level_models.MoeModel: the starter's MoE (l2 = --moe_l2, default 1e-8), then
    with --moe_prob_gating: p = p * sigmoid(BN(p @ gating_prob_weights [V, V])) (gating_prob_bn);
    --moe_prob_gating_input other than 'prob' gates from the input: x @ gating_prob_weights [D, V].
    --moe_low_rank_gating r != -1: gate activations = (x @ gates1/weights [D, r]) @ gates2/weights
    [r, V(M+1)]. --gating_remove_diag: the gate pre-activation loses diag(gating_prob_weights) * p.
    """
    if low_rank_gating == -1:
        probabilities = starter_numpy.moe_model(x, weights, num_mixtures)
    else:
        x = common.as_float(x)
        gate_activations = common.dense(common.dense(x, weights, "gates1", bias=False), weights,
                                        "gates2", bias=False)
        experts = common.sigmoid(common.dense(x, weights, "experts").reshape(-1, num_mixtures))
        gating = common.softmax(gate_activations.reshape(-1, num_mixtures + 1))
        probabilities = np.sum(gating[:, :num_mixtures] * experts, axis=1).reshape(x.shape[0], -1)
    if moe_prob_gating:
        gating_weights = common.as_float(weights["gating_prob_weights"])
        source = probabilities if gating_input == "prob" else common.as_float(x)
        gates = source @ gating_weights
        if remove_diag:
            gates = gates - np.diagonal(gating_weights) * probabilities
        gates = common.batch_norm(gates, weights, "gating_prob_bn", bn_training)
        probabilities = probabilities * common.sigmoid(gates)
    return probabilities


def _moe(x, weights, num_mixtures, moe_prob_gating, bn_training, moe_options):
    """moe_model with the model functions' keyword options (moe_prob_gating_input,
    moe_low_rank_gating, gating_remove_diag: Willow's flag names)."""
    options = dict(moe_options or {})
    return moe_model(x, weights, num_mixtures, moe_prob_gating, bn_training,
                     gating_input=options.pop("moe_prob_gating_input", "prob"),
                     low_rank_gating=options.pop("moe_low_rank_gating", -1),
                     remove_diag=options.pop("gating_remove_diag", False), **options)


# ----------------------------------------------------------------------------- models


def _input_rows(frames, frame_index, weights, add_batch_norm, bn_training):
    """Shared head of the *ModelLF: sample, rows [B*n, 1152], input_bn (when add_batch_norm)."""
    sampled = common.maybe_sample(frames, frame_index)
    batch, count, size = sampled.shape
    rows = sampled.reshape(-1, size)
    if add_batch_norm:
        rows = common.batch_norm(rows, weights, "input_bn", bn_training)
    return rows.reshape(batch, count, size)


def _hidden_and_gating(pooled, weights, relu, gating, add_batch_norm, bn_training,
                       remove_diag=False):
    """hidden1_weights; BN (hidden1_bn) only when add_batch_norm AND relu, else + hidden1_biases;
    ReLU6 when relu; context gating x * sigmoid(BN(x @ gating_weights_2)) when gating, whose
    pre-activation loses diag(gating_weights_2) * x with remove_diag (NetVLADModelLF only)."""
    activation = pooled @ common.as_float(weights["hidden1_weights"])
    if add_batch_norm and relu:
        activation = common.batch_norm(activation, weights, "hidden1_bn", bn_training)
    else:
        activation = activation + common.as_float(weights["hidden1_biases"])
    if relu:
        activation = common.relu6(activation)
    if gating:
        gating_weights = common.as_float(weights["gating_weights_2"])
        gates = activation @ gating_weights
        if remove_diag:
            gates = gates - np.diagonal(gating_weights) * activation
        if add_batch_norm:
            gates = common.batch_norm(gates, weights, "gating_bn", bn_training)
        else:
            gates = gates + common.as_float(weights["gating_biases"])
        activation = activation * common.sigmoid(gates)
    return activation


def netvlad_model_lf(frames, num_frames, weights, frame_index=None, lightvlad=False,
                     netvlad_relu=True, gating=False, add_batch_norm=True, moe_prob_gating=False,
                     num_mixtures=2, bn_training=False, vlagd=False, gating_remove_diag=False,
                     **moe_options):
    """NetVLADModelLF.create_model (flag defaults: --netvlad_relu=True, --gating=False,
    --lightvlad=False, --netvlad_add_batch_norm=True, --moe_prob_gating=False; the README's Gated
    NetVLAD sets relu False, gating True, prob gating True).

    sample -> input_bn over the 1152-d rows -> video_VLAD/ NetVLAD(1024, K) on [:1024] and
    audio_VLAD/ NetVLAD(128, K/2) on [1024:] (LightVLAD with --lightvlad) -> concat [1024K + 64K]
    -> hidden1_weights [.., H] (+ hidden1_biases, or hidden1_bn when BN and relu) -> ReLU6 (relu)
    -> context gating (gating_weights_2 [H, H], gating_bn) -> MoeModel (+ prob gating).
    --vlagd (NetVLAGD) applies when --lightvlad is off; --gating_remove_diag reaches the context
    gating and the MoE; moe_options: moe_prob_gating_input, moe_low_rank_gating."""
    del num_frames  # drives only the sampling
    x = _input_rows(frames, frame_index, weights, add_batch_norm, bn_training)
    pool = lightvlad_pool if lightvlad else netvlagd if vlagd else netvlad_pool
    pooled = np.concatenate([
        pool(x[:, :, :VIDEO_SIZE], weights, "video_VLAD/", bn_training, add_batch_norm),
        pool(x[:, :, VIDEO_SIZE:], weights, "audio_VLAD/", bn_training, add_batch_norm)], axis=1)
    activation = _hidden_and_gating(pooled, weights, netvlad_relu, gating, add_batch_norm,
                                    bn_training, gating_remove_diag)
    return _moe(activation, weights, num_mixtures, moe_prob_gating, bn_training,
                dict(moe_options, gating_remove_diag=gating_remove_diag))


netvlad_pool = netvlad
lightvlad_pool = lightvlad


def netfv_model_lf(frames, num_frames, weights, frame_index=None, fv_relu=True, gating=False,
                   fv_couple_weights=True, fv_coupling_factor=0.01, add_batch_norm=True,
                   moe_prob_gating=False, num_mixtures=2, bn_training=False, **moe_options):
    """NetFVModelLF.create_model: as NetVLADModelLF with video_FV/ NetFV(1024, K) and audio_FV/
    NetFV(128, K/2) (K = --fv_cluster_size, H = --fv_hidden_size); the FV output is 2*N*K per
    stream; BN switch is --netvlad_add_batch_norm; relu --fv_relu; gating --gating."""
    del num_frames
    x = _input_rows(frames, frame_index, weights, add_batch_norm, bn_training)
    pooled = np.concatenate([
        netfv(x[:, :, :VIDEO_SIZE], weights, "video_FV/", bn_training, fv_couple_weights,
              fv_coupling_factor, add_batch_norm),
        netfv(x[:, :, VIDEO_SIZE:], weights, "audio_FV/", bn_training, fv_couple_weights,
              fv_coupling_factor, add_batch_norm)], axis=1)
    activation = _hidden_and_gating(pooled, weights, fv_relu, gating, add_batch_norm, bn_training)
    return _moe(activation, weights, num_mixtures, moe_prob_gating, bn_training, moe_options)


def gated_dbof_model_lf(frames, num_frames, weights, frame_index=None, dbof_relu=True,
                        fc_dimred=True, softdbof_maxpool=False, add_batch_norm=True,
                        moe_prob_gating=False, num_mixtures=2, bn_training=False,
                        **moe_options):
    """GatedDbofModelLF.create_model: video_DBOF/ GatedDBoF(1024, K) + audio_DBOF/ SoftDBoF(128,
    K/8, --softdbof_maxpool) -> concat -> (--fc_dimred) hidden1_weights [.., H] with
    hidden1_bn (BN and --dbof_relu) or + hidden1_biases, ReLU6 when dbof_relu -> MoeModel.
    No context gating in this model (--gating is not read)."""
    del num_frames
    x = _input_rows(frames, frame_index, weights, add_batch_norm, bn_training)
    pooled = np.concatenate([
        gated_dbof(x[:, :, :VIDEO_SIZE], weights, "video_DBOF/", bn_training, add_batch_norm),
        soft_dbof(x[:, :, VIDEO_SIZE:], weights, "audio_DBOF/", bn_training, softdbof_maxpool,
                  add_batch_norm)], axis=1)
    activation = (_hidden_and_gating(pooled, weights, dbof_relu, False, add_batch_norm,
                                     bn_training) if fc_dimred else pooled)
    return _moe(activation, weights, num_mixtures, moe_prob_gating, bn_training, moe_options)


def soft_dbof_model_lf(frames, num_frames, weights, frame_index=None, dbof_relu=True,
                       fc_dimred=True, softdbof_maxpool=False, add_batch_norm=True,
                       moe_prob_gating=False, num_mixtures=2, bn_training=False,
                       **moe_options):
    """SoftDbofModelLF.create_model: video_DBOF/ SoftDBoF(1024, K) + audio_DBOF/ SoftDBoF(128, K/8)
    -> concat -> hidden layer as GatedDbofModelLF -> MoeModel."""
    del num_frames
    x = _input_rows(frames, frame_index, weights, add_batch_norm, bn_training)
    pooled = np.concatenate([
        soft_dbof(x[:, :, :VIDEO_SIZE], weights, "video_DBOF/", bn_training, softdbof_maxpool,
                  add_batch_norm),
        soft_dbof(x[:, :, VIDEO_SIZE:], weights, "audio_DBOF/", bn_training, softdbof_maxpool,
                  add_batch_norm)], axis=1)
    activation = (_hidden_and_gating(pooled, weights, dbof_relu, False, add_batch_norm,
                                     bn_training) if fc_dimred else pooled)
    return _moe(activation, weights, num_mixtures, moe_prob_gating, bn_training, moe_options)


def _recurrent_input(frames, num_frames, frame_index, backward):
    """LstmModel/GruModel: --lstm_random_sequence / --gru_random_sequence take SampleRandomFrames
    (despite the name: `iterations` frames with replacement, unordered); sequence_length stays the
    ORIGINAL num_frames. --*_backward reverses the first num_frames frames."""
    frames = common.maybe_sample(frames, frame_index)
    if backward:
        frames = frames.copy()
        for b, length in enumerate(np.asarray(num_frames).reshape(-1)):
            frames[b, :length] = frames[b, :length][::-1]
    return frames


def lstm_model(frames, num_frames, weights, frame_index=None, lstm_cells=1024, lstm_layers=2,
               lstm_backward=False, moe_prob_gating=False, num_mixtures=2, bn_training=False,
               **moe_options):
    """Willow LstmModel: BasicLSTMCell(lstm_cells, forget_bias=1.0, state_is_tuple=False) stacked
    in MultiRNNCell(state_is_tuple=False) under variable scope RNN; the classifier reads the WHOLE
    final state [c_0, h_0, c_1, h_1, ...] (2 * layers * cells = 4096 at the defaults).
    Variables RNN/rnn/multi_rnn_cell/cell_<i>/basic_lstm_cell/{kernel,bias}."""
    x = _recurrent_input(frames, num_frames, frame_index, lstm_backward)
    layers = starter_numpy.lstm_layers(weights, "RNN/rnn/", lstm_layers, lstm_cells)
    states = starter_numpy.run_dynamic_rnn(x, num_frames, layers)
    state = np.concatenate([part for c_h in states for part in c_h], axis=1)
    return _moe(state, weights, num_mixtures, moe_prob_gating, bn_training, moe_options)


def gru_layers_of(weights, prefix, num_layers, units):
    """(step, init) pairs (starter_numpy.run_dynamic_rnn) of TF1 GRUCell layers whose variables are
    <prefix>multi_rnn_cell/cell_<i>/gru_cell/{gates,candidate}/{kernel,bias}."""
    def make(index):
        scope = f"{prefix}multi_rnn_cell/cell_{index}/gru_cell/"

        def step(inputs, state):
            h = starter_numpy.gru_cell(inputs, state[0], weights[scope + "gates/kernel"],
                                       weights[scope + "gates/bias"],
                                       weights[scope + "candidate/kernel"],
                                       weights[scope + "candidate/bias"])
            return h, (h,)
        return step, lambda batch: (np.zeros((batch, units)),)
    return [make(index) for index in range(num_layers)]


def gru_model(frames, num_frames, weights, frame_index=None, gru_cells=1024, gru_layers=2,
              gru_backward=False, moe_prob_gating=False, num_mixtures=2, bn_training=False,
              **moe_options):
    """Willow GruModel: GRUCell(gru_cells) x --gru_layers in MultiRNNCell(state_is_tuple=False)
    under scope RNN; the classifier reads [h_0, h_1, ...] (layers * cells; 2400 for the README's
    --gru_cells=1200). Variables RNN/rnn/multi_rnn_cell/cell_<i>/gru_cell/{gates,candidate}/
    {kernel,bias}."""
    x = _recurrent_input(frames, num_frames, frame_index, gru_backward)
    stack = gru_layers_of(weights, "RNN/rnn/", gru_layers, gru_cells)
    states = starter_numpy.run_dynamic_rnn(x, num_frames, stack)
    state = np.concatenate([s[0] for s in states], axis=1)
    return _moe(state, weights, num_mixtures, moe_prob_gating, bn_training, moe_options)


def keras_gru_to_tf1_gru(kernel, recurrent_kernel, bias):
    """Keras GRUCell(reset_after=False) weights -> TF1 GRUCell weights with the same forward pass.

    Keras (reset_after=False): z, r, hh = split columns (z, r, h); z = sigmoid(x Kz + h Rz + bz),
    r = sigmoid(x Kr + h Rr + br), hh = tanh(x Kh + (r*h) Rh + bh), h' = z h + (1 - z) hh.
    TF1: gates kernel [[Kr Kz]; [Rr Rz]] (order r, u=z), candidate kernel [Kh; Rh].
    Returns (gates_kernel, gates_bias, candidate_kernel, candidate_bias). (Keras' default
    reset_after=True applies r after the recurrent matmul: not the TF1 cell.)"""
    kernel, recurrent_kernel, bias = (common.as_float(a) for a in (kernel, recurrent_kernel, bias))
    kz, kr, kh = np.split(kernel, 3, axis=1)
    rz, rr, rh = np.split(recurrent_kernel, 3, axis=1)
    bz, br, bh = np.split(bias.reshape(-1)[:kernel.shape[1]], 3)
    gates_kernel = np.concatenate([np.concatenate([kr, kz], axis=1),
                                   np.concatenate([rr, rz], axis=1)], axis=0)
    return (gates_kernel, np.concatenate([br, bz]), np.concatenate([kh, rh], axis=0), bh)
