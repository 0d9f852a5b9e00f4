"""The reference models' variables and shapes at given flags: one function per model returning an
ordered {variable name: shape}, names below the model scope as in the numpy modules.

Every slim.batch_norm(center=True, scale=True) scope holds beta and gamma (trainable) and
moving_mean and moving_variance (not trainable); `count(shapes)` sums the trainable ones,
`count(shapes, trainable_only=False)` all of them. Flag defaults are the reference's own.

Sources: google/youtube-8m @ e6f6bf68 (video_level_models.py, frame_level_models.py);
antoine77340/Youtube-8M-WILLOW @ 0d2a00cc (frame_level_models.py, video_level_models.py);
linrongc/youtube-8m @ 4810b4e7 (nextvlad.py, video_level_models.py);
linrongc/solution_youtube8m_v3 @ 7d71bde4 (parallel_train.py);
boliu61/youtube-8m @ a9c3f68d (frame_level_models.py NetVLADModelLF, video_level_models.py).
"""
import numpy as np

NON_TRAINABLE_SUFFIXES = ("/moving_mean", "/moving_variance")
STARTER_VOCAB = 3862
WILLOW_2017_VOCAB = 4716  # Willow's readers.py default (the 2017 dataset)


def is_trainable(name):
    return not name.endswith(NON_TRAINABLE_SUFFIXES)


def count(shapes, trainable_only=True):
    return int(sum(int(np.prod(shape)) for name, shape in shapes.items()
                   if is_trainable(name) or not trainable_only))


def _bn(scope, channels):
    return {f"{scope}/{part}": (channels,)
            for part in ("beta", "gamma", "moving_mean", "moving_variance")}


# ----------------------------------------------------------------------------- starter


def logistic_model(input_size=1024, vocab_size=STARTER_VOCAB, scope="fully_connected"):
    """video_level_models.LogisticModel (--feature_sizes default 1024: mean_rgb only)."""
    return {f"{scope}/weights": (input_size, vocab_size), f"{scope}/biases": (vocab_size,)}


def moe_model(input_size=1024, vocab_size=STARTER_VOCAB, num_mixtures=2, prefix=""):
    """video_level_models.MoeModel (--moe_num_mixtures default 2)."""
    return {f"{prefix}gates/weights": (input_size, vocab_size * (num_mixtures + 1)),
            f"{prefix}experts/weights": (input_size, vocab_size * num_mixtures),
            f"{prefix}experts/biases": (vocab_size * num_mixtures,)}


def _classifier(classifier, input_size, vocab_size, num_mixtures):
    if classifier == "MoeModel":
        return moe_model(input_size, vocab_size, num_mixtures)
    if classifier == "LogisticModel":
        return logistic_model(input_size, vocab_size)
    raise ValueError(f"unknown video_level_classifier_model {classifier!r}")


def frame_level_logistic_model(feature_size=1152, vocab_size=STARTER_VOCAB):
    return logistic_model(feature_size, vocab_size)


def dbof_model(feature_size=1152, cluster_size=8192, hidden_size=1024, add_batch_norm=True,
               video_level_classifier_model="MoeModel", num_mixtures=2,
               vocab_size=STARTER_VOCAB):
    """frame_level_models.DbofModel: one DBoF over the concatenated frames."""
    shapes = {}
    if add_batch_norm:
        shapes.update(_bn("input_bn", feature_size))
    shapes["cluster_weights"] = (feature_size, cluster_size)
    shapes.update(_bn("cluster_bn", cluster_size) if add_batch_norm
                  else {"cluster_biases": (cluster_size,)})
    shapes["hidden1_weights"] = (cluster_size, hidden_size)
    shapes.update(_bn("hidden1_bn", hidden_size) if add_batch_norm
                  else {"hidden1_biases": (hidden_size,)})
    shapes.update(_classifier(video_level_classifier_model, hidden_size, vocab_size,
                              num_mixtures))
    return shapes


def _lstm_stack(prefix, input_size, cells, layers):
    shapes = {}
    for index in range(layers):
        scope = f"{prefix}multi_rnn_cell/cell_{index}/basic_lstm_cell"
        shapes[f"{scope}/kernel"] = (input_size + cells, 4 * cells)
        shapes[f"{scope}/bias"] = (4 * cells,)
        input_size = cells
    return shapes


def lstm_model(feature_size=1152, lstm_cells=1024, lstm_layers=2,
               video_level_classifier_model="MoeModel", num_mixtures=2,
               vocab_size=STARTER_VOCAB):
    """frame_level_models.LstmModel: classifier on the last layer's h (lstm_cells wide)."""
    shapes = _lstm_stack("rnn/", feature_size, lstm_cells, lstm_layers)
    shapes.update(_classifier(video_level_classifier_model, lstm_cells, vocab_size, num_mixtures))
    return shapes


# ----------------------------------------------------------------------------- Willow


def _willow_moe(input_size, vocab_size, num_mixtures, moe_prob_gating, low_rank_gating=-1,
                gating_input="prob"):
    """Willow's MoeModel: --moe_low_rank_gating r splits gates into gates1 [D, r], gates2
    [r, V(M+1)]; --moe_prob_gating_input other than 'prob' gives gating_prob_weights [D, V]."""
    shapes = moe_model(input_size, vocab_size, num_mixtures)
    if low_rank_gating != -1:
        del shapes["gates/weights"]
        shapes = {"gates1/weights": (input_size, low_rank_gating),
                  "gates2/weights": (low_rank_gating, vocab_size * (num_mixtures + 1)), **shapes}
    if moe_prob_gating:
        rows = vocab_size if gating_input == "prob" else input_size
        shapes["gating_prob_weights"] = (rows, vocab_size)
        shapes.update(_bn("gating_prob_bn", vocab_size))
    return shapes


def _willow_hidden(input_size, hidden_size, relu, gating):
    """hidden1_bn only with relu (and batch norm), else hidden1_biases; context gating."""
    shapes = {"hidden1_weights": (input_size, hidden_size)}
    shapes.update(_bn("hidden1_bn", hidden_size) if relu else {"hidden1_biases": (hidden_size,)})
    if gating:
        shapes["gating_weights_2"] = (hidden_size, hidden_size)
        shapes.update(_bn("gating_bn", hidden_size))
    return shapes


def _require_batch_norm(add_batch_norm):
    if not add_batch_norm:
        # NetVLAD/LightVLAD reference `cluster_size` (undefined in forward: NameError); NetFV and
        # the DBoF variants call tf.random_normal(stddev=...) without a shape as an initializer.
        raise NotImplementedError("the Willow graph cannot be built without batch norm")


def netvlad_model_lf(cluster_size=64, hidden_size=1024, lightvlad=False, netvlad_relu=True,
                     gating=False, add_batch_norm=True, moe_prob_gating=False, num_mixtures=2,
                     vocab_size=STARTER_VOCAB, video_size=1024, audio_size=128, vlagd=False,
                     **moe_options):
    """NetVLADModelLF: video_VLAD (K clusters) + audio_VLAD (K/2), LightVLAD without centroids,
    NetVLAGD (--vlagd, when not --lightvlad) with gate_weights [1, K, N] instead."""
    _require_batch_norm(add_batch_norm)
    shapes = dict(_bn("input_bn", video_size + audio_size))
    vlad_dim = 0
    for scope, size, clusters in (("video_VLAD", video_size, cluster_size),
                                  ("audio_VLAD", audio_size, cluster_size // 2)):
        shapes[f"{scope}/cluster_weights"] = (size, clusters)
        shapes.update(_bn(f"{scope}/cluster_bn", clusters))
        if vlagd and not lightvlad:
            shapes[f"{scope}/gate_weights"] = (1, clusters, size)
        elif not lightvlad:
            shapes[f"{scope}/cluster_weights2"] = (1, size, clusters)
        vlad_dim += size * clusters
    shapes.update(_willow_hidden(vlad_dim, hidden_size, netvlad_relu, gating))
    shapes.update(_willow_moe(hidden_size, vocab_size, num_mixtures, moe_prob_gating,
                              **moe_options))
    return shapes


def netfv_model_lf(fv_cluster_size=64, fv_hidden_size=2048, fv_relu=True, gating=False,
                   fv_couple_weights=True, add_batch_norm=True, moe_prob_gating=False,
                   num_mixtures=2, vocab_size=STARTER_VOCAB, video_size=1024, audio_size=128,
                   **moe_options):
    """NetFVModelLF: video_FV (K) + audio_FV (K/2); each FV is 2*N*K wide."""
    _require_batch_norm(add_batch_norm)
    shapes = dict(_bn("input_bn", video_size + audio_size))
    fv_dim = 0
    for scope, size, clusters in (("video_FV", video_size, fv_cluster_size),
                                  ("audio_FV", audio_size, fv_cluster_size // 2)):
        shapes[f"{scope}/cluster_weights"] = (size, clusters)
        shapes[f"{scope}/covar_weights"] = (size, clusters)
        shapes.update(_bn(f"{scope}/cluster_bn", clusters))
        if not fv_couple_weights:
            shapes[f"{scope}/cluster_weights2"] = (1, size, clusters)
        fv_dim += 2 * size * clusters
    shapes.update(_willow_hidden(fv_dim, fv_hidden_size, fv_relu, gating))
    shapes.update(_willow_moe(fv_hidden_size, vocab_size, num_mixtures, moe_prob_gating,
                              **moe_options))
    return shapes


def _soft_dbof(scope, size, clusters):
    shapes = {f"{scope}/cluster_weights": (size, clusters)}
    shapes.update(_bn(f"{scope}/cluster_bn", clusters))
    return shapes


def gated_dbof_model_lf(dbof_cluster_size=16384, dbof_hidden_size=2048, dbof_relu=True,
                        fc_dimred=True, softdbof_maxpool=False, add_batch_norm=True,
                        moe_prob_gating=False, num_mixtures=2, vocab_size=STARTER_VOCAB,
                        video_size=1024, audio_size=128, **moe_options):
    """GatedDbofModelLF: video_DBOF GatedDBoF (K) + audio_DBOF SoftDBoF (K/8)."""
    _require_batch_norm(add_batch_norm)
    clusters, audio_clusters = dbof_cluster_size, dbof_cluster_size // 8
    shapes = dict(_bn("input_bn", video_size + audio_size))
    shapes.update(_soft_dbof("video_DBOF", video_size, clusters))
    shapes["video_DBOF/dim_red"] = (clusters, video_size)
    shapes["video_DBOF/cluster_weights_2"] = (video_size, clusters)
    shapes.update(_bn("video_DBOF/cluster_bn_2", clusters))
    shapes.update(_soft_dbof("audio_DBOF", audio_size, audio_clusters))
    dim = clusters + audio_clusters * (2 if softdbof_maxpool else 1)
    if fc_dimred:
        shapes.update(_willow_hidden(dim, dbof_hidden_size, dbof_relu, False))
        dim = dbof_hidden_size
    shapes.update(_willow_moe(dim, vocab_size, num_mixtures, moe_prob_gating, **moe_options))
    return shapes


def soft_dbof_model_lf(dbof_cluster_size=16384, dbof_hidden_size=2048, dbof_relu=True,
                       fc_dimred=True, softdbof_maxpool=False, add_batch_norm=True,
                       moe_prob_gating=False, num_mixtures=2, vocab_size=STARTER_VOCAB,
                       video_size=1024, audio_size=128, **moe_options):
    """SoftDbofModelLF: video_DBOF SoftDBoF (K) + audio_DBOF SoftDBoF (K/8)."""
    _require_batch_norm(add_batch_norm)
    clusters, audio_clusters = dbof_cluster_size, dbof_cluster_size // 8
    shapes = dict(_bn("input_bn", video_size + audio_size))
    shapes.update(_soft_dbof("video_DBOF", video_size, clusters))
    shapes.update(_soft_dbof("audio_DBOF", audio_size, audio_clusters))
    dim = (clusters + audio_clusters) * (2 if softdbof_maxpool else 1)
    if fc_dimred:
        shapes.update(_willow_hidden(dim, dbof_hidden_size, dbof_relu, False))
        dim = dbof_hidden_size
    shapes.update(_willow_moe(dim, vocab_size, num_mixtures, moe_prob_gating, **moe_options))
    return shapes


def willow_lstm_model(feature_size=1152, lstm_cells=1024, lstm_layers=2, moe_prob_gating=False,
                      num_mixtures=2, vocab_size=STARTER_VOCAB, **moe_options):
    """Willow LstmModel: the MoE reads the whole state [c, h] of every layer."""
    shapes = _lstm_stack("RNN/rnn/", feature_size, lstm_cells, lstm_layers)
    shapes.update(_willow_moe(2 * lstm_layers * lstm_cells, vocab_size, num_mixtures,
                              moe_prob_gating, **moe_options))
    return shapes


def gru_model(feature_size=1152, gru_cells=1024, gru_layers=2, moe_prob_gating=False,
              num_mixtures=2, vocab_size=STARTER_VOCAB, **moe_options):
    """Willow GruModel: GRUCell stack, the MoE reads [h_0, ..., h_{L-1}]."""
    shapes = {}
    size = feature_size
    for index in range(gru_layers):
        scope = f"RNN/rnn/multi_rnn_cell/cell_{index}/gru_cell"
        shapes[f"{scope}/gates/kernel"] = (size + gru_cells, 2 * gru_cells)
        shapes[f"{scope}/gates/bias"] = (2 * gru_cells,)
        shapes[f"{scope}/candidate/kernel"] = (size + gru_cells, gru_cells)
        shapes[f"{scope}/candidate/bias"] = (gru_cells,)
        size = gru_cells
    shapes.update(_willow_moe(gru_layers * gru_cells, vocab_size, num_mixtures, moe_prob_gating,
                              **moe_options))
    return shapes


# The README command lines of Willow's seven models (flags that change variables only).
WILLOW_README_CONFIGS = {
    "gated_netvlad": (netvlad_model_lf, dict(cluster_size=256, hidden_size=1024,
                                             netvlad_relu=False, gating=True,
                                             moe_prob_gating=True)),
    "gated_netfv": (netfv_model_lf, dict(fv_cluster_size=128, fv_hidden_size=1024, fv_relu=False,
                                         gating=True, moe_prob_gating=True,
                                         fv_couple_weights=False)),
    "gated_soft_dbow": (gated_dbof_model_lf, dict(dbof_cluster_size=4096, dbof_hidden_size=1024,
                                                  dbof_relu=False)),
    "soft_dbow": (soft_dbof_model_lf, dict(dbof_cluster_size=8000, dbof_hidden_size=1024,
                                           dbof_relu=False)),
    "gated_netrvlad": (netvlad_model_lf, dict(cluster_size=256, hidden_size=1024,
                                              netvlad_relu=False, gating=True,
                                              moe_prob_gating=True, lightvlad=True)),
    "gru": (gru_model, dict(gru_cells=1200)),
    "lstm": (willow_lstm_model, dict()),
}


# ----------------------------------------------------------------------------- linrongc / MOD


def _nextvlad(scope, size, clusters, groups, expansion):
    wide = expansion * size
    width = wide // groups
    shapes = {f"{scope}/fully_connected/weights": (size, wide),
              f"{scope}/fully_connected/biases": (wide,),
              f"{scope}/fully_connected_1/weights": (wide, groups),
              f"{scope}/fully_connected_1/biases": (groups,),
              f"{scope}/cluster_weights": (wide, groups * clusters)}
    shapes.update(_bn(f"{scope}/cluster_bn", groups * clusters))
    shapes[f"{scope}/cluster_weights2"] = (1, width, clusters)
    shapes.update(_bn(f"{scope}/vlad_bn", width * clusters))
    return shapes, width * clusters


def nextvlad_model(nextvlad_cluster_size=64, nextvlad_hidden_size=1024, groups=8, expansion=2,
                   gating_reduction=8, video_level_classifier_model="MoeModel", num_mixtures=4,
                   vocab_size=STARTER_VOCAB, prefix="", vlad_scopes=("video_VLAD", "audio_VLAD"),
                   video_size=1024, audio_size=128):
    """nextvlad.NeXtVLADModel (linrongc flag defaults; the scripts use K=128, H=2048,
    LogisticModel).
    The audio stream has K/2 clusters and G/2 groups."""
    shapes = {}
    video, video_dim = _nextvlad(prefix + vlad_scopes[0], video_size, nextvlad_cluster_size,
                                 groups, expansion)
    audio, audio_dim = _nextvlad(prefix + vlad_scopes[1], audio_size, nextvlad_cluster_size // 2,
                                 groups // 2, expansion)
    shapes.update(video)
    shapes.update(audio)
    hidden = nextvlad_hidden_size
    shapes[prefix + "hidden1_weights"] = (video_dim + audio_dim, hidden)
    shapes.update(_bn(prefix + "hidden1_bn", hidden))
    shapes[prefix + "gating_weights_1"] = (hidden, hidden // gating_reduction)
    shapes.update(_bn(prefix + "gating_bn", hidden // gating_reduction))
    shapes[prefix + "gating_weights_2"] = (hidden // gating_reduction, hidden)
    classifier = _classifier(video_level_classifier_model, hidden, vocab_size, num_mixtures)
    shapes.update({prefix + name: shape for name, shape in classifier.items()})
    return shapes


def mix_nextvlad_model(mix_number=3, feature_size=1152, prefix="", **nextvlad_flags):
    """nextvlad.MixNeXtVladModel: the gate (mix_weights_bn, mix_weights with biases) and
    mix_number NeXtVLAD branches (branch_<n>/, pooling scopes video_vlad / audio_vlad)."""
    shapes = dict(_bn(prefix + "mix_weights_bn", feature_size))
    shapes[prefix + "mix_weights/weights"] = (feature_size, mix_number)
    shapes[prefix + "mix_weights/biases"] = (mix_number,)
    nextvlad_flags.setdefault("video_level_classifier_model", "LogisticModel")
    for n in range(mix_number):
        shapes.update(nextvlad_model(prefix=f"{prefix}branch_{n}/",
                                     vlad_scopes=("video_vlad", "audio_vlad"), **nextvlad_flags))
    return shapes


def mod_tree(num_gpu=4, mix_number=3, feature_size=1152, **nextvlad_flags):
    """MOD parallel_train.py: one MixNeXtVladModel per tower (tower_<i>/) and the root gate
    ensemble/mix_weights_bn, ensemble/mix_weights over the towers (names are absolute here)."""
    shapes = {}
    for tower in range(num_gpu):
        shapes.update(mix_nextvlad_model(mix_number, feature_size, prefix=f"tower_{tower}/",
                                         **nextvlad_flags))
    shapes.update(_bn("ensemble/mix_weights_bn", feature_size))
    shapes["ensemble/mix_weights/weights"] = (feature_size, num_gpu)
    shapes["ensemble/mix_weights/biases"] = (num_gpu,)
    return shapes


LINRONGC_SCRIPT_CONFIGS = {
    # scripts/train_nextvlad_local.sh
    "nextvlad_local": (nextvlad_model, dict(groups=8, nextvlad_cluster_size=128,
                                            nextvlad_hidden_size=2048, expansion=2,
                                            gating_reduction=8,
                                            video_level_classifier_model="LogisticModel")),
    # scripts/train_mix_nextvlad_final_submission.sh
    "mix_nextvlad_final": (mix_nextvlad_model, dict(mix_number=3, groups=8,
                                                    nextvlad_cluster_size=112,
                                                    nextvlad_hidden_size=2048, expansion=2,
                                                    gating_reduction=16)),
    # solution_youtube8m_v3 parallel_script/train_mix_nextvlad_final_submission.sh
    "mod_tree_final": (mod_tree, dict(num_gpu=4, mix_number=3, groups=8,
                                      nextvlad_cluster_size=128, nextvlad_hidden_size=2048,
                                      expansion=2, gating_reduction=16)),
}


# ----------------------------------------------------------------------------- boliu61


def boliu_netvlad_member(netvlad_cluster_size=64, netvlad_hidden_size=1024, num_mixtures=2,
                         vocab_size=STARTER_VOCAB, prefix="", video_size=1024, audio_size=128):
    """boliu61 NetVLADModelLF (--gating --moe_prob_gating as in its README): no input_bn; NetVLAD
    cluster weights under <stream>/conv2/, centroids under <stream>/cluster_weights2/; hidden1
    (BN + ReLU6 always), hidden2 = 2H with biases, context gating on 2H, MoE + prob gating.
    32 variables per member."""
    clusters = {"video_VLAD": netvlad_cluster_size, "audio_VLAD": netvlad_cluster_size // 2}
    sizes = {"video_VLAD": video_size, "audio_VLAD": audio_size}
    shapes, vlad_dim = {}, 0
    for scope in ("video_VLAD", "audio_VLAD"):
        size, k = sizes[scope], clusters[scope]
        shapes[f"{prefix}{scope}/conv2/cluster_weights"] = (size, k)
        shapes.update(_bn(f"{prefix}{scope}/cluster_bn", k))
        shapes[f"{prefix}{scope}/cluster_weights2/cluster_weights2"] = (1, size, k)
        vlad_dim += size * k
    hidden = netvlad_hidden_size
    shapes[f"{prefix}hidden1_weights/hidden1_weights"] = (vlad_dim, hidden)
    shapes.update(_bn(f"{prefix}hidden1_bn", hidden))
    shapes[f"{prefix}hidden2_weights/hidden2_weights"] = (hidden, 2 * hidden)
    shapes[f"{prefix}hidden2_biases"] = (2 * hidden,)
    shapes[f"{prefix}gating_weights/gating_weights"] = (2 * hidden, 2 * hidden)
    shapes.update(_bn(f"{prefix}gating_bn", 2 * hidden))
    moe = _willow_moe(2 * hidden, vocab_size, num_mixtures, True)
    shapes.update({prefix + name: shape for name, shape in moe.items()})
    return shapes


# overwrite_float16_ckpt.py / --float16_flag: the only variables created as float16 (computation
# casts them back to float32). experts/biases, cluster weights, hidden2, context gating and every
# batch-norm variable stay float32.
BOLIU_FLOAT16_SUFFIXES = ("hidden1_weights/hidden1_weights", "gates/weights", "experts/weights",
                          "gating_prob_weights")


def boliu_float16_variables(names):
    """The names among `names` that boliu61's float16 export stores as float16: member 0 lives
    under tower/, member i >= 1 under tower/model<i>/."""
    return [name for name in names
            if any(name == suffix or name.endswith("/" + suffix)
                   for suffix in BOLIU_FLOAT16_SUFFIXES)]
