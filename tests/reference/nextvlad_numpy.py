"""NeXtVLAD (linrongc/youtube-8m @ 4810b4e7: nextvlad.py, video_level_models.py, train.py) and the
MOD changes (linrongc/solution_youtube8m_v3 @ 7d71bde4: nextvlad.py, parallel_train.py) in numpy.

Input: linrongc's train.py / eval.py do NOT L2-normalise; they reverse the PCA whitening of the rgb
part (reverse_whitening below) and feed [B, 300, 1152] to the model. Weight keys are the variable
names below `tower/` (linrongc) or `tower_<i>/` (MOD parallel_train.py); inside a MixNeXtVladModel
branch the pooling scopes are lower case (branch_<n>/video_vlad/), in NeXtVLADModel upper case
(video_VLAD/).
"""
import numpy as np

from reference import common
from reference import starter_numpy

RGB_SIZE = 1024
DEQUANTIZE_OFFSET = 4.0 / 512.0  # the +range/512 term of utils.Dequantize
EIGENVALUE_OFFSET = 1e-4


def load_eigenvalues(path):
    """yt8m_pca/eigenvals.npy of the reference: float32 array of shape (2048, 1), descending."""
    values = np.load(path)
    if values.ndim != 2 or values.shape[1] != 1:
        raise ValueError(f"{path}: expected shape (N, 1), got {values.shape}")
    return values


def reverse_whitening(frames, eigenvalues, rgb_size=RGB_SIZE):
    """train.py / eval.py (linrongc and MOD parallel_train.py / parallel_eval.py):

        model_input = (raw - offset) * scale
        offset = [4/512] * 1024 + [0] * 128
        scale  = [sqrt(eigenvals[:1024, 0]) + 1e-4] + [1] * 128

    on the dequantized frames, padded frames included (they become -4/512 * scale, not 0).
    `eigenvalues` is the (2048, 1) array; only its first 1024 rows are used."""
    frames = common.as_float(frames)
    eigen = np.sqrt(common.as_float(eigenvalues)[:rgb_size, 0])
    other = frames.shape[-1] - rgb_size
    offset = np.concatenate([np.full(rgb_size, DEQUANTIZE_OFFSET), np.zeros(other)])
    scale = np.concatenate([eigen + EIGENVALUE_OFFSET, np.ones(other)])
    return (frames - offset) * scale


def nextvlad(x, mask, weights, scope, cluster_size, groups, expansion=2, bn_training=False):
    """NeXtVLAD.forward on x [B, T, N] (mask [B, T] or None):

    x' = x @ fully_connected/weights [N, lN] + fully_connected/biases (variance-scaling init);
    attention = sigmoid(x' @ fully_connected_1/weights [lN, G] + fully_connected_1/biases) * mask,
    reshaped [B, T*G, 1]; act = x' rows [B*T, lN] @ cluster_weights [lN, G*K] -> cluster_bn
    (over the G*K channels, padded rows included in training-mode statistics) -> [B, T*G, K]
    -> softmax_K -> * attention; a = sum over T*G of act * cluster_weights2 [1, lN/G, K];
    vlad [B, lN/G, K] = act^T x'_groups - a; L2 over axis 1; flatten [B, lN/G*K]; vlad_bn."""
    x = common.as_float(x)
    batch, frames, _ = x.shape
    expanded = common.dense(x, weights, scope + "fully_connected")  # [B, T, lN]
    wide = expanded.shape[-1]
    width = wide // groups
    attention = common.sigmoid(common.dense(expanded, weights, scope + "fully_connected_1"))
    if mask is not None:
        attention = attention * common.as_float(mask)[:, :, None]
    attention = attention.reshape(batch, frames * groups, 1)
    activation = expanded.reshape(-1, wide) @ common.as_float(weights[scope + "cluster_weights"])
    activation = common.batch_norm(activation, weights, scope + "cluster_bn", bn_training)
    activation = common.softmax(activation.reshape(batch, frames * groups, cluster_size))
    activation = activation * attention
    a_sum = np.sum(activation, axis=1, keepdims=True)  # [B, 1, K]
    a = a_sum * common.as_float(weights[scope + "cluster_weights2"])  # [B, width, K]
    grouped = expanded.reshape(batch, frames * groups, width)
    vlad = np.einsum("bsk,bsd->bdk", activation, grouped) - a
    vlad = common.l2_normalize(vlad, axis=1).reshape(batch, width * cluster_size)
    return common.batch_norm(vlad, weights, scope + "vlad_bn", bn_training)


def logistic_model(x, weights, prefix=""):
    """linrongc video_level_models.LogisticModel: logits = x @ fully_connected/weights +
    fully_connected/biases (variance-scaling init; L2 --l2_penalty on weights AND biases).
    Returns (predictions, logits)."""
    logits = common.dense(x, weights, prefix + "fully_connected")
    return common.sigmoid(logits), logits


def moe_model(x, weights, num_mixtures=4, prefix=""):
    """linrongc video_level_models.MoeModel: the starter's MoE but --moe_num_mixtures defaults to 4
    and the L2 is --l2_penalty (weights only). Returns no logits (MixNeXtVladModel needs them, so a
    mixture of MoE classifiers fails in the reference)."""
    return starter_numpy.moe_model(x, weights, num_mixtures, prefix)


def moe_model_mod(x, weights, num_mixtures=4):
    """MOD video_level_models.MoeModel: gates mix the expert LOGITS, then one sigmoid:
    logits = sum_m softmax(gates)[m] * expert_logit[m]. Returns (predictions, logits)."""
    x = common.as_float(x)
    gating = common.softmax(common.dense(x, weights, "gates", bias=False)
                            .reshape(-1, num_mixtures + 1))
    experts = common.dense(x, weights, "experts").reshape(-1, num_mixtures)
    logits = np.sum(gating[:, :num_mixtures] * experts, axis=1).reshape(x.shape[0], -1)
    return common.sigmoid(logits), logits


def _nextvlad_head(frames, mask, weights, prefix, vlad_scopes, cluster_size, groups, expansion,
                   gating_reduction, classifier, num_mixtures, bn_training):
    del gating_reduction  # read from the gating weights' shapes
    video = nextvlad(frames[:, :, :RGB_SIZE], mask, weights, prefix + vlad_scopes[0],
                     cluster_size, groups, expansion, bn_training)
    audio = nextvlad(frames[:, :, RGB_SIZE:], mask, weights, prefix + vlad_scopes[1],
                     cluster_size // 2, groups // 2, expansion, bn_training)
    vlad = np.concatenate([video, audio], axis=1)  # dropout: identity at inference
    activation = vlad @ common.as_float(weights[prefix + "hidden1_weights"])
    activation = common.batch_norm(activation, weights, prefix + "hidden1_bn", bn_training)
    gates = activation @ common.as_float(weights[prefix + "gating_weights_1"])
    gates = common.relu(common.batch_norm(gates, weights, prefix + "gating_bn", bn_training))
    gates = common.sigmoid(gates @ common.as_float(weights[prefix + "gating_weights_2"]))
    activation = activation * gates
    if classifier == "LogisticModel":
        return logistic_model(activation, weights, prefix)
    if classifier == "MoeModel":
        return moe_model(activation, weights, num_mixtures, prefix), None
    raise ValueError(f"unknown video_level_classifier_model {classifier!r}")


def nextvlad_model(frames, num_frames, weights, cluster_size=64, groups=8, expansion=2,
                   gating_reduction=8, video_level_classifier_model="MoeModel", num_mixtures=4,
                   use_mask=True, bn_training=False):
    """nextvlad.NeXtVLADModel.create_model (flag defaults: --nextvlad_cluster_size=64,
    --nextvlad_hidden_size=1024, --groups=8, --expansion=2, --gating_reduction=8, --drop_rate=0.5,
    --video_level_classifier_model=MoeModel from frame_level_models.py; the scripts pass
    LogisticModel).

    mask = tf.sequence_mask(num_frames, 300) (the reference hard-codes 300, so T must be 300 there;
    MOD sets mask None with --segment_labels: use_mask=False) -> video_VLAD/ NeXtVLAD(1024, K, G)
    on [:1024] + audio_VLAD/ NeXtVLAD(128, K/2, G/2) on [1024:] -> concat -> dropout ->
    hidden1_weights [.., H] (no bias) -> hidden1_bn -> SE gating: relu(gating_bn(x @
    gating_weights_1 [H, H/r])) @ gating_weights_2 [H/r, H] -> sigmoid -> x * gates -> classifier.
    Returns (predictions, logits or None)."""
    frames = common.as_float(frames)
    mask = common.sequence_mask(num_frames, frames.shape[1]) if use_mask else None
    return _nextvlad_head(frames, mask, weights, "", ("video_VLAD/", "audio_VLAD/"), cluster_size,
                          groups, expansion, gating_reduction, video_level_classifier_model,
                          num_mixtures, bn_training)


def mix_nextvlad_model(frames, num_frames, weights, mix_number=3, cluster_size=64, groups=8,
                       expansion=2, gating_reduction=8, use_mask=True, bn_training=False):
    """nextvlad.MixNeXtVladModel.create_model (LogisticModel classifier: MoeModel has no logits).

    Gate: mean over ALL T frames of the model input (padded frames included; after reverse
    whitening they are not zero) -> mix_weights_bn -> mix_weights/weights [1152, m] +
    mix_weights/biases [m] (no L2) -> softmax. Branch n (scope branch_<n>/) is a full NeXtVLAD model
    with lower-case pooling scopes video_vlad/, audio_vlad/. mix_logit = sum_n w_n logit_n;
    prediction sigmoid(mix_logit). Returns (predictions, mix_logit, branch_logits [B, m, V],
    branch_predictions [B, m, V], mix_weights [B, m])."""
    frames = common.as_float(frames)
    mask = common.sequence_mask(num_frames, frames.shape[1]) if use_mask else None
    mean = common.batch_norm(np.mean(frames, axis=1), weights, "mix_weights_bn", bn_training)
    mix_weights = common.softmax(common.dense(mean, weights, "mix_weights"))
    branch_predictions, branch_logits = [], []
    for n in range(mix_number):
        predictions, logits = _nextvlad_head(
            frames, mask, weights, f"branch_{n}/", ("video_vlad/", "audio_vlad/"), cluster_size,
            groups, expansion, gating_reduction, "LogisticModel", 0, bn_training)
        branch_predictions.append(predictions)
        branch_logits.append(logits)
    branch_logits = np.stack(branch_logits, axis=1)
    mix_logit = np.sum(mix_weights[:, :, None] * branch_logits, axis=1)
    return (common.sigmoid(mix_logit), mix_logit, branch_logits,
            np.stack(branch_predictions, axis=1), mix_weights)


KL_EPSILON = 1e-8
CROSS_ENTROPY_EPSILON = 1e-8  # linrongc/MOD losses.CrossEntropyLoss (the starter uses 1e-5)


def distillation_loss(mix_logit, branch_logits, temperature, lam, epsilon=KL_EPSILON):
    """MixNeXtVladModel (and MOD parallel_train.py's root with final_temperature/final_lambda):
    q = softmax(mix_logit / T) across classes, p_n = softmax(branch_logit_n / T);
    KL_n = sum_c q (log(q + 1e-8) - log(p_n + 1e-8)); loss = lam * mean_batch(sum_n KL_n).
    No stop-gradient on q. train.py adds it as result['regularization_loss'], i.e. multiplied by
    --regularization_penalty with the slim L2 terms."""
    q = common.softmax(common.as_float(mix_logit) / temperature, axis=-1)[:, None, :]
    p = common.softmax(common.as_float(branch_logits) / temperature, axis=-1)
    kl = np.sum(q * (np.log(q + epsilon) - np.log(p + epsilon)), axis=-1)  # [B, m]
    return float(lam * np.mean(np.sum(kl, axis=-1)))


def cross_entropy_loss(predictions, labels, label_weights=None, epsilon=CROSS_ENTROPY_EPSILON):
    """linrongc / MOD losses.CrossEntropyLoss: the starter's formula with epsilon 1e-8 (MOD adds the
    starter's label_weights)."""
    return starter_numpy.cross_entropy_loss(predictions, labels, label_weights, epsilon)


def mixture_label_loss(predictions, branch_predictions, labels, label_weights=None):
    """linrongc train.py: label loss of the mixture plus, for result['aux_predictions'], the same
    loss of every branch: CE(p) + sum_n CE(p_n)."""
    total = cross_entropy_loss(predictions, labels, label_weights)
    for n in range(branch_predictions.shape[1]):
        total += cross_entropy_loss(branch_predictions[:, n], labels, label_weights)
    return total
