"""Willow's models against their reference forward order (tests/reference/willow_numpy.py, written
from Willow's frame_level_models.py / video_level_models.py): the Keras model's weights converted
to the reference layout (tests/willow_weights.py) and fed to the numpy model give the same
predictions, in deterministic inference on padded videos (every valid frame), in training mode
(sampled frames, batch statistics) and in Willow's evaluation (--deterministic_eval=False: sampled
frames, moving statistics), the sampler's draws fixed and the reference given the indices Willow
computes from them; the converted variables are exactly the reference's
(tests/reference/param_counts.py); parameter counts at Willow's README configurations; Willow's
flag names and defaults."""
import numpy as np
import pytest
from absl import flags

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras
from tensorflow.python.ops import resource_variable_ops

import frame_level_models
import willow_weights
from frame_level_models import hparams
from reference import common as ref_common
from reference import param_counts as pc
from reference import starter_numpy, willow_numpy

V = 5
TOL = dict(rtol=1e-5, atol=1e-5)
SAMPLED = 5  # --iterations of the sampling models here
NUM_FRAMES = np.array([4, 2, 3], np.int32)
MAX_T = 4

# name: (Keras hparams, reference forward, reference flags, param_counts shapes, shape flags)
CASES = {
    "gated_netvlad": (
        "NetVLADModelLF", dict(iterations=SAMPLED, netvlad_cluster_size=4, netvlad_hidden_size=6),
        willow_numpy.netvlad_model_lf, dict(netvlad_relu=False, gating=True, moe_prob_gating=True),
        pc.netvlad_model_lf, dict(cluster_size=4, hidden_size=6, netvlad_relu=False, gating=True,
                                  moe_prob_gating=True)),
    "netvlad_willow_defaults": (
        "NetVLADModelLF", dict(iterations=SAMPLED, netvlad_cluster_size=4, netvlad_hidden_size=6, netvlad_relu=True,
                               gating=False, moe_prob_gating=False),
        willow_numpy.netvlad_model_lf, dict(),
        pc.netvlad_model_lf, dict(cluster_size=4, hidden_size=6)),
    "gated_netrvlad": (
        "NetVLADModelLF", dict(iterations=SAMPLED, netvlad_cluster_size=4, netvlad_hidden_size=6, lightvlad=True),
        willow_numpy.netvlad_model_lf, dict(lightvlad=True, netvlad_relu=False, gating=True,
                                            moe_prob_gating=True),
        pc.netvlad_model_lf, dict(cluster_size=4, hidden_size=6, lightvlad=True,
                                  netvlad_relu=False, gating=True, moe_prob_gating=True)),
    "netvlagd_remove_diag_low_rank": (
        "NetVLADModelLF", dict(iterations=SAMPLED, netvlad_cluster_size=4, netvlad_hidden_size=6, vlagd=True,
                               gating_remove_diag=True, moe_low_rank_gating=3,
                               moe_num_mixtures=3),
        willow_numpy.netvlad_model_lf, dict(vlagd=True, netvlad_relu=False, gating=True,
                                            moe_prob_gating=True, gating_remove_diag=True,
                                            moe_low_rank_gating=3, num_mixtures=3),
        pc.netvlad_model_lf, dict(cluster_size=4, hidden_size=6, vlagd=True, netvlad_relu=False,
                                  gating=True, moe_prob_gating=True, low_rank_gating=3,
                                  num_mixtures=3)),
    "gated_netfv": (
        "NetFVModelLF", dict(iterations=SAMPLED, fv_cluster_size=4, fv_hidden_size=6, fv_relu=False, gating=True,
                             moe_prob_gating=True, fv_couple_weights=False),
        willow_numpy.netfv_model_lf, dict(fv_relu=False, gating=True, moe_prob_gating=True,
                                          fv_couple_weights=False),
        pc.netfv_model_lf, dict(fv_cluster_size=4, fv_hidden_size=6, fv_relu=False, gating=True,
                                moe_prob_gating=True, fv_couple_weights=False)),
    "netfv_willow_defaults_input_gating": (
        "NetFVModelLF", dict(iterations=SAMPLED, fv_cluster_size=4, fv_hidden_size=6, fv_coupling_factor=0.2,
                             moe_prob_gating=True, moe_prob_gating_input="input",
                             gating_remove_diag=True),
        willow_numpy.netfv_model_lf, dict(fv_coupling_factor=0.2, moe_prob_gating=True,
                                          moe_prob_gating_input="input",
                                          gating_remove_diag=True),
        pc.netfv_model_lf, dict(fv_cluster_size=4, fv_hidden_size=6, moe_prob_gating=True,
                                gating_input="input")),
    "gated_soft_dbow": (
        "GatedDbofModelLF", dict(iterations=SAMPLED, dbof_cluster_size=16, dbof_hidden_size=6, dbof_relu=False),
        willow_numpy.gated_dbof_model_lf, dict(dbof_relu=False),
        pc.gated_dbof_model_lf, dict(dbof_cluster_size=16, dbof_hidden_size=6, dbof_relu=False)),
    "gated_dbof_relu_maxpool": (
        "GatedDbofModelLF", dict(iterations=SAMPLED, dbof_cluster_size=16, dbof_hidden_size=6, softdbof_maxpool=True,
                                 moe_prob_gating=True),
        willow_numpy.gated_dbof_model_lf, dict(softdbof_maxpool=True, moe_prob_gating=True),
        pc.gated_dbof_model_lf, dict(dbof_cluster_size=16, dbof_hidden_size=6,
                                     softdbof_maxpool=True, moe_prob_gating=True)),
    "soft_dbow": (
        "SoftDbofModelLF", dict(iterations=SAMPLED, dbof_cluster_size=16, dbof_hidden_size=6, dbof_relu=False),
        willow_numpy.soft_dbof_model_lf, dict(dbof_relu=False),
        pc.soft_dbof_model_lf, dict(dbof_cluster_size=16, dbof_hidden_size=6, dbof_relu=False)),
    "soft_dbof_maxpool_no_dimred": (
        "SoftDbofModelLF", dict(iterations=SAMPLED, dbof_cluster_size=16, softdbof_maxpool=True, fc_dimred=False,
                                sample_random_frames=False),
        willow_numpy.soft_dbof_model_lf, dict(softdbof_maxpool=True, fc_dimred=False),
        pc.soft_dbof_model_lf, dict(dbof_cluster_size=16, softdbof_maxpool=True,
                                    fc_dimred=False)),
    "gru": (
        "GruModel", dict(gru_cells=3, gru_layers=2),
        willow_numpy.gru_model, dict(gru_cells=3, gru_layers=2),
        pc.gru_model, dict(gru_cells=3, gru_layers=2)),
    "gru_random_sequence": (
        "GruModel", dict(gru_cells=3, gru_layers=2, gru_random_sequence=True, iterations=3),
        willow_numpy.gru_model, dict(gru_cells=3, gru_layers=2),
        pc.gru_model, dict(gru_cells=3, gru_layers=2)),
    "lstm_readme": (  # LstmModel + a flag only Willow's LstmModel has: Willow's LstmModel
        "LstmModel", dict(lstm_cells=3, lstm_layers=2, lstm_random_sequence=True,
                          iterations=SAMPLED),
        willow_numpy.lstm_model, dict(lstm_cells=3, lstm_layers=2),
        pc.willow_lstm_model, dict(lstm_cells=3, lstm_layers=2)),
    "lstm_backward_prob_gating": (
        "LstmModel", dict(lstm_cells=3, lstm_layers=1, lstm_random_sequence=False,
                          lstm_backward=True, moe_prob_gating=True),
        willow_numpy.lstm_model, dict(lstm_cells=3, lstm_layers=1, lstm_backward=True,
                                      moe_prob_gating=True),
        pc.willow_lstm_model, dict(lstm_cells=3, lstm_layers=1, moe_prob_gating=True)),
    "gru_backward_prob_gating": (
        "GruModel", dict(gru_cells=3, gru_layers=1, gru_backward=True, moe_prob_gating=True),
        willow_numpy.gru_model, dict(gru_cells=3, gru_layers=1, gru_backward=True,
                                     moe_prob_gating=True),
        pc.gru_model, dict(gru_cells=3, gru_layers=1, moe_prob_gating=True)),
}
RECURRENT = {"GruModel", "LstmModel"}  # references that mask by num_frames themselves


def raw_frames(rng, num_frames):
    """{rgb, audio, num_frames} with garbage in the padding."""
    frames = rng.normal(0, 1, (len(num_frames), MAX_T, 1152))
    for b, n in enumerate(num_frames):
        frames[b, n:] = rng.normal(5.0, 10.0, (MAX_T - n, 1152))
    frames = frames.astype(np.float32)
    return {"rgb": frames[:, :, :1024], "audio": frames[:, :, 1024:],
            "num_frames": np.asarray(num_frames, np.int32)}


def built(case, rng):
    name, keras_hparams = CASES[case][:2]
    model = frame_level_models.build(name, V, **keras_hparams)
    willow_weights.randomize_batch_norms(model, rng)
    for weight in model.trainable_weights:  # biases and BN parameters away from their init
        if len(weight.shape) == 1:
            weight.assign(rng.normal(0, 0.5, weight.shape))
    return name, model


def fixed_draws(model, rng, num_frames):
    """Fixes the uniform draws of the model's frame sampler and returns the frame indices Willow
    computes from them (SampleRandomFrames / SampleRandomSequence); None without a sampler."""
    try:
        sampler = model.get_layer("frame_sampler")
    except ValueError:
        return None
    if sampler.sequence:
        uniform = rng.uniform(size=len(num_frames)).astype(np.float32)
        index = ref_common.random_sequence_index(uniform, num_frames, sampler.iterations)
    else:
        uniform = rng.uniform(size=(len(num_frames), sampler.iterations)).astype(np.float32)
        index = ref_common.random_frames_index(uniform, num_frames)
    sampler.draw_uniform = lambda shape: tf.constant(uniform)
    return index


def reference(case, batch, weights, bn_training=False, frame_index=None):
    """The reference model on Willow's input (the L2-normalised 1152-d frames). Without sampled
    indices the *ModelLF references have no mask, so each padded video runs alone on its valid
    frames (the recurrent ones stop at num_frames themselves)."""
    name, _, forward, flags_ = CASES[case][:4]
    frames = starter_numpy.starter_input(np.concatenate([batch["rgb"], batch["audio"]], axis=2))
    num_frames = batch["num_frames"]
    if frame_index is not None or name in RECURRENT:
        return forward(frames, num_frames, weights, frame_index=frame_index,
                       bn_training=bn_training, **flags_)
    return np.concatenate([forward(frames[b:b + 1, :n], num_frames[b:b + 1], weights,
                                   bn_training=bn_training, **flags_)
                           for b, n in enumerate(num_frames)])


@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_reference_order(case):
    rng = np.random.default_rng(5)
    name, model = built(case, rng)
    weights = willow_weights.model_weights(model)
    shapes = CASES[case][4](vocab_size=V, **CASES[case][5])
    assert willow_weights.shapes(weights) == shapes  # exactly the reference's variables
    assert (sum(int(np.prod(w.shape)) for w in model.trainable_weights) == pc.count(shapes))
    assert model.count_params() == pc.count(shapes, trainable_only=False)
    batch = raw_frames(rng, NUM_FRAMES)  # padded videos, garbage in the padding
    # Deterministic inference (the default): every valid frame, moving statistics.
    np.testing.assert_allclose(model(batch)["predictions"].numpy(),
                               reference(case, batch, weights), **TOL)
    # Training: Willow's sampled frames (fixed draws) and batch statistics.
    frame_index = fixed_draws(model, rng, NUM_FRAMES)
    expected = reference(case, batch, weights, bn_training=True, frame_index=frame_index)
    np.testing.assert_allclose(model(batch, training=True)["predictions"].numpy(), expected,
                               **TOL)
    if frame_index is None:
        return
    # Willow's evaluation (--deterministic_eval=False): sampled frames, moving statistics.
    evaluating = frame_level_models.build(name, V, deterministic_eval=False, **CASES[case][1])
    evaluating.set_weights(model.get_weights())  # the training call moved the statistics
    weights = willow_weights.model_weights(evaluating)
    frame_index = fixed_draws(evaluating, rng, NUM_FRAMES)
    np.testing.assert_allclose(evaluating(batch)["predictions"].numpy(),
                               reference(case, batch, weights, frame_index=frame_index), **TOL)


def uninitialized_variable(next_creator, **kwargs):
    del next_creator
    return resource_variable_ops.UninitializedVariable(
        shape=kwargs["shape"], dtype=kwargs["dtype"], name=kwargs.get("name"),
        trainable=kwargs.get("trainable", True))


# Willow's README command lines (bench/reference_commands.json), flags that shape variables.
README = {
    "gated_netvlad": ("NetVLADModelLF", "--netvlad_cluster_size=256 --netvlad_hidden_size=1024 "
                      "--moe_l2=1e-6 --netvlad_relu=False --gating=True --moe_prob_gating=True",
                      321_528_380),
    "gated_netfv": ("NetFVModelLF", "--fv_cluster_size=128 --fv_hidden_size=1024 --moe_l2=1e-6 "
                    "--fv_relu=False --gating=True --moe_prob_gating=True "
                    "--fv_couple_weights=False", 321_388_732),
    "gated_soft_dbow": ("GatedDbofModelLF", "--dbof_cluster_size=4096 --dbof_hidden_size=1024 "
                        "--moe_l2=1e-6 --dbof_relu=False", 37_168_940),
    "soft_dbow": ("SoftDbofModelLF", "--dbof_cluster_size=8000 --dbof_hidden_size=1024 "
                  "--dbof_relu=False", 37_338_492),
    "gated_netrvlad": ("NetVLADModelLF", "--netvlad_cluster_size=256 --netvlad_hidden_size=1024 "
                       "--moe_l2=1e-6 --netvlad_relu=False --gating=True --moe_prob_gating=True "
                       "--lightvlad=True", 321_249_852),
    "gru": ("GruModel", "--gru_cells=1200 --moe_l2=1e-6", 63_466_124),
    "lstm": ("LstmModel", "--iterations=150 --lstm_random_sequence=True", 96_411_180),
}


def flag_hparams(model, argv):
    flag_values = flags.FlagValues()
    hparams.define_flags(flag_values)
    flag_values(["train.py"] + argv.split())
    return hparams.hparams_from_flags(flag_values, model_name=model)


@pytest.mark.parametrize("config", list(README))
def test_readme_configurations_parameter_counts(config):
    """Built from Willow's own flags (absl parses them as train.py does) with 3862 classes; the
    variables are created uninitialised, so the 321M-parameter models take no memory or time."""
    name, argv, expected = README[config]
    forward_shapes, shape_flags = pc.WILLOW_README_CONFIGS[config]
    assert pc.count(forward_shapes(**shape_flags)) == expected
    with tf.variable_creator_scope(uninitialized_variable):
        model = frame_level_models.build(name, pc.STARTER_VOCAB, **flag_hparams(name, argv))
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    assert trainable == expected
    assert model.count_params() == pc.count(forward_shapes(**shape_flags), trainable_only=False)


def test_willow_flag_names_and_defaults():
    values = flag_hparams("NetFVModelLF", "--moe_l2=1e-6")
    assert values["l2_penalty"] == 1e-6  # --moe_l2 is l2_penalty's alias
    assert "moe_l2" not in values
    # Willow's flag defaults (frame_level_models.py / video_level_models.py).
    willow = {"fv_cluster_size": 64, "fv_hidden_size": 2048, "fv_relu": True,
              "fv_couple_weights": True, "fv_coupling_factor": 0.01, "gating": False,
              "netvlad_add_batch_norm": True, "dbof_cluster_size": 16384,
              "dbof_hidden_size": 2048, "dbof_add_batch_norm": True, "dbof_relu": True,
              "softdbof_maxpool": False, "fc_dimred": True, "gru_cells": 1024, "gru_layers": 2,
              "gru_random_sequence": False, "gru_backward": False, "lstm_cells": 1024,
              "lstm_layers": 2, "iterations": 30, "sample_random_frames": True,
              "moe_num_mixtures": 2, "l2_penalty": 1e-8, "moe_low_rank_gating": -1,
              "moe_prob_gating": False, "moe_prob_gating_input": "prob",
              "gating_remove_diag": False, "lightvlad": False, "vlagd": False}
    models = ("NetFVModelLF", "GatedDbofModelLF", "SoftDbofModelLF", "GruModel", "NetVLADModelLF")
    for name in models:
        for hparam, value in willow.items():
            if hparam in frame_level_models.hparam_names(name) and (
                    name != "NetVLADModelLF" or hparam not in NETVLAD_WINNING):
                assert hparams.default_value(name, hparam) == value, (name, hparam)
        # The announced deviation: evaluation uses every frame unless told otherwise.
        assert hparams.default_value(name, "deterministic_eval") is True
    # NetVLADModelLF keeps the winning configuration as its defaults (docs/models.md).
    for hparam, value in NETVLAD_WINNING.items():
        assert hparams.default_value("NetVLADModelLF", hparam) == value
    # The starter's models keep the starter's defaults of the shared flags.
    assert (hparams.default_value("DbofModel", "dbof_cluster_size"),
            hparams.default_value("DbofModel", "dbof_hidden_size"),
            hparams.default_value("DbofModel", "deterministic_eval")) == (8192, 1024, False)
    assert hparams.default_value("LstmModel", "lstm_random_sequence") is None
    # build() takes the alias too; an alias contradicting its row is an error.
    model = frame_level_models.build("GruModel", V, gru_cells=2, gru_layers=1, moe_l2=0.5)
    assert model.get_layer("moe").l2_penalty == 0.5
    with pytest.raises(ValueError, match=r"GruModel: hparams l2_penalty=0.1 and moe_l2=0.5 name "
                                         r"the same option \(l2_penalty\)"):
        frame_level_models.build("GruModel", V, l2_penalty=0.1, moe_l2=0.5)


def test_lstm_model_is_willows_only_with_willows_flags():
    """LstmModel is the starter's (the last layer's h); naming --lstm_random_sequence or
    --lstm_backward (either value) builds Willow's (the whole state into Willow's MoE)."""
    starter = frame_level_models.build("LstmModel", V, lstm_cells=3, lstm_layers=2)
    assert starter.get_layer("lstm").state_output == "last_h"
    for flag in ("lstm_random_sequence", "lstm_backward"):
        for value in (True, False):
            willow = frame_level_models.build("LstmModel", V, lstm_cells=3, lstm_layers=2,
                                              **{flag: value})
            assert willow.get_layer("lstm").state_output == "all"
            assert willow.get_layer("moe").input.shape[-1] == 2 * 2 * 3
    with pytest.raises(ValueError, match="Willow's LstmModel .* classifies with MoeModel"):
        frame_level_models.build("LstmModel", V, lstm_cells=3, lstm_backward=False,
                                 video_level_classifier_model="LogisticModel")


NETVLAD_WINNING = {"netvlad_cluster_size": 256, "netvlad_hidden_size": 1024,
                   "netvlad_relu": False, "gating": True, "moe_prob_gating": True,
                   "l2_penalty": 1e-6, "iterations": 300}


def test_willow_lstm_round_trips_config_and_keras_file(tmp_path):
    """Willow's LstmModel (reached through LstmModel) saves and reloads as every registered model
    does (tests/frame_level_models/test_models.py covers the registry's names)."""
    model = frame_level_models.build("LstmModel", V, lstm_cells=3, lstm_layers=2,
                                     lstm_random_sequence=True, iterations=3,
                                     moe_prob_gating=True)
    batch = raw_frames(np.random.default_rng(6), NUM_FRAMES)
    model(batch, training=True)
    expected = model(batch)["predictions"].numpy()
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(batch)["predictions"].numpy(), expected)
    model.save(str(tmp_path / "willow_lstm.keras"))
    loaded = keras.models.load_model(str(tmp_path / "willow_lstm.keras"))
    np.testing.assert_array_equal(loaded(batch)["predictions"].numpy(), expected)
