"""One worker of test_multi_worker's model-parallel run (started by the test with TF_CONFIG set).

    python tests/training/multi_worker_mod_worker.py OUTPUT_DIR

A MOD tree (2 sub-trees of 2 logistic leaves) is built outside the strategy scope with its
sub-trees on this worker's two logical CPUs, each worker from a different random seed; the
chief's weights are broadcast, then two steps of `model_parallel.make_model_parallel_step` run on
the worker's half of a fixed global batch. Weights and variable devices go to
OUTPUT_DIR/worker<i>.npz / .json. Then worker 1 exits and worker 0 runs one more step, which
must end in a WorkerLostError (its message is printed, exit code 3).
"""
import json
import os
import sys

import yt8m  # noqa: F401
import numpy as np
import tensorflow as tf
import tf_keras as keras

from yt8m import losses
from frame_level_models.composite import mixture_models
from yt8m.training import distribution
from yt8m.training import model_parallel
from yt8m.training import multi_worker
from yt8m.training import objective
from yt8m.training.optimizers import make_optimizer

NUM_CLASSES = 4
GLOBAL_BATCH = 8
FRAMES = 5
HPARAMS = dict(feature_names="rgb,audio", feature_sizes="16,8", mod_tree="2x2", mod_devices="",
               mixture_base_model="FrameLevelLogisticModel")
STEPS = 2


def global_batch():
    """The same batch on every worker (and in the test's reference)."""
    rng = np.random.default_rng(0)
    features = {"rgb": rng.normal(size=(GLOBAL_BATCH, FRAMES, 16)).astype(np.float32),
                "audio": rng.normal(size=(GLOBAL_BATCH, FRAMES, 8)).astype(np.float32),
                "num_frames": rng.integers(1, FRAMES + 1, GLOBAL_BATCH).astype(np.int32)}
    labels = rng.integers(0, 2, (GLOBAL_BATCH, NUM_CLASSES)).astype(np.float32)
    return features, labels


def build_model(seed):
    keras.utils.set_random_seed(seed)
    return mixture_models.build("MixtureModel", NUM_CLASSES, **HPARAMS)


def loss_function(model):
    label_loss = losses.CrossEntropyLoss()
    return lambda outputs, labels, label_weights=None: objective.training_loss(
        model, outputs, labels, label_weights, label_loss, 1.0)["total_loss"]


def main(output_dir):
    # Both before anything starts TensorFlow's runtime (the test imports this file for its
    # builders only, so nothing of this runs at import).
    distribution.configure_cpu_devices(2)
    strategy = multi_worker.make_multi_worker_strategy()
    index = multi_worker.worker_index(strategy)
    model = build_model(seed=100 + index)  # different initial values on each worker
    before = [variable.numpy() for variable in model.variables]
    multi_worker.broadcast_from_chief(strategy, model.variables)
    initial = [variable.numpy() for variable in model.variables]
    optimizer = make_optimizer("AdamOptimizer", 0.01, 0.0,
                               on_variable_devices=model.is_model_parallel)
    step = model_parallel.make_model_parallel_step(strategy, model, optimizer,
                                                   loss_function(model))
    features, labels = global_batch()
    share = slice(index * GLOBAL_BATCH // 2, (index + 1) * GLOBAL_BATCH // 2)
    mine = ({name: value[share] for name, value in features.items()}, labels[share])
    losses_seen = [float(step(*mine)[0]) for _ in range(STEPS)]
    final = [variable.numpy() for variable in model.variables]
    np.savez(os.path.join(output_dir, f"worker{index}.npz"),
             **{f"before_{i}": value for i, value in enumerate(before)},
             **{f"initial_{i}": value for i, value in enumerate(initial)},
             **{f"final_{i}": value for i, value in enumerate(final)})
    with open(os.path.join(output_dir, f"worker{index}.json"), "w") as handle:
        json.dump({"losses": losses_seen,
                   "names": [variable.name for variable in model.variables],
                   "subtree_devices": [sorted({tf.DeviceSpec.from_string(v.device).device_index
                                               for v in subtree.variables})
                                       for subtree in model.branch_models]}, handle)
    if index == 1:
        sys.stdout.flush()
        os._exit(0)  # dies without a goodbye; worker 0's next collective finds no peer
    try:
        with multi_worker.lost_worker_errors(strategy, output_dir):
            for _ in range(100):
                step(*mine)
    except multi_worker.WorkerLostError as error:
        print(error, flush=True)
        os._exit(3)
    print("worker 1 was not missed", flush=True)
    os._exit(4)


if __name__ == "__main__":
    main(sys.argv[1])
