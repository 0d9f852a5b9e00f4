"""Test-wide set-up: legacy Keras before TensorFlow, quiet logs, few threads per worker; and the
shared trained fixtures, built once per test session (also under xdist, where the first worker
that needs one builds it and the others wait for it and read it).

The shared directories are read-only for the tests: a test that writes into a train dir (eval
writes train_dir/eval, a resumed run writes checkpoints) works on `helpers.copy_tree(...)` of
it. Each fixture checks at the end of the session that no test changed its directory.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

import training_helpers as helpers  # noqa: E402
from yt8m.training import trainer  # noqa: E402


def _shared(tmp_path_factory, name, build):
    """The directory build(directory) fills, once per session; yields its path and checks at the
    end that it is unchanged."""
    def produce(directory):
        build(directory)
        return str(directory)

    path = helpers.once_per_session(tmp_path_factory, name, produce)
    state = helpers.tree_state(path)
    yield path
    assert helpers.tree_state(path) == state, (
        f"a test changed the shared {name} directory {path}; work on helpers.copy_tree(...)")


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """helpers.make_small_dataset: 60 frame-level videos (+ video level, + 12 segment-rated)."""
    yield from _shared(tmp_path_factory, "small_dataset", helpers.make_small_dataset)


@pytest.fixture(scope="session")
def frame_logistic_run(tmp_path_factory, small_dataset):
    """FrameLevelLogisticModel trained 10 steps (learning rate 0.05) on frame/train of
    small_dataset; checkpoints at steps 5 and 10."""
    yield from _shared(tmp_path_factory, "frame_logistic_run", lambda train_dir: trainer.train(
        helpers.train_config(train_dir, small_dataset, frame_level=True, max_steps=10,
                             export_model_steps=5, base_learning_rate=0.05)))


@pytest.fixture(scope="session")
def video_logistic_run(tmp_path_factory, small_dataset):
    """LogisticModel trained 2 steps on video/train of small_dataset (checkpoint at step 2)."""
    yield from _shared(tmp_path_factory, "video_logistic_run", lambda train_dir: trainer.train(
        helpers.train_config(train_dir, small_dataset, max_steps=2)))


@pytest.fixture(scope="session")
def video_moe_run(tmp_path_factory, small_dataset):
    """MoeModel trained 2 steps on video/train of small_dataset (checkpoint at step 2)."""
    yield from _shared(tmp_path_factory, "video_moe_run", lambda train_dir: trainer.train(
        helpers.train_config(train_dir, small_dataset, model="MoeModel", max_steps=2)))
