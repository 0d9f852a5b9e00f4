"""tf.distribute set-up: logical CPU devices, strategy choice, feeding batches to the replicas.

Batches come from a plain tf.data iterator (checkpointable, so resume continues at the same
position of the epoch), one per process: under multi-worker training each worker reads only its
share of the data (`input_shard`). `DeviceFeeder` splits each batch over the process's replicas
and places the slices on their devices, and can do so for the next batch while a step runs
(device prefetch). TensorFlow's own device prefetch (`experimental_distribute_dataset`,
`distribute_datasets_from_function`, `prefetch_to_device`) goes through iterators that cannot be
saved in a checkpoint (OwnedMultiDeviceIterator is not trackable), which would lose exact resume.
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.training import multi_worker
from yt8m.core.config import DISTRIBUTION_STRATEGIES as STRATEGIES
from yt8m.core import errors


def configure_local_devices(devices):
    """Applies train.py's LocalDevices (yt8m.core.config) before TensorFlow runs anything: at most
    --num_gpu GPUs are visible (the starter's towers: the first N GPUs; the strategy then
    mirrors over those, or runs on the one device), the CPU is split into --num_cpu_devices, and
    --log_device_placement logs where every operation runs."""
    tf.debugging.set_log_device_placement(devices.log_device_placement)
    limit_gpus(devices.num_gpu)
    configure_cpu_devices(devices.num_cpu_devices)


def limit_gpus(num_gpu):
    """Hides every local GPU after the first `num_gpu` (0: train on the CPU)."""
    if num_gpu < 0:
        raise ValueError(f"--num_gpu must be >= 0, got {num_gpu}")
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > num_gpu:
        try:
            tf.config.set_visible_devices(gpus[:num_gpu], "GPU")
        except RuntimeError as error:
            raise RuntimeError(f"--num_gpu={num_gpu}: the visible GPUs can only be chosen "
                               f"before TensorFlow runs its first op ({error})") from error


def configure_cpu_devices(num_devices):
    """Splits the CPU into `num_devices` logical devices (tests and demos of data parallelism).

    Must run before TensorFlow executes any op; TensorFlow refuses afterwards.
    """
    if num_devices < 1:
        raise errors.InvalidInputError(f"--num_cpu_devices must be >= 1, got {num_devices}")
    if num_devices == 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
    except RuntimeError as error:
        raise RuntimeError(
            f"--num_cpu_devices={num_devices}: the CPU can only be split before TensorFlow runs "
            f"its first op ({error})") from error


def make_strategy(name="default"):
    """Returns the tf.distribute strategy named by --distribution_strategy.

    default: mirrored over the visible local GPUs (--num_gpu of them) when there are several, else
      mirrored over the logical CPUs when --num_cpu_devices > 1, else one device (the GPU if
      any).
    mirrored: MirroredStrategy over all local GPUs, or over all logical CPUs without GPUs.
    one_device: OneDeviceStrategy on the first GPU, else the first CPU.
    multi_worker: MultiWorkerMirroredStrategy over the machines in TF_CONFIG (multi_worker.py).
    none: TensorFlow's default (no-op) strategy: variables go where `tf.device` puts them, which a
      MOD tree spread over several devices in one process needs (model parallelism).
    """
    if name == "multi_worker":  # first: listing devices would start TensorFlow's runtime, and
        # collectives must be configured before that
        return multi_worker.make_multi_worker_strategy()
    if name == "none":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    devices = [device.name for device in (gpus or cpus)]
    if name not in STRATEGIES:
        raise errors.InvalidInputError(
            f"--distribution_strategy={name!r} is not one of: {', '.join(STRATEGIES)}")
    if name == "mirrored" or (name == "default" and len(devices) > 1):
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy(devices[0])


def input_shard(strategy):
    """(worker index, workers): this process's share of the training data under multi-worker
    training; None (all of it) otherwise."""
    if not multi_worker.is_multi_worker(strategy):
        return None
    return (multi_worker.worker_index(strategy),
            multi_worker.cluster_task_of(strategy).num_workers)


def local_replicas(strategy):
    """Replicas of this process (all of them, except under multi-worker training)."""
    if multi_worker.is_multi_worker(strategy):
        return len(strategy.extended.worker_devices)
    return strategy.num_replicas_in_sync


def _replica_devices(strategy):
    """This process's replica devices, or None for the default strategy (no replicas: tensors
    stay where the model's own placement, e.g. a MOD tree's, needs them)."""
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return None
    return strategy.extended.worker_devices


def distribute_batch(strategy, batch):
    """Splits this process's batch (nest of tensors with a leading batch axis) evenly over its
    replicas; each slice is cut on the host and placed on its replica's device."""
    devices = _replica_devices(strategy)
    if devices is None:
        return batch
    count = len(devices)

    def replica_slice(context):
        index = context.replica_id_in_sync_group % count  # its place among this worker's

        def slice_of(tensor):
            size = tf.shape(tensor)[0] // count  # the trainer batches with drop_remainder
            return tensor[index * size:(index + 1) * size] if count > 1 else tensor

        with tf.device(devices[index]):
            return tf.nest.map_structure(lambda t: tf.identity(slice_of(t)), batch)

    return strategy.experimental_distribute_values_from_function(replica_slice)


class DeviceFeeder:
    """Batches of a host iterator, split over the replicas and placed on their devices.

    `prefetch()` fetches and places the next batch now, typically right after a step was started,
    so the copy to the devices overlaps the step (on GPUs; on CPUs there is nothing to copy).
    The trainer calls it only when no checkpoint is written before the next step: a saved
    iterator position then never includes a batch that was fetched but not trained on.
    """

    def __init__(self, strategy, iterator):
        self.strategy = strategy
        self.iterator = iterator
        self._next = None
        self._exhausted = False

    def _fetch(self):
        if self._exhausted:
            return None
        try:
            return distribute_batch(self.strategy, next(self.iterator))
        except StopIteration:
            self._exhausted = True
            return None

    def prefetch(self):
        if self._next is None:
            self._next = self._fetch()

    def next(self):
        """The next distributed batch, or None at the end of the data."""
        batch = self._next if self._next is not None else self._fetch()
        self._next = None
        return batch
