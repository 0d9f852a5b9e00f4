"""MOD's segment finetune set-up (linrongc/solution_youtube8m_v3 seg_script): the finetune values
of the root mixture (final_temperature / final_lambda 20 / 400) and the warm start from one named
checkpoint (--pretrain_model_path), not the source's newest."""
import os
import re
import shutil

import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

import frame_level_models
from yt8m.core import model_flags as model_flags_lib
from yt8m.core.config import DataConfig, TrainConfig
from yt8m.segments import finetune
from yt8m.training.model_builder import build_model

import training_helpers as helpers


V = 4
MIXTURE = dict(mixture_base_model="FrameLevelLogisticModel", mix_number=2)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A video-level train dir of a mixture with two checkpoints, ckpt-1 and ckpt-2 (the newest),
    holding different weights."""
    train_dir = str(tmp_path_factory.mktemp("video_run"))
    config = TrainConfig(train_dir=train_dir, model="MixtureModel", model_hparams=MIXTURE,
                         data=DataConfig(feature_names=("rgb", "audio"), feature_sizes=(6, 3),
                                         frame_features=True, num_classes=V, max_frames=10))
    record = model_flags_lib.model_flags_from_config(config)
    model_flags_lib.check_and_write_model_flags(train_dir, record, start_new_model=True)
    model = build_model(record)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), train_dir,
                                         max_to_keep=5, checkpoint_name="ckpt")
    weights = {}
    for step in (1, 2):
        for variable in model.variables:
            variable.assign(tf.fill(variable.shape, float(step)))
        manager.save(checkpoint_number=step)
        weights[step] = [v.numpy() for v in model.variables]
    return train_dir, record, weights


def test_mod_finetune_settings_set_the_root_final_temperature_and_lambda(source_run, tmp_path):
    train_dir, record, _ = source_run
    fv = helpers.train_flag_values([f"--finetune_from={train_dir}", f"--train_dir={tmp_path}/seg",
                      "--mod_finetune_settings", "--segment_labels", "--cl_lambda=300"])
    config = finetune.config_from_flags(fv)
    hparams = config.model_hparams
    # MOD seg_script: --cl_temperature=20 --cl_lambda=400 --final_temperature=20 --final_lambda=400
    # --drop_rate=0.75 --l2_penalty=1e-4; a flag given here wins (cl_lambda).
    assert (hparams["final_temperature"], hparams["final_lambda"]) == (20.0, 400.0)
    assert (hparams["cl_temperature"], hparams["cl_lambda"]) == (20.0, 300.0)
    model = frame_level_models.build(config.model, V, feature_names="rgb,audio",
                                     feature_sizes="6,3", **hparams)
    assert (model.temperature, model.distill_lambda) == (20.0, 400.0)  # the root


def test_pretrain_model_path_warm_starts_from_that_checkpoint(source_run, tmp_path):
    train_dir, record, weights = source_run
    checkpoint = os.path.join(train_dir, "ckpt-1")
    fv = helpers.train_flag_values([f"--pretrain_model_path={checkpoint}",
                                    f"--train_dir={tmp_path}/seg",
                      "--segment_labels", "--model=MixtureModel"])
    source = finetune.warm_start_source(fv)
    assert source == finetune.WarmStart(train_dir, checkpoint)
    config = finetune.config_from_flags(fv)
    assert config.model == "MixtureModel" and config.data.max_frames == 5
    model = build_model(record)
    assert finetune.warm_start_factory(config, source)(model) is model
    for got, want in zip(model.variables, weights[1]):  # ckpt-1, not the newest ckpt-2
        np.testing.assert_array_equal(got.numpy(), want)
    newest = build_model(record)
    finetune.warm_start_factory(config, train_dir)(newest)  # --finetune_from: the newest
    for got, want in zip(newest.variables, weights[2]):
        np.testing.assert_array_equal(got.numpy(), want)


def test_pretrain_model_path_errors(source_run, tmp_path):
    train_dir, _, _ = source_run
    missing = os.path.join(train_dir, "ckpt-7")
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"--pretrain_model_path={missing!r}: no such checkpoint")):
        finetune.warm_start_source(helpers.train_flag_values([f"--pretrain_model_path={missing}"]))
    other = tmp_path / "other"
    shutil.copytree(train_dir, other)
    with pytest.raises(ValueError, match="is not a checkpoint of --finetune_from="):
        finetune.warm_start_source(helpers.train_flag_values([
            f"--pretrain_model_path={train_dir}/ckpt-1", f"--finetune_from={other}"]))
    assert finetune.warm_start_source(helpers.train_flag_values([])) is None
