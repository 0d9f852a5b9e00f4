"""Training across machines: `--distribution_strategy=multi_worker`.

Every machine runs the same `train.py` command; `TF_CONFIG` tells each process the cluster and its
own place in it. tf.distribute's MultiWorkerMirroredStrategy keeps one replica per worker (per
GPU on GPU workers) and all-reduces the gradients with collective ops.

What this module adds around the strategy (the trainer calls it at a few marked points):
- TF_CONFIG is checked up front, with errors that say what is wrong;
- only the chief writes into train_dir; the other workers still take part in every save (saving
  may read variables whose value is an all-reduce) but write to a scratch directory that is
  deleted right away;
- decisions that each worker makes on its own (a checkpoint is due by the clock, a SIGTERM
  arrived) are agreed on by all workers, or one worker would enter a collective alone and wait
  for ever;
- a lost worker ends the job with a message saying how to resume, and every worker restores from
  the chief's newest checkpoint in train_dir when restarted.

Input: each worker reads only its share of the data (its files, or its records when there are
fewer files than workers: `distribution.input_shard`) and trains on a batch of its own; the
global batch is the workers' batches together. The pipelines differ, so each worker saves its own
input position (`InputPositions`, beside the chief's checkpoint, before it) and restores it on
restart. Shares may hold different numbers of batches: the workers agree before every step that
each still has one (`any_worker`), so all stop at the same step.

Model parallelism inside a worker (MOD trees over the worker's devices) cannot live under the
strategy's scope (the strategy would put every variable on its replica device). Such a model is
built outside the scope on every worker and trained with
`yt8m.training.model_parallel.make_model_parallel_step`: `broadcast_from_chief` makes the copies
equal and `all_reduce_sum` sums the gradients over the workers before each worker applies
them.
"""
import contextlib
import dataclasses
import json
import os
import re
import socket

from absl import logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.training import checkpoints
from yt8m.core import errors
from yt8m.core import files

STRATEGY_NAME = "multi_worker"
TF_CONFIG = "TF_CONFIG"
# Non-chief workers save to train_dir/.scratch-<task type>-<index> (inside train_dir, so no second
# location has to be configured) and delete it after each save. The leading dot keeps it out of
# checkpoint and TensorBoard globs.
SCRATCH_PREFIX = ".scratch-"
_WORKER_JOBS = ("chief", "worker")
# What a collective raises when a peer is gone: its connection reset (Unavailable), the health
# check gave up on it (Unavailable, or Cancelled for collectives aborted because of it), or a
# collective timed out (DeadlineExceeded).
_LOST_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                     tf.errors.CancelledError, tf.errors.AbortedError)
_TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host0:2222", "host1:2222"]}, '
                      '"task": {"type": "worker", "index": 0}}')


class ClusterConfigError(errors.InvalidInputError):
    pass


class WorkerLostError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class ClusterTask:
    """This process's place in the cluster described by TF_CONFIG."""
    task_type: str
    task_id: int
    cluster: dict  # job name -> list of "host:port"

    @property
    def num_workers(self):
        return sum(len(self.cluster.get(job, ())) for job in _WORKER_JOBS)

    @property
    def is_chief(self):
        """The chief writes checkpoints and summaries: the "chief" task, else worker 0."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_id == 0
                                             and "chief" not in self.cluster)

    @property
    def name(self):
        return f"{self.task_type} {self.task_id}"


def cluster_task_from_tf_config(environ=None):
    """Parses and checks TF_CONFIG; errors say what is wrong and show the expected shape."""
    environ = os.environ if environ is None else environ
    text = environ.get(TF_CONFIG, "")
    if not text.strip():
        raise ClusterConfigError(
            f"--distribution_strategy={STRATEGY_NAME} needs the {TF_CONFIG} environment variable "
            f"on every worker, e.g. {TF_CONFIG}='{_TF_CONFIG_EXAMPLE}' (see docs/scale_out.md)")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ClusterConfigError(f"{TF_CONFIG} is not valid JSON ({error}): {text!r}") from None
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ClusterConfigError(f"{TF_CONFIG} needs a 'cluster' and a 'task' object, e.g. "
                                 f"{_TF_CONFIG_EXAMPLE}; got {text!r}")
    other_jobs = sorted(set(cluster) - set(_WORKER_JOBS))
    if other_jobs:
        raise ClusterConfigError(
            f"{TF_CONFIG} cluster has jobs {other_jobs}: {STRATEGY_NAME} training uses only "
            "'worker' (and optionally one 'chief') tasks; parameter servers and evaluators "
            "belong to other strategies (run eval.py on its own)")
    for job, addresses in cluster.items():
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(address, str) and ":" in address for address in addresses)):
            raise ClusterConfigError(f"{TF_CONFIG} cluster job {job!r} must list 'host:port' "
                                     f"addresses; got {addresses!r}")
    if len(cluster.get("chief", ())) > 1:
        raise ClusterConfigError(f"{TF_CONFIG} lists {len(cluster['chief'])} chiefs; at most "
                                 "one is allowed")
    task_type, task_id = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise ClusterConfigError(f"{TF_CONFIG} task type {task_type!r} is not a job of the "
                                 f"cluster ({sorted(cluster)})")
    if not isinstance(task_id, int) or not 0 <= task_id < len(cluster[task_type]):
        raise ClusterConfigError(f"{TF_CONFIG} task index {task_id!r} is out of range for job "
                                 f"{task_type!r}, which has {len(cluster[task_type])} task(s)")
    return ClusterTask(task_type, task_id, {job: list(addresses)
                                            for job, addresses in cluster.items()})


def local_tf_configs(num_workers):
    """TF_CONFIG values for a cluster of `num_workers` workers on this machine (127.0.0.1, ports
    free when asked): multi-worker training on one machine, for tests and benchmarks."""
    sockets = [socket.socket() for _ in range(num_workers)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]}
    for sock in sockets:
        sock.close()
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            for index in range(num_workers)]


def make_multi_worker_strategy():
    """MultiWorkerMirroredStrategy over the cluster in TF_CONFIG.

    Must be called before TensorFlow's runtime starts (collectives are configured at start-up).
    The constructor waits for every worker of TF_CONFIG to join, for as long as it takes (inside
    TensorFlow's runtime, holding the GIL: no Python timeout can interrupt it; bound it with the
    launcher, e.g. a Kubernetes Job deadline). Collectives use NCCL between GPUs and gRPC rings
    between hosts (CommunicationImplementation.AUTO).
    """
    task = cluster_task_from_tf_config()
    logging.info("Joining the cluster as %s of %d workers: %s (waiting for all of them)",
                 task.name, task.num_workers, task.cluster)
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    logging.info("%s: %d replicas in sync over %d workers", task.name,
                 strategy.num_replicas_in_sync, task.num_workers)
    return strategy


def is_multi_worker(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and resolver is not None and bool(resolver.cluster_spec().as_dict()))


def cluster_task_of(strategy):
    """The ClusterTask of this process under a multi-worker strategy."""
    resolver = strategy.cluster_resolver
    return ClusterTask(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def is_chief(strategy):
    """True for the worker that writes checkpoints and summaries (always, outside multi-worker
    training)."""
    if not is_multi_worker(strategy):
        return True
    return cluster_task_of(strategy).is_chief


def check_train_config(strategy, config):
    """Settings multi-worker training needs; a no-op for the other strategies."""
    if not is_multi_worker(strategy):
        return
    if config.shuffle_seed is None:
        raise errors.InvalidInputError(
            f"--distribution_strategy={STRATEGY_NAME} needs --shuffle_seed: workers that split "
            "the records of too few files must list them in the same shuffled order, and a "
            "restarted job must shuffle as the first one did")


# ----------------------------------------------------------------------------------------------
# Checkpoints: the chief writes train_dir, the others a scratch directory they delete.


def scratch_dir(train_dir, strategy):
    resolver = strategy.cluster_resolver
    return os.path.join(train_dir, f"{SCRATCH_PREFIX}{resolver.task_type}-{resolver.task_id}")


class _ScratchCheckpointManager:
    """What the trainer needs of tf.train.CheckpointManager, for a worker that is not the chief:
    `save` writes to a scratch directory and deletes it; `latest_checkpoint` is the chief's."""

    def __init__(self, checkpoint, train_dir, directory):
        self._train_dir = train_dir
        self._directory = directory
        self._manager = checkpoints.make_checkpoint_manager(checkpoint, directory, max_to_keep=1)
        self._saved_number = None

    @property
    def latest_checkpoint(self):
        if self._saved_number is not None:  # the path the chief wrote at the same step
            return os.path.join(self._train_dir, f"{checkpoints.CHECKPOINT_PREFIX}-"
                                                 f"{self._saved_number}")
        return tf.train.latest_checkpoint(self._train_dir)

    def save(self, checkpoint_number):
        self._manager.save(checkpoint_number=checkpoint_number)
        files.remove(self._directory)  # never through a link planted there
        self._saved_number = checkpoint_number
        return self.latest_checkpoint


def make_checkpoint_manager(checkpoint, train_dir, max_to_keep, strategy):
    """The trainer's checkpoint manager: train_dir's for the chief (and outside multi-worker
    training), a scratch one for the other workers."""
    if is_chief(strategy):
        return checkpoints.make_checkpoint_manager(checkpoint, train_dir, max_to_keep)
    return _ScratchCheckpointManager(checkpoint, train_dir, scratch_dir(train_dir, strategy))


class InputPositions:
    """This worker's input-pipeline position at each of the chief's checkpoints.

    TensorFlow saves a tf.data iterator in the checkpoint of the process that owns it, and only
    the chief's checkpoint is kept: with each worker reading its own share, the other positions
    would be lost. So every worker writes its own: train_dir/input_positions/<task>/position-<step>
    (the iterator and the signature of the pipeline it belongs to), before the checkpoint of the
    same step; `restore(step)` reads it back. Kept as long as the checkpoints
    (`--keep_checkpoint_max`).
    """

    DIRECTORY = "input_positions"

    def __init__(self, iterator, input_signature, train_dir, strategy, max_to_keep):
        task = cluster_task_of(strategy)
        self.directory = os.path.join(train_dir, self.DIRECTORY,
                                      f"{task.task_type}-{task.task_id}")
        self._input_signature = input_signature
        self._iterator = iterator
        self._manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(data_iterator=iterator, input_signature=input_signature),
            self.directory, max_to_keep=max_to_keep or None,  # 0: keep all, as the checkpoints
            checkpoint_name="position")

    def path(self, step):
        return os.path.join(self.directory, f"position-{step}")

    def save(self, step):
        return self._manager.save(checkpoint_number=step)

    def restore(self, step):
        """Restores the position saved at `step` (False, and the data restarts, when there is
        none for this pipeline)."""
        return checkpoints.restore_input_position(self.path(step), self._iterator,
                                                  self._input_signature)


# ----------------------------------------------------------------------------------------------
# Agreement between workers.


def _all_reduce_sum(strategy, value_fn):
    """Sum over all replicas of every worker of `value_fn(replica_id)` (a tensor or a list of
    them; replica_id is the replica's int32 id in sync group). Works eagerly and in tf.function."""
    def replica_fn():
        context = tf.distribute.get_replica_context()
        replica_id = tf.convert_to_tensor(context.replica_id_in_sync_group, tf.int32)
        # tf.identity here puts each value on the replica's device (a collective needs one; a
        # model-parallel sub-tree's gradient may live on another device or none yet).
        values = tf.nest.map_structure(tf.identity, value_fn(replica_id))
        return context.all_reduce(tf.distribute.ReduceOp.SUM, values)

    return strategy.experimental_local_results(strategy.run(replica_fn))[0]


def any_worker(strategy, *decisions):
    """Each of `decisions` (bools) becomes True on every worker when it is True on any worker.

    Outside multi-worker training the decisions come back unchanged without any communication.
    """
    if not is_multi_worker(strategy):
        return tuple(bool(decision) for decision in decisions)
    count_votes = getattr(strategy, "_yt8m_count_votes", None)
    if count_votes is None:  # traced once: eager collectives are slow
        count_votes = tf.function(lambda votes: _all_reduce_sum(strategy, lambda _: votes))
        strategy._yt8m_count_votes = count_votes
    votes = tf.constant([int(bool(decision)) for decision in decisions], tf.int32)
    return tuple(bool(count > 0) for count in count_votes(votes).numpy())


def num_workers(strategy):
    """Workers of a multi-worker strategy (its replicas: one per local device of each worker)."""
    return strategy.num_replicas_in_sync // len(strategy.extended.worker_devices)


def all_reduce_sum(strategy, tensors):
    """Element-wise sum over the workers of a list of tensors, each worker's counted once (e.g.
    the gradients of a model built outside the strategy scope, one model per worker). Call it in
    cross-replica context (not inside strategy.run); every worker must call it with tensors of
    the same shapes. The result is bit-identical on every worker."""
    tensors = list(tensors)
    if not is_multi_worker(strategy):
        return tensors
    local_replicas = len(strategy.extended.worker_devices)

    def worker_share(replica):
        # A worker with several local replicas (one per GPU) contributes through its first one:
        # replica ids run worker by worker (id = worker * local replicas + local index).
        if local_replicas == 1:
            return tensors
        first = tf.equal(replica % local_replicas, 0)
        return [tf.where(first, tensor, tf.zeros_like(tensor)) for tensor in tensors]

    return list(_all_reduce_sum(strategy, worker_share))


def all_reduce_mean(strategy, tensors):
    """Element-wise mean over the workers (see all_reduce_sum)."""
    tensors = list(tensors)
    if not is_multi_worker(strategy):
        return tensors
    return [total / num_workers(strategy) for total in all_reduce_sum(strategy, tensors)]


def broadcast_from_chief(strategy, variables):
    """Sets every worker's `variables` to the chief's values (for a model built outside the
    strategy scope, whose initial values may differ from worker to worker)."""
    if not is_multi_worker(strategy):
        return
    variables = list(variables)
    # Only replica 0 (the chief's first device) contributes, so the sum is its value exactly.
    summed = _all_reduce_sum(
        strategy, lambda replica: [tf.where(replica == 0, variable, tf.zeros_like(variable))
                                   for variable in variables])
    for variable, value in zip(variables, summed):
        variable.assign(value)


def barrier(strategy):
    """Returns once every worker has called it (a no-op outside multi-worker training)."""
    any_worker(strategy, False)


def worker_index(strategy):
    """0 .. workers-1 in the order of the strategy's replicas: the chief first, then the workers
    in TF_CONFIG order (which share of the data this worker reads)."""
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return 0
    return resolver.task_id + (1 if "chief" in resolver.cluster_spec().as_dict() else 0)


# ----------------------------------------------------------------------------------------------
# A lost worker.


_GENERIC_LINES = ("Graph execution error:", "Detected at node", "Additional GRPC error",
                  "The error could be from a previous operation")


def describe_lost_peer(error):
    """The informative part of a collective's error: the reason (gRPC's message when there is one,
    else the first line that is neither TensorFlow boilerplate nor the Python stack) and the
    peer it came from when named."""
    text = str(getattr(error, "message", None) or error)
    grpc_message = re.search(r'grpc_message:"([^"]+)"', text)
    if grpc_message:
        reason = grpc_message.group(1)
    else:
        lines = [line.strip() for line in text.splitlines()
                 if line.strip() and not line.startswith((" ", "\t"))]
        reason = next((line for line in lines if not line.startswith(_GENERIC_LINES)),
                      lines[0] if lines else "")
    peer = re.search(r"remote target (/job:\S+)", text)
    return f"{type(error).__name__}: {reason}" + (f" (from {peer.group(1)})" if peer else "")


@contextlib.contextmanager
def lost_worker_errors(strategy, train_dir):
    """Turns the errors of collectives whose peer is gone into a WorkerLostError that says how to
    resume; outside multi-worker training nothing is caught."""
    if not is_multi_worker(strategy):
        yield
        return
    try:
        yield
    except _LOST_PEER_ERRORS as error:
        resolver = strategy.cluster_resolver
        latest = tf.train.latest_checkpoint(train_dir)
        resume = (f"resumes from {latest}" if latest
                  else f"starts from scratch (no checkpoint in {train_dir} yet)")
        raise WorkerLostError(
            f"multi-worker training lost a worker ({describe_lost_peer(error)}); "
            f"{resolver.task_type} {resolver.task_id} stops, and so does every other worker. "
            f"Restart all workers with the same {TF_CONFIG} and flags: training {resume}.") \
            from error
