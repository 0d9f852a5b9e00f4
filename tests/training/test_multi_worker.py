"""--distribution_strategy=multi_worker: two train.py workers on 127.0.0.1.

Each worker reads its own share of the data (here one of the two files each). Run 1: both workers
train until worker 1 is killed; worker 0 must stop with the lost-worker message. Run 2: both
restart with the same command, resume from the chief's newest checkpoint and their own saved
input positions, and finish at --max_steps. The final checkpoint is then checked against one
replica (in this process) continuing from the checkpoint run 2 resumed from with the same global
batches: each worker's share, positioned by skipping the batches trained before it.
A second launch counts the videos each worker's training pipeline parses in one epoch.
"""
import json
import os
import re
import shutil
import signal
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


def _write_data(directory, shards=2, videos_per_shard=16, prefix="train"):
    rng = np.random.default_rng(0)
    for shard in range(shards):
        path = os.path.join(directory, f"{prefix}{shard}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for index in range(videos_per_shard):
                length = int(rng.integers(3, 2 * MAX_FRAMES))
                codes = {"rgb": rng.integers(0, 256, (length, 1024), dtype=np.uint8),
                         "audio": rng.integers(0, 256, (length, 128), dtype=np.uint8)}
                labels = rng.choice(NUM_CLASSES, size=2, replace=False).tolist()
                writer.write(records.make_sequence_example(f"v{shard}-{index}", labels, codes)
                             .SerializeToString())
    return os.path.join(directory, f"{prefix}*.tfrecord")


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


def _launch(command, workspace, run_name):
    """Starts `python COMMAND...` as the two workers of a cluster on 127.0.0.1 (logs in
    workspace/<run_name>-worker<i>.log); returns [(process, log)]."""
    workers = []
    for index, tf_config in enumerate(multi_worker.local_tf_configs(2)):
        env = dict(os.environ, PYTHONPATH=REPO, TF_CONFIG=tf_config)
        log = open(workspace / f"{run_name}-worker{index}.log", "w+")
        workers.append((subprocess.Popen([sys.executable, *command], cwd=REPO, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, text=True), log))
    return workers


def _start_workers(workspace, train_dir, pattern, max_steps, run_name):
    return _launch(["train.py", *_train_flags(train_dir, pattern, max_steps)], workspace,
                   run_name)


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
        assert (f"Worker {index} of 2 reads its share of 2 file(s) (by files) in batches of "
                f"{BATCH_PER_WORKER}") in log, _diagnosis(log)
        assert f"Resumed from {runs['resumed_from']} at step {runs['resumed_step']}" in log
        assert "the data restarts from its beginning" not in log, _diagnosis(log)
        # Its own input position, written by itself beside the chief's checkpoint.
        position = os.path.join(train_dir, multi_worker.InputPositions.DIRECTORY,
                                f"worker-{index}", f"position-{runs['resumed_step']}.index")
        assert os.path.exists(position)
        # Each worker reports the checkpoint the chief wrote. (A worker still exiting when the
        # chief has gone may log the chief's coordination service as unreachable after this.)
        assert (f"\ntrain.py: stopped at step {final_step} (max_steps); checkpoint "
                f"{train_dir}/ckpt-{final_step}\n") in log, _diagnosis(log)
    # Only the chief wrote into train_dir; worker 1's scratch saves are gone.
    names = os.listdir(train_dir)
    assert not [name for name in names if name.startswith(multi_worker.SCRATCH_PREFIX)], names
    assert f"ckpt-{final_step}.index" in names
    assert tf.train.latest_checkpoint(train_dir) == os.path.join(train_dir, f"ckpt-{final_step}")


def _shard_batches(pattern, data, worker, skip):
    """Worker `worker`'s training batches (its share: file `worker` of 2) after the first `skip`,
    built from the readers here, independently of the saved input positions."""
    dataset = inputs.training_dataset(inputs.require_files(pattern, "pattern"), data,
                                      BATCH_PER_WORKER, num_epochs=1000, seed=SEED,
                                      shard=(worker, 2))
    return iter(dataset.skip(skip))


def test_final_checkpoint_equals_one_replica_continuing_the_same_batches(runs, tmp_path):
    """Two workers x 4 examples all-reduced == one replica with the global batch of 8 made of the
    two workers' batches: restore the checkpoint run 2 started from (model, Adam slots), position
    each worker's share after the batches trained before it, and train the same steps here; the
    weights must match the checkpoint the workers wrote."""
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
    data = DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                      frame_features=True, num_classes=NUM_CLASSES, max_frames=MAX_FRAMES)
    config = TrainConfig(
        train_dir=reference_dir, train_data_pattern=runs["pattern"], data=data,
        model="FrameLevelLogisticModel", model_hparams=model_flags["hparams"],
        batch_size=2 * BATCH_PER_WORKER, base_learning_rate=0.1, num_epochs=1000,
        max_steps=runs["final_step"], export_model_steps=SAVE_EVERY, shuffle_seed=SEED,
        log_every_steps=1, distribution_strategy="one_device", checkpoint_input_pipeline=False)
    reference = trainer.Trainer(config)
    assert reference.step == runs["resumed_step"]
    shares = [_shard_batches(runs["pattern"], data, worker, runs["resumed_step"])
              for worker in range(2)]
    for _ in range(runs["final_step"] - runs["resumed_step"]):
        halves = [next(share) for share in shares]
        reference.train_step({key: tf.concat([half[key] for half in halves], 0)
                              for key in halves[0]})
    assert reference.step == runs["final_step"]
    reference_checkpoint = reference.checkpoint.write(str(tmp_path / "reference_final"))
    workers_checkpoint = os.path.join(train_dir, f"ckpt-{runs['final_step']}")
    names = dict(tf.train.list_variables(reference_checkpoint))
    compared = 0
    for name, _ in tf.train.list_variables(workers_checkpoint):
        if name.startswith("model/") or name.startswith("optimizer/"):
            assert name in names
            np.testing.assert_allclose(
                tf.train.load_variable(workers_checkpoint, name),
                tf.train.load_variable(reference_checkpoint, name), rtol=1e-4, atol=1e-6,
                err_msg=name)
            compared += 1
    assert compared >= 4  # weights, biases and their Adam slots at least


# ----------------------------------------------------------------------------------------------
# Each worker parses only its share: counted.


@pytest.fixture(scope="module")
def input_run(tmp_path_factory):
    """Two workers read one epoch of two data sets through the trainer's pipeline: 2 files of 16
    videos (split by files) and 1 file of 24 videos (fewer files than workers: split by
    records)."""
    workspace = tmp_path_factory.mktemp("multi_worker_input")
    by_files = _write_data(str(workspace), shards=2, videos_per_shard=16, prefix="two")
    by_records = _write_data(str(workspace), shards=1, videos_per_shard=24, prefix="one")
    workers = _launch([os.path.join(REPO, "tests", "training", "multi_worker_input_worker.py"),
                       str(workspace), str(workspace / "train"), by_files, by_records],
                      workspace, "input")
    outputs = _finish(workers, time.time() + RUN_TIMEOUT_SECS)
    for index, (returncode, log) in enumerate(outputs):
        assert returncode == 0, f"worker {index}:\n{_diagnosis(log)}"
    reports = []
    for index in range(2):
        with open(workspace / f"worker{index}.json") as handle:
            reports.append(json.load(handle))
    return reports, by_files, by_records


@pytest.mark.parametrize("split, total", [("by files", 32), ("by records", 24)])
def test_workers_parse_disjoint_shares_covering_one_epoch(input_run, split, total):
    reports, by_files, by_records = input_run
    pattern = by_files if split == "by files" else by_records
    shares = [report[pattern] for report in reports]
    assert [share["shard"] for share in shares] == [[0, 2], [1, 2]]
    counts = [len(share["ids"]) for share in shares]
    assert counts == [total // 2, total // 2]              # each worker parsed half, counted
    ids = [set(share["ids"]) for share in shares]
    assert all(len(worker_ids) == count for worker_ids, count in zip(ids, counts))  # once each
    assert not ids[0] & ids[1]                             # disjoint
    expected = ({f"v{shard}-{index}" for shard in range(2) for index in range(16)}
                if split == "by files" else {f"v0-{index}" for index in range(24)})
    assert ids[0] | ids[1] == expected                     # together: the whole epoch
    if split == "by files":                                # worker i reads file i
        assert ids[0] == {f"v0-{index}" for index in range(16)}


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
    workers = _launch([os.path.join(REPO, "tests", "training", "multi_worker_mod_worker.py"),
                       str(output_dir)], output_dir, "model_parallel")
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
    """Two train.py workers, each placing the 2x2 tree's sub-trees on its two logical CPUs and
    reading its own share of the data; a checkpoint after each of 2 steps."""
    workspace = tmp_path_factory.mktemp("train_py_model_parallel")
    pattern = _write_data(str(workspace))
    train_dir = str(workspace / "train")
    flags = [flag for flag in _train_flags(train_dir, pattern, 2)
             if not flag.startswith(("--model=", "--export_model_steps",
                                     "--average_replica_gradients"))]
    workers = _launch(["train.py", *flags, *MOD_TREE_FLAGS, "--export_model_steps=1"],
                      workspace, "mod_tree")
    outputs = _finish(workers, time.time() + RUN_TIMEOUT_SECS)
    return dict(train_dir=train_dir, pattern=pattern, outputs=outputs)


def test_train_py_trains_a_placed_mod_tree_one_model_per_worker(train_py_model_parallel_run,
                                                               tmp_path):
    """Step 2 of the workers == the reference from their checkpoint 1: each worker's second batch
    of its share (batch norm on each alone), gradients summed, per-variable clipping, Adam,
    moving statistics averaged."""
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
    data = DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                      frame_features=True, num_classes=NUM_CLASSES, max_frames=MAX_FRAMES)
    config = TrainConfig(
        train_dir=reference_dir, train_data_pattern=run["pattern"], data=data,
        model="MixtureModel", model_hparams=model_flags["hparams"],
        batch_size=2 * BATCH_PER_WORKER, base_learning_rate=0.1, num_epochs=1000,
        shuffle_seed=SEED, distribution_strategy="none", checkpoint_input_pipeline=False)
    reference = trainer.Trainer(config)
    assert reference.step == 1
    halves = [next(_shard_batches(run["pattern"], data, worker, 1)) for worker in range(2)]
    model = reference.model
    statistics = [v for v in model.non_trainable_variables if v.dtype.is_floating]
    start_statistics = [v.numpy() for v in statistics]
    gradients, end_statistics = [], []
    for half in halves:
        for variable, value in zip(statistics, start_statistics):
            variable.assign(value)
        with tf.GradientTape() as tape:
            outputs = model(inputs.model_inputs(half, data), training=True)
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
