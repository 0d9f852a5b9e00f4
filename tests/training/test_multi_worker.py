"""--distribution_strategy=multi_worker: two train.py workers on 127.0.0.1.

Run 1: both workers train until worker 1 is killed; worker 0 must stop with the lost-worker
message. Run 2: both restart with the same command, resume from the chief's newest checkpoint and
finish at --max_steps. The final checkpoint is then checked against one replica (in this process)
continuing from the checkpoint run 2 resumed from with the same global batches.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.data import records
from yt8m.training import checkpoints
from yt8m.training import inputs
from yt8m.training import multi_worker
from yt8m.training import objective
from yt8m.training import trainer
from yt8m.core.config import DataConfig, TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_CLASSES = 5
MAX_FRAMES = 10
BATCH_PER_WORKER = 4
SAVE_EVERY = 3
SEED = 3
RUN_TIMEOUT_SECS = 240  # per run of the two workers; both normally end well within it


def _write_data(directory):
    rng = np.random.default_rng(0)
    for shard in range(2):
        with tf.io.TFRecordWriter(os.path.join(directory, f"train{shard}.tfrecord")) as writer:
            for index in range(16):
                length = int(rng.integers(3, 2 * MAX_FRAMES))
                codes = {"rgb": rng.integers(0, 256, (length, 1024), dtype=np.uint8),
                         "audio": rng.integers(0, 256, (length, 128), dtype=np.uint8)}
                labels = rng.choice(NUM_CLASSES, size=2, replace=False).tolist()
                writer.write(records.make_sequence_example(f"v{shard}-{index}", labels, codes)
                             .SerializeToString())
    return os.path.join(directory, "train*.tfrecord")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _train_flags(train_dir, pattern, max_steps):
    return [f"--train_dir={train_dir}", f"--train_data_pattern={pattern}",
            "--model=FrameLevelLogisticModel", "--frame_features", "--feature_names=rgb,audio",
            "--feature_sizes=1024,128", f"--num_classes={NUM_CLASSES}",
            f"--max_frames={MAX_FRAMES}", f"--batch_size={BATCH_PER_WORKER}",
            f"--shuffle_seed={SEED}", "--num_epochs=1000", f"--max_steps={max_steps}",
            f"--export_model_steps={SAVE_EVERY}", "--base_learning_rate=0.1",
            "--log_every_steps=1", "--distribution_strategy=multi_worker",
            # The mean of the workers' gradients equals one replica on the global batch (what
            # test_final_checkpoint_... checks); the default sum is checked in test_train.py.
            "--average_replica_gradients"]


def _start_workers(workspace, train_dir, pattern, max_steps, run_name):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        log = open(workspace / f"{run_name}-worker{index}.log", "w+")
        process = subprocess.Popen(
            [sys.executable, "train.py", *_train_flags(train_dir, pattern, max_steps)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        workers.append((process, log))
    return workers


def _diagnosis(log):
    """What a failed worker said: its error lines and the end of its log."""
    errors = [line for line in log.splitlines()
              if re.search(r"Error|error:|Traceback", line) and "WARNING" not in line]
    return "\n".join(errors[:30]) + "\n...\n" + log[-1500:]


def _finish(workers, deadline):
    """Waits for the workers (killing any still running at the deadline); returns their logs."""
    outputs = []
    for process, log in workers:
        try:
            process.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.seek(0)
        outputs.append((process.returncode, log.read()))
        log.close()
    return outputs


def _wait_for_checkpoint(train_dir, step, workers, deadline):
    while not os.path.exists(os.path.join(train_dir, f"ckpt-{step}.index")):
        if time.time() > deadline or any(process.poll() is not None for process, _ in workers):
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("multi_worker")
    pattern = _write_data(str(workspace))
    train_dir = str(workspace / "train")
    # Run 1: train without a step limit and kill worker 1 once the chief has a checkpoint.
    workers = _start_workers(workspace, train_dir, pattern, 10 ** 6, "run1")
    deadline = time.time() + RUN_TIMEOUT_SECS
    saved = _wait_for_checkpoint(train_dir, SAVE_EVERY, workers, deadline)
    workers[1][0].send_signal(signal.SIGKILL)
    run1 = _finish(workers, time.time() + 90)  # worker 0 must notice within this
    assert saved, "no checkpoint before the deadline:\n" + "\n".join(log for _, log in run1)
    resumed_from = checkpoints.latest_checkpoint(train_dir)
    resumed_step = checkpoints.checkpoint_step(resumed_from)
    final_step = resumed_step + SAVE_EVERY
    # Run 2: the same command on both workers resumes and ends at --max_steps.
    workers = _start_workers(workspace, train_dir, pattern, final_step, "run2")
    run2 = _finish(workers, time.time() + RUN_TIMEOUT_SECS)
    return dict(workspace=workspace, pattern=pattern, train_dir=train_dir, run1=run1, run2=run2,
                resumed_from=resumed_from, resumed_step=resumed_step, final_step=final_step)


def test_lost_worker_stops_the_job_with_a_clear_message(runs):
    returncode, log = runs["run1"][0]
    assert returncode == 1, _diagnosis(log)
    pattern = (r"^train\.py: error: multi-worker training lost a worker \(\w+Error: .*\); "
               r"worker 0 stops, and so does every other worker\. Restart all workers with the "
               r"same TF_CONFIG and flags: training resumes from "
               + re.escape(runs["train_dir"]) + r"/ckpt-\d+\.$")
    assert re.search(pattern, log, re.MULTILINE), _diagnosis(log)


def test_restarted_workers_resume_and_both_finish(runs):
    train_dir, final_step = runs["train_dir"], runs["final_step"]
    for index, (returncode, log) in enumerate(runs["run2"]):
        assert returncode == 0, f"worker {index}:\n{_diagnosis(log)}"
        assert f"Resumed from {runs['resumed_from']} at step {runs['resumed_step']}" in log
        # Each worker reports the checkpoint the chief wrote. (A worker still exiting when the
        # chief has gone may log the chief's coordination service as unreachable after this.)
        assert (f"\ntrain.py: stopped at step {final_step} (max_steps); checkpoint "
                f"{train_dir}/ckpt-{final_step}\n") in log, _diagnosis(log)
    # Only the chief wrote into train_dir; worker 1's scratch saves are gone.
    names = os.listdir(train_dir)
    assert not [name for name in names if name.startswith(multi_worker.SCRATCH_PREFIX)], names
    assert f"ckpt-{final_step}.index" in names
    assert tf.train.latest_checkpoint(train_dir) == os.path.join(train_dir, f"ckpt-{final_step}")


def test_final_checkpoint_equals_one_replica_continuing_the_same_batches(runs, tmp_path):
    """Two workers x 4 examples all-reduced == one replica with the global batch of 8: restore
    the checkpoint run 2 started from (model, Adam slots, input position) and train the same
    steps here; the weights must match the checkpoint the workers wrote."""
    train_dir = runs["train_dir"]
    reference_dir = str(tmp_path / "reference")
    os.makedirs(reference_dir)
    for name in os.listdir(train_dir):
        if name.startswith(os.path.basename(runs["resumed_from"]) + ".") or name == "model_flags.json":
            shutil.copy(os.path.join(train_dir, name), reference_dir)
    with open(os.path.join(reference_dir, "checkpoint"), "w") as handle:
        name = os.path.basename(runs["resumed_from"])
        handle.write(f"model_checkpoint_path: \"{name}\"\nall_model_checkpoint_paths: \"{name}\"\n")
    with open(os.path.join(train_dir, "model_flags.json")) as handle:
        model_flags = json.load(handle)
    config = TrainConfig(
        train_dir=reference_dir, train_data_pattern=runs["pattern"],
        data=DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                        frame_features=True, num_classes=NUM_CLASSES, max_frames=MAX_FRAMES),
        model="FrameLevelLogisticModel", model_hparams=model_flags["hparams"],
        batch_size=2 * BATCH_PER_WORKER, base_learning_rate=0.1, num_epochs=1000,
        max_steps=runs["final_step"], export_model_steps=SAVE_EVERY, shuffle_seed=SEED,
        log_every_steps=1, distribution_strategy="one_device")
    result = trainer.train(config)
    assert result.step == runs["final_step"]
    assert os.path.basename(result.checkpoint) == f"ckpt-{runs['final_step']}"
    workers_checkpoint = os.path.join(train_dir, f"ckpt-{runs['final_step']}")
    reference = dict(tf.train.list_variables(result.checkpoint))
    compared = 0
    for name, _ in tf.train.list_variables(workers_checkpoint):
        if name.startswith("model/") or name.startswith("optimizer/"):
            np.testing.assert_allclose(
                tf.train.load_variable(workers_checkpoint, name),
                tf.train.load_variable(result.checkpoint, name), rtol=1e-4, atol=1e-6,
                err_msg=name)
            assert name in reference
            compared += 1
    assert compared >= 4  # weights, biases and their Adam slots at least


def test_tf_config_errors_say_what_is_wrong():
    example = '{"cluster": {"worker": ["host0:2222", "host1:2222"]}'
    cases = (
        ({}, "--distribution_strategy=multi_worker needs the TF_CONFIG environment variable"),
        ({"TF_CONFIG": "{nope"}, "TF_CONFIG is not valid JSON"),
        ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1"]},
                                   "task": {"type": "worker", "index": 0}})},
         "TF_CONFIG cluster has jobs ['ps']: multi_worker training uses only 'worker'"),
        ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:1"]},
                                   "task": {"type": "worker", "index": 2}})},
         "TF_CONFIG task index 2 is out of range for job 'worker', which has 2 task(s)"),
        ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a"]},
                                   "task": {"type": "worker", "index": 0}})},
         "TF_CONFIG cluster job 'worker' must list 'host:port' addresses; got ['a']"),
    )
    for environ, message in cases:
        with pytest.raises(multi_worker.ClusterConfigError, match="^" + re.escape(message)):
            multi_worker.cluster_task_from_tf_config(environ)
    task = multi_worker.cluster_task_from_tf_config({"TF_CONFIG": json.dumps(
        {"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:1"]},
         "task": {"type": "worker", "index": 0}})})
    assert (task.num_workers, task.is_chief, task.name) == (3, False, "worker 0")
    assert example in multi_worker._TF_CONFIG_EXAMPLE


def test_single_machine_strategies_are_left_alone():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    assert multi_worker.is_chief(strategy) and multi_worker.is_chief(tf.distribute.get_strategy())
    assert multi_worker.any_worker(strategy, True, False) == (True, False)
    tensors = [tf.constant([1.0, 2.0])]
    assert multi_worker.all_reduce_mean(strategy, tensors)[0] is tensors[0]
    multi_worker.check_train_config(strategy, TrainConfig(shuffle_seed=None))


# ----------------------------------------------------------------------------------------------
# Model parallelism inside each worker: a MOD tree over two logical CPUs per worker.


@pytest.fixture(scope="module")
def model_parallel_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("model_parallel")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=REPO, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        log = open(output_dir / f"worker{index}.log", "w+")
        workers.append((subprocess.Popen(
            [sys.executable, os.path.join(REPO, "tests", "training", "multi_worker_mod_worker.py"),
             str(output_dir)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            text=True), log))
    outputs = _finish(workers, time.time() + RUN_TIMEOUT_SECS)
    return output_dir, outputs


def _worker_arrays(output_dir, index, prefix):
    with np.load(output_dir / f"worker{index}.npz") as saved:
        keys = sorted((key for key in saved if key.startswith(prefix)),
                      key=lambda key: int(key.split("_")[1]))
        return [saved[key] for key in keys]


def test_model_parallel_workers_hold_one_model(model_parallel_run):
    output_dir, outputs = model_parallel_run
    assert outputs[1][0] == 0, _diagnosis(outputs[1][1])
    with open(output_dir / "worker0.json") as handle:
        report = json.load(handle)
    # Each worker placed its two sub-trees on its own two devices.
    assert report["subtree_devices"] == [[0], [1]]
    before = [_worker_arrays(output_dir, index, "before_") for index in range(2)]
    assert any(not np.array_equal(a, b) for a, b in zip(*before))  # different seeds
    for prefix in ("initial_", "final_"):  # broadcast, then identical updates: bit-equal
        for a, b in zip(*(_worker_arrays(output_dir, index, prefix) for index in range(2))):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(_worker_arrays(output_dir, 0, "initial_"), before[0]):  # the chief's values
        np.testing.assert_array_equal(a, b)


def test_model_parallel_steps_equal_summed_gradients_of_the_halves(model_parallel_run):
    """Reference without any strategy or placement: the gradients of each half of the batch
    (batch norm sees each half alone, as on each worker) summed (the starter's towers), moving
    statistics averaged."""
    sys.path.insert(0, os.path.join(REPO, "tests", "training"))
    try:
        import multi_worker_mod_worker as script  # noqa: E402 (constants and builders only)
    finally:
        sys.path.pop(0)
    import tf_keras as keras

    output_dir, _ = model_parallel_run
    model = script.build_model(seed=0)
    for variable, value in zip(model.variables, _worker_arrays(output_dir, 0, "initial_")):
        variable.assign(value)
    optimizer = keras.optimizers.Adam(0.01, epsilon=1e-8)  # the workers: TF1 AdamOptimizer
    loss_fn = script.loss_function(model)
    features, labels = script.global_batch()
    half = script.GLOBAL_BATCH // 2
    statistics = [v for v in model.non_trainable_variables if v.dtype.is_floating]
    for _ in range(script.STEPS):
        start_statistics = [v.numpy() for v in statistics]
        gradients, end_statistics = [], []
        for part in (slice(0, half), slice(half, 2 * half)):
            for variable, value in zip(statistics, start_statistics):
                variable.assign(value)
            with tf.GradientTape() as tape:
                outputs = model({k: v[part] for k, v in features.items()}, training=True)
                loss = loss_fn(outputs, labels[part])
            gradients.append(tape.gradient(loss, model.trainable_variables))
            end_statistics.append([v.numpy() for v in statistics])
        optimizer.apply_gradients(zip([a + b for a, b in zip(*gradients)],
                                      model.trainable_variables))
        for variable, a, b in zip(statistics, *end_statistics):
            variable.assign((a + b) / 2)
    for variable, value in zip(model.variables, _worker_arrays(output_dir, 0, "final_")):
        np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5, atol=1e-6,
                                   err_msg=variable.name)


def test_a_lost_model_parallel_worker_is_reported(model_parallel_run):
    output_dir, outputs = model_parallel_run
    returncode, log = outputs[0]
    assert returncode == 3, _diagnosis(log)
    assert re.search(
        r"^multi-worker training lost a worker \(\w+Error: .+\); worker 0 stops, and so does every "
        r"other worker\. Restart all workers with the same TF_CONFIG and flags: training starts "
        r"from scratch \(no checkpoint in " + re.escape(str(output_dir)) + r" yet\)\.$",
        log, re.MULTILINE), log[-3000:]


def test_describe_lost_peer_keeps_the_reason_and_the_peer():
    message = ("Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most "
               "recent call last):\n  File \"train.py\", line 1, in <module>\n\nCollective ops "
               "is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC error "
               "information from remote target /job:worker/replica:0/task:1 while calling "
               "/tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received from peer  "
               "{grpc_message:\"recvmsg:Connection reset by peer\", grpc_status:14}")
    error = tf.errors.UnavailableError(None, None, message)
    assert multi_worker.describe_lost_peer(error) == (
        "UnavailableError: recvmsg:Connection reset by peer (from /job:worker/replica:0/task:1)")
    plain = tf.errors.DeadlineExceededError(
        None, None, "Graph execution error:\n\nCollective timed out after 30 s\n\t [[{{node x}}]]")
    assert multi_worker.describe_lost_peer(plain) == (
        "DeadlineExceededError: Collective timed out after 30 s")


# ----------------------------------------------------------------------------------------------
# train.py itself with a MOD tree over each worker's two logical CPUs.

MOD_TREE_FLAGS = ["--model=MixtureModel", "--mixture_base_model=FrameLevelLogisticModel",
                  "--mod_tree=2x2", "--num_cpu_devices=2"]


@pytest.fixture(scope="module")
def train_py_model_parallel_run(tmp_path_factory):
    """Two train.py workers, each placing the 2x2 tree's sub-trees on its two logical CPUs; a
    checkpoint after each of 2 steps."""
    workspace = tmp_path_factory.mktemp("train_py_model_parallel")
    pattern = _write_data(str(workspace))
    train_dir = str(workspace / "train")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    flags = [flag for flag in _train_flags(train_dir, pattern, 2)
             if not flag.startswith(("--model=", "--export_model_steps",
                                     "--average_replica_gradients"))]
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        log = open(workspace / f"worker{index}.log", "w+")
        workers.append((subprocess.Popen(
            [sys.executable, "train.py", *flags, *MOD_TREE_FLAGS, "--export_model_steps=1"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True), log))
    outputs = _finish(workers, time.time() + RUN_TIMEOUT_SECS)
    return dict(train_dir=train_dir, pattern=pattern, outputs=outputs)


def test_train_py_trains_a_placed_mod_tree_one_model_per_worker(train_py_model_parallel_run,
                                                               tmp_path):
    """Step 2 of the workers == the reference from their checkpoint 1: the next global batch's
    halves (one per worker, batch norm on each half alone), gradients summed, per-variable
    clipping, Adam, moving statistics averaged."""
    run = train_py_model_parallel_run
    train_dir = run["train_dir"]
    for index, (returncode, log) in enumerate(run["outputs"]):
        assert returncode == 0, f"worker {index}:\n{_diagnosis(log)}"
        assert re.search(r"One MixtureModel per worker, its sub-trees on "
                         r"/job:worker/replica:0/task:\d/device:CPU:0, "
                         r"/job:worker/replica:0/task:\d/device:CPU:1; gradients summed over 2 "
                         r"workers", log), _diagnosis(log)
        assert f"train.py: stopped at step 2 (max_steps); checkpoint {train_dir}/ckpt-2" in log
    reference_dir = str(tmp_path / "reference")
    os.makedirs(reference_dir)
    for name in os.listdir(train_dir):
        if name.startswith("ckpt-1.") or name == "model_flags.json":
            shutil.copy(os.path.join(train_dir, name), reference_dir)
    with open(os.path.join(reference_dir, "checkpoint"), "w") as handle:
        handle.write('model_checkpoint_path: "ckpt-1"\nall_model_checkpoint_paths: "ckpt-1"\n')
    with open(os.path.join(train_dir, "model_flags.json")) as handle:
        model_flags = json.load(handle)
    config = TrainConfig(
        train_dir=reference_dir, train_data_pattern=run["pattern"],
        data=DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                        frame_features=True, num_classes=NUM_CLASSES, max_frames=MAX_FRAMES),
        model="MixtureModel", model_hparams=model_flags["hparams"],
        batch_size=2 * BATCH_PER_WORKER, base_learning_rate=0.1, num_epochs=1000,
        shuffle_seed=SEED, distribution_strategy="none")
    reference = trainer.Trainer(config)
    assert reference.step == 1
    batch = next(reference.iterator)  # the input position was restored with checkpoint 1
    model = reference.model
    statistics = [v for v in model.non_trainable_variables if v.dtype.is_floating]
    start_statistics = [v.numpy() for v in statistics]
    gradients, end_statistics = [], []
    for part in (slice(0, BATCH_PER_WORKER), slice(BATCH_PER_WORKER, 2 * BATCH_PER_WORKER)):
        for variable, value in zip(statistics, start_statistics):
            variable.assign(value)
        half = {key: value[part] for key, value in batch.items()}
        with tf.GradientTape() as tape:
            outputs = model(inputs.model_inputs(half, config.data), training=True)
            loss = objective.training_loss(model, outputs, half["labels"], None,
                                           reference.label_loss, 1.0)["total_loss"]
        gradients.append(tape.gradient(loss, model.trainable_variables))
        end_statistics.append([v.numpy() for v in statistics])
    reference.optimizer.apply_gradients(zip([a + b for a, b in zip(*gradients)],
                                            model.trainable_variables))
    for variable, a, b in zip(statistics, *end_statistics):
        variable.assign((a + b) / 2)
    saved = tf.train.Checkpoint(model=model).save(str(tmp_path / "reference_step2"))
    workers_checkpoint = os.path.join(train_dir, "ckpt-2")
    compared = 0
    for name, _ in tf.train.list_variables(saved):
        if name.startswith("model/"):
            np.testing.assert_allclose(tf.train.load_variable(saved, name),
                                       tf.train.load_variable(workers_checkpoint, name),
                                       rtol=1e-5, atol=1e-6, err_msg=name)
            compared += 1
    assert compared >= 12  # 4 leaves' kernels and biases, 3 gates' kernels and batch norms
