"""MOD trees: model-parallel placement on logical devices, and cutting leaves / sub-trees out."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models.composite import mixture_models
from frame_level_models.composite import placement
from yt8m.distillation import extract
from yt8m.training import checkpoints
from yt8m.core import model_flags as model_flags_lib
from yt8m.core.config import DataConfig, TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V = 5
NEXTVLAD = dict(nextvlad_cluster_size=4, nextvlad_hidden_size=8, groups=2, expansion=2)


def run_module(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_subtrees_weights_forward_backward_and_updates_live_on_their_devices():
    # A fresh process: the CPU can only be split into logical devices before TensorFlow runs.
    result = run_module("yt8m.distillation.placement_report", "--num_cpu_devices=3",
                        "--model=MixtureModel", "--mixture_base_model=FrameLevelLogisticModel",
                        "--mod_tree=3x2", "--mod_devices=")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert np.isfinite(report["loss"])
    # Round-robin over the 3 visible devices; the root gate stays on the default device.
    assigned = [subtree["assigned_device"] for subtree in report["subtrees"]]
    assert assigned == ["/device:CPU:0", "/device:CPU:1", "/device:CPU:2"]
    assert report["root_gate_variable_devices"] == ["/device:CPU:0"]
    for subtree in report["subtrees"]:
        device = subtree["assigned_device"]
        assert subtree["variable_devices"] == [device], subtree
        # Every matmul of the sub-tree, forward and gradient, and every Adam update (its clipping
        # and arithmetic too) is on it.
        for key in ("forward_products", "gradient_products", "optimizer_updates",
                    "optimizer_ops"):
            assert list(subtree[key]) == [device], (key, subtree)
            assert subtree[key][device] > 0
        # 2 leaves x (logistic kernel + bias) + the gate's kernel and bias + its BN gamma/beta.
        assert subtree["optimizer_updates"][device] == 8


def test_placement_refuses_a_strategy_that_would_override_it():
    devices = ["/device:CPU:0", "/device:CPU:1"]
    assert placement.assign_round_robin(devices, 3) == devices + devices[:1]
    assert placement.assign_round_robin(["/device:CPU:0"], 2) == [None, None]
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        with pytest.raises(ValueError, match="cannot be built under OneDeviceStrategy"):
            placement.check_strategy_allows_placement(devices)
    with pytest.raises(ValueError, match=r"--mod_devices='/GPU:7': no device '/GPU:7'"):
        placement.parse_devices("/GPU:7")


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    return {"rgb": tf.constant(rng.normal(size=(3, 5, 16)), tf.float32),
            "audio": tf.constant(rng.normal(size=(3, 5, 8)), tf.float32),
            "num_frames": tf.constant([5, 3, 1], tf.int32)}


@pytest.fixture(scope="module")
def trained_tree(tmp_path_factory):
    """A 2x2 MODNeXtVLAD train dir as train.py lays it out (model_flags.json + ckpt-12)."""
    train_dir = str(tmp_path_factory.mktemp("mod_run"))
    hparams = dict(mod_tree="2x2", final_temperature=4.0, cl_temperature=2.0, **NEXTVLAD)
    config = TrainConfig(model="MODNeXtVLADModel", model_hparams=hparams, data=DataConfig(
        feature_names=("rgb", "audio"), feature_sizes=(16, 8), frame_features=True,
        num_classes=V, max_frames=5))
    flags = model_flags_lib.model_flags_from_config(config)
    model_flags_lib.check_and_write_model_flags(train_dir, flags, start_new_model=True)
    tree = mixture_models.build("MODNeXtVLADModel", V, feature_names="rgb,audio",
                                feature_sizes="16,8", **hparams)
    for seed in (1, 2):  # move the BN statistics away from their initial values
        tree(inputs(seed), training=True)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(tree.trainable_variables)
    manager = checkpoints.make_checkpoint_manager(
        tf.train.Checkpoint(model=tree, optimizer=optimizer), train_dir, max_to_keep=2)
    manager.save(checkpoint_number=12)
    return train_dir, tree, tree(inputs(), training=False)


def test_extracted_leaf_predicts_what_it_predicted_inside_the_tree(trained_tree, tmp_path):
    train_dir, _, tree_outputs = trained_tree
    output_dir = str(tmp_path / "nextvlad_distill")
    result = run_module("yt8m.distillation.extract", f"--train_dir={train_dir}", "--path=1/0",
                        f"--output_dir={output_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ckpt-12" in result.stdout
    flags = model_flags_lib.read_model_flags(output_dir)
    assert flags["model"] == "NeXtVLADModel"
    assert flags["hparams"] == NEXTVLAD
    assert flags["feature_sizes"] == "16,8" and flags["num_classes"] == V
    assert os.path.basename(checkpoints.latest_checkpoint(output_dir)) == "ckpt-12"

    leaf = checkpoints.load_model(output_dir)  # what eval.py / inference.py / the exporter do
    outputs = leaf(inputs(), training=False)
    np.testing.assert_array_equal(outputs["logits"].numpy(),
                                  tree_outputs["branch_logits/1"].numpy()[:, 0])


def test_extracted_subtree_is_a_mixture_of_the_remaining_levels(trained_tree, tmp_path):
    train_dir, tree, tree_outputs = trained_tree
    output_dir = str(tmp_path / "sub_mixture")
    extract.extract(train_dir, (1,), output_dir)
    flags = model_flags_lib.read_model_flags(output_dir)
    assert flags["model"] == "MixtureModel"
    hparams = flags["hparams"]
    assert (hparams["mixture_base_model"], hparams["mod_tree"]) == ("NeXtVLADModel", "2")
    # The sub-mixture keeps its level's temperature (cl_temperature), not the root's.
    assert (hparams["mod_temperatures"], hparams["mod_lambdas"]) == ("2.0", "9.0")
    sub = checkpoints.load_model(output_dir)
    assert sub.temperature == tree.subtree((1,)).temperature == 2.0
    outputs = sub(inputs(), training=False)
    np.testing.assert_array_equal(outputs["logits"].numpy(),
                                  tree_outputs["branch_logits"].numpy()[:, 1])
    np.testing.assert_array_equal(outputs["branch_logits"].numpy(),
                                  tree_outputs["branch_logits/1"].numpy())


def test_extraction_errors_name_the_problem(trained_tree, tmp_path):
    train_dir, _, _ = trained_tree
    with pytest.raises(ValueError, match="index 2 at depth 0 is out of range; that level has 2"):
        extract.extract(train_dir, (2, 0), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="is 3 levels deep; the MODNeXtVLADModel tree 2x2 has 2"):
        extract.extract(train_dir, (0, 0, 0), str(tmp_path / "b"))
    with pytest.raises(ValueError, match="already holds model_flags.json"):
        extract.extract(train_dir, (0, 0), train_dir)
    leaf_dir = str(tmp_path / "leaf")
    extract.extract(train_dir, (0, 1), leaf_dir)
    with pytest.raises(ValueError, match="holds a 'NeXtVLADModel' model, not a mixture"):
        extract.extract(leaf_dir, (0,), str(tmp_path / "c"))
