"""Custom training loop: tf.distribute, exact resume, periodic checkpoints, clean stop on signals.

One step = `strategy.run(replica_step)` inside a tf.function, so data parallelism (MirroredStrategy,
MultiWorkerMirroredStrategy) and models that place their own sub-models on devices (MOD trees)
both work; a MOD tree placed over the devices of each worker of a multi-worker run is one model
per worker, trained by `yt8m.training.model_parallel.make_model_parallel_step`. The optimizer
sums the replicas' gradients and then clips each variable's gradient (Keras `clipnorm`), as the
starter sums its towers' gradients and clips per variable; with --average_replica_gradients each
replica divides its loss by the number of replicas first. --mixed_precision=mixed_float16 scales
the loss and unscales the gradients around the backward pass (yt8m.training.mixed_precision).
"""
import contextlib
import dataclasses
import json
import math
import os
import signal
import time

from absl import logging

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from yt8m.core import errors
from yt8m.core import files
from yt8m.core import training_protocol
from yt8m.training import checkpoints
from yt8m.training import distribution
from yt8m.training import inputs
from yt8m.training import loss_guard
from yt8m.training import mixed_precision
from yt8m.training import model_parallel
from yt8m.core import model_flags as model_flags_lib
from yt8m.training import multi_worker
from yt8m.training import objective
from yt8m.training import train_dir_guard
from yt8m.metrics import gap as batch_gap
from yt8m.training.model_builder import (build_model, check_model_choice, hparam_defaults,
                                         label_loss_for, places_sub_models)
from yt8m.training.optimizers import make_optimizer
from yt8m.training.pruning_steps import PruningSteps
from yt8m.training.schedules import examples_staircase_decay


# Raised at a bad loss (kept here too: callers catch trainer.NonFiniteLossError).
NonFiniteLossError = loss_guard.NonFiniteLossError
DivergedLossError = loss_guard.DivergedLossError


class UnlabelledDataError(errors.InvalidInputError):
    pass


@dataclasses.dataclass
class TrainResult:
    step: int                 # global step reached
    checkpoint: str           # newest checkpoint written or restored ("" if none)
    stop_reason: str          # "max_steps", "end_of_data" or "signal <name>"
    last_loss: float          # total loss of the last step (nan when no step ran)
    examples_per_second: float  # over the whole run (all workers)
    examples_read: int = 0    # examples this process read and trained on in this run


class _StopRequests:
    """Turns SIGTERM/SIGINT into a request the loop honours after the current step."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        del frame
        if self.signal_name is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        logging.warning("Received %s: saving a checkpoint after this step, then exiting.",
                        self.signal_name)

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class Trainer:
    """Builds everything `train` needs from a TrainConfig; `run()` trains until a stop condition.

    Nothing is written before every option has been checked and the model, optimizer and input
    pipeline are built: then the train dir is locked (created if needed), temporaries a killed
    run left are removed and the newest intact checkpoint is restored. model_flags.json and the
    summaries are written once the first step has succeeded (finite loss, labelled data); a run
    that fails before leaves the train dir as it was (a train dir it created is removed).
    """

    def __init__(self, config, strategy=None, training_model_factory=None):
        self.config = config
        self.strategy = strategy or distribution.make_strategy(config.distribution_strategy)
        check_model_choice(config.model, config.data.frame_features)
        flags_record = model_flags_lib.model_flags_from_config(config)
        # A MOD tree placed over each worker's devices in a multi-worker run: one model per
        # worker, built outside the strategy scope, trained by model_parallel's step (gradients
        # summed over the workers); --batch_size examples per worker.
        self.model_per_worker = (multi_worker.is_multi_worker(self.strategy)
                                 and places_sub_models(flags_record))
        # The strategy that splits this process's batches over its replicas: none (the default
        # strategy) for a model per worker, whose batch feeds the whole tree.
        self.feed_strategy = (tf.distribute.get_strategy() if self.model_per_worker
                              else self.strategy)
        self.num_replicas = (multi_worker.cluster_task_of(self.strategy).num_workers
                             if self.model_per_worker else self.strategy.num_replicas_in_sync)
        self.global_batch_size = config.batch_size * self.num_replicas
        # What this process reads: all of the data, or its share under multi-worker training.
        self.input_shard = distribution.input_shard(self.strategy)
        self.local_batch_size = config.batch_size * (
            1 if self.model_per_worker else distribution.local_replicas(self.strategy))
        self.is_chief = multi_worker.is_chief(self.strategy)
        multi_worker.check_train_config(self.strategy, config)
        self.label_loss = label_loss_for(config.label_loss, config.model)
        files = inputs.require_files(config.train_data_pattern, "--train_data_pattern")
        self.model_flags = flags_record
        # A train dir of another model: refused before anything is built. The file is written
        # after the first step (_write_train_dir_records) when it is not there yet.
        self._write_model_flags = self.is_chief and not model_flags_lib.check_model_flags(
            config.train_dir, flags_record, config.start_new_model, hparam_defaults(config.model))
        if config.shuffle_seed is not None:
            keras.utils.set_random_seed(config.shuffle_seed)

        self.dataset = inputs.training_dataset(
            files, config.data, self.local_batch_size, num_epochs=config.num_epochs,
            seed=config.shuffle_seed, dequantize=not config.dequantize_in_step,
            shard=self.input_shard)
        if self.input_shard:
            logging.info("Worker %d of %d reads its share of %d file(s) (%s) in batches of %d",
                         *self.input_shard, len(files),
                         "by files" if len(files) >= self.input_shard[1] else "by records",
                         self.local_batch_size)
        self.learning_rate = examples_staircase_decay(
            config.base_learning_rate, config.learning_rate_decay,
            config.learning_rate_decay_examples, self.global_batch_size)
        with (contextlib.nullcontext() if self.model_per_worker else self.strategy.scope()):
            self.model = build_model(flags_record)
            # Pruned models (--pruning_*): the schedule follows the optimizer's step.
            self.pruning_steps = PruningSteps(self.model)
            # What the steps train: the model, or a wrapper around it (distillation: teachers,
            # projections, graph weights; yt8m.distillation.training_setup). The checkpoint's
            # "model" stays the model alone; a wrapper's own state is saved beside it.
            trained = (training_model_factory(self.model) if training_model_factory
                       else self.model)
            self.training_model = training_protocol.as_training_model(trained)
            check_jit_compile(config, self.training_model)
            # A model-parallel model runs each variable's update on that variable's device;
            # mixed_float16 scales the loss (the optimizer clips the unscaled gradients).
            self.optimizer = mixed_precision.with_loss_scaling(
                make_optimizer(config.optimizer, self.learning_rate, config.clip_gradient_norm,
                               on_variable_devices=self.training_model.is_model_parallel),
                config.mixed_precision)
            # Create the slots now, so a restore fills them immediately and the checkpoint always
            # has the same structure.
            self.optimizer.build(self.training_model.trainable_variables)
        self.trained = trained
        if self.model_per_worker:  # every worker starts from the chief's initial values
            multi_worker.broadcast_from_chief(self.strategy, trained.variables)
            logging.info("One %s per worker, its sub-trees on %s; gradients summed over %d "
                         "workers", config.model, ", ".join(sorted(
                             {variable.device for variable in self.model.variables})),
                         self.num_replicas)
        self.iterator = iter(self.dataset)
        tracked = {"model": self.model, "optimizer": self.optimizer}
        self.extra_tracked = ({"training_model": trained}
                              if trained is not self.model and isinstance(trained, tf.Module)
                              else {})
        tracked.update(self.extra_tracked)
        self.input_positions = None
        if config.checkpoint_input_pipeline:
            # What the saved position refers to: restored only onto the same input pipeline.
            self.input_signature = tf.Variable(
                self._input_signature(files), dtype=tf.string, trainable=False)
            if self.input_shard:  # each worker's own position, saved by itself
                self.input_positions = multi_worker.InputPositions(
                    self.iterator, self.input_signature, config.train_dir, self.strategy,
                    config.keep_checkpoint_max)
            else:
                tracked["data_iterator"] = self.iterator
                tracked["input_signature"] = self.input_signature
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self._step_function = self._make_step_function()
        self.loss_guard = loss_guard.LossGuard(config.divergence_factor)
        self.summary_writer = None  # created with the first successful step
        # Everything is checked: from here on the train dir is this run's.
        self.train_dir_guard = train_dir_guard.TrainDirGuard(config.train_dir)
        if self.is_chief:
            self.train_dir_guard.acquire()
        try:
            self._claim_train_dir()
        except BaseException:
            self.train_dir_guard.release(keep=False)
            raise

    def _claim_train_dir(self):
        config = self.config
        if self.is_chief:
            train_dir_guard.remove_stale_temporaries(config.train_dir)
        if config.start_new_model and self.is_chief:
            removed = checkpoints.remove_checkpoints(config.train_dir)
            if removed:
                logging.warning("--start_new_model: removed the %d checkpoint(s) of %s.",
                                removed, config.train_dir)
        # Only the chief writes to train_dir; the other workers of a multi-worker run save to a
        # scratch directory (they must still call save: it is a collective operation).
        self.manager = multi_worker.make_checkpoint_manager(
            self.checkpoint, config.train_dir, config.keep_checkpoint_max, self.strategy)
        self.restored_from = self._restore()
        self.first_step_done = False

    def _input_signature(self, files):
        config = self.config
        signature = {"files": files, "global_batch_size": self.global_batch_size,
                     "num_epochs": config.num_epochs, "shuffle_seed": config.shuffle_seed,
                     "segment_labels": config.data.segment_labels,
                     "max_frames": config.data.max_frames,
                     "dequantize_in_step": config.dequantize_in_step}
        if config.data.frame_buckets:  # absent when off: older checkpoints still match
            signature["frame_buckets"] = list(config.data.frame_buckets)
        if self.input_shard:
            signature["input_shard"] = list(self.input_shard)
            signature["local_batch_size"] = self.local_batch_size
        return json.dumps(signature, sort_keys=True)

    @property
    def step(self):
        return int(self.optimizer.iterations.numpy())

    def _restore(self):
        latest = self.manager.latest_checkpoint
        if latest is None:
            return ""
        if self.config.start_new_model:  # a worker that is not the chief (it removed them)
            logging.warning("--start_new_model: not restoring %s.", latest)
            return ""
        in_checkpoint = self.config.checkpoint_input_pipeline and self.input_positions is None

        def restore(path):
            checkpoints.restore_training_state(
                path, self.model, self.optimizer, f"model {self.config.model!r}",
                data_iterator=self.iterator if in_checkpoint else None,
                input_signature=self.input_signature if in_checkpoint else None,
                extra_objects=self.extra_tracked)
            if self.input_positions is not None:
                self.input_positions.restore(checkpoints.checkpoint_step(path))

        # Newest first: a checkpoint that cannot be read is skipped for the one before it.
        candidates = checkpoints.newest_first(self.config.train_dir) or [latest]
        restored = checkpoints.restore_newest_intact(candidates, restore)
        # The newest is unproven until the next step; an older one was followed by good steps.
        self.loss_guard.restored(restored, proven=restored != candidates[0],
                                 older=(candidates[1:] or [""])[0])
        logging.info("Resumed from %s at step %d (learning rate %g).", restored, self.step,
                     float(self.learning_rate(self.step)))
        return restored

    def _replica_step(self, batch):
        features = inputs.model_inputs(batch, self.config.data)
        # A training wrapper may read more of the batch (a teacher cache looks up video ids).
        for key in self.training_model.extra_batch_keys:
            features[key] = batch[key]
        self.pruning_steps.before_step(self.optimizer.iterations)
        return self._train_step(features, batch["labels"], batch.get("label_weights"))

    def _train_step(self, features, labels, label_weights):
        """One replica's forward, backward and update (with --jit_compile: one XLA program; the
        batch's other entries, such as the string ids, stay outside)."""
        with tf.GradientTape() as tape:
            outputs = self.training_model(features, training=True)
            losses = objective.training_loss(self.training_model, outputs, labels, label_weights,
                                             self.label_loss, self.config.regularization_penalty)
            # The optimizer sums the replicas' gradients (the starter's towers); averaging them
            # is the named option.
            replica_loss = (losses["total_loss"] / self.num_replicas
                            if self.config.average_replica_gradients else losses["total_loss"])
            replica_loss = mixed_precision.scale_loss(self.optimizer, replica_loss)
        variables = self.training_model.trainable_variables
        # A model placed over several devices (MOD tree) computes each sub-tree's gradients on
        # that sub-tree's device.
        gradients = mixed_precision.unscale_gradients(
            self.optimizer, self.training_model.compute_gradients(tape, replica_loss, variables))
        self.optimizer.apply_gradients(zip(gradients, variables))
        predictions, _ = objective.model_predictions(outputs)
        if label_weights is not None:  # segment mode: only the rated classes count
            predictions = predictions * label_weights
        return losses, predictions, labels

    def _make_step_function(self):
        """(this process's batch, distributed by feed_strategy) -> (mean losses, predictions,
        labels) of one step."""
        if self.model_per_worker:
            return self._make_model_per_worker_step()
        strategy = self.strategy
        if self.config.jit_compile:
            # Each replica's forward, backward and update become one XLA program, as Keras'
            # Model.fit compiles its per-replica train_step.
            self._train_step = tf.function(self._train_step, jit_compile=True,
                                           reduce_retracing=True)

        @tf.function(reduce_retracing=True)
        def step_function(distributed_batch):
            losses, predictions, labels = strategy.run(self._replica_step,
                                                       args=(distributed_batch,))
            mean_losses = {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                           for name, value in losses.items()}
            return (mean_losses, strategy.gather(predictions, axis=0),
                    strategy.gather(labels, axis=0))

        return step_function

    def _make_model_per_worker_step(self):
        """The step of a model placed over this worker's devices: this worker's batch (its share
        of the data) through model_parallel's step (yt8m.training.model_parallel); the
        predictions and labels returned are this worker's."""
        config, training_model = self.config, self.training_model
        step = model_parallel.make_model_parallel_step(
            self.strategy, self.trained, self.optimizer,
            lambda outputs, labels, label_weights: objective.training_loss(
                training_model, outputs, labels, label_weights, self.label_loss,
                config.regularization_penalty),
            average_gradients=config.average_replica_gradients)

        def step_function(batch):
            features = inputs.model_inputs(batch, config.data)
            for key in training_model.extra_batch_keys:
                features[key] = batch[key]
            label_weights = batch.get("label_weights")
            self.pruning_steps.before_step(self.optimizer.iterations)
            losses, predictions = step(features, batch["labels"], label_weights)
            if label_weights is not None:  # segment mode: only the rated classes count
                predictions = predictions * label_weights
            return losses, predictions, batch["labels"]

        return step_function

    def train_step(self, batch):
        """One training step on a batch of this process (split over its replicas); returns the
        mean losses, and the predictions and labels of the global batch."""
        return self._step_function(distribution.distribute_batch(self.feed_strategy, batch))

    def _save(self, step):
        self._write_train_dir_records()  # a checkpoint is never without its model_flags.json
        if self.input_positions is not None:
            self.input_positions.save(step)
            # Every worker's position is written before the checkpoint that refers to them.
            multi_worker.barrier(self.strategy)
        path = self.manager.save(checkpoint_number=step)
        self.loss_guard.saved(path)
        logging.info("Saved checkpoint %s", path)
        return path

    def _first_step(self, labels):
        """After the first step's loss passed: refuse unlabelled data, then write what a train
        dir holds besides checkpoints."""
        if not (self.config.allow_unlabelled or self.config.data.segment_labels
                or bool(tf.reduce_any(labels > 0))):
            raise UnlabelledDataError(
                f"--train_data_pattern={self.config.train_data_pattern!r}: the first batch of "
                f"{int(labels.shape[0])} examples holds not one label (unlabelled test files?); "
                "training would fit all-zero targets. Give labelled files, or pass "
                "--allow_unlabelled to train on them anyway (e.g. distillation).")
        self._write_train_dir_records()
        self.first_step_done = True

    def _write_train_dir_records(self):
        if self.summary_writer is not None:
            return
        if self.is_chief:
            config = self.config
            if self._write_model_flags:
                files.write_json_atomically(model_flags_lib.model_flags_path(config.train_dir),
                                            self.model_flags)
            for name, record in self.training_model.train_dir_records().items():
                files.write_json_atomically(os.path.join(config.train_dir, name), record)
            with files.refused_write_as_user_error(config.train_dir):
                self.summary_writer = tf.summary.create_file_writer(config.train_dir)
        else:
            self.summary_writer = tf.summary.create_noop_writer()

    def run(self):
        """Trains until a stop condition; the train dir's lock is given back at the end."""
        try:
            return self._run()
        finally:
            self.train_dir_guard.release(keep=self.first_step_done
                                         or self.summary_writer is not None)

    def _run(self):
        config = self.config
        step = self.step
        if config.max_steps is not None and step >= config.max_steps:
            logging.info("Step %d already reached --max_steps=%d; nothing to do.", step,
                         config.max_steps)
            return TrainResult(step, self.manager.latest_checkpoint or "", "max_steps",
                               math.nan, 0.0)
        last_saved_step = step if self.restored_from else None
        last_save_time = time.time()
        window_start, window_examples = time.time(), 0
        run_start, run_examples, examples_read = time.time(), 0, 0
        loss_value, stop_reason = math.nan, "end_of_data"
        logging.info("Training %s from step %d: global batch %d on %d replica(s), data %s",
                     config.model, step, self.global_batch_size, self.num_replicas,
                     config.train_data_pattern)
        feeder = distribution.DeviceFeeder(self.feed_strategy, self.iterator)
        with _StopRequests() as stop_requests:
            while True:
                batch = feeder.next()
                # Decided before the step, by all workers together (each has its own data, clock
                # and signals): whether any worker's data ran out, whether to save after this
                # step, whether to stop after it.
                out_of_data, save_due, stop_requested = multi_worker.any_worker(
                    self.strategy, batch is None,
                    (step + 1) % config.export_model_steps == 0
                    or time.time() - last_save_time >= config.save_checkpoint_secs,
                    stop_requests.signal_name is not None)
                if out_of_data:
                    break
                last_step = stop_requested or (config.max_steps is not None
                                               and step + 1 >= config.max_steps)
                learning_rate = float(self.learning_rate(step))
                losses, predictions, labels = self._step_function(batch)
                if config.device_prefetch and not (save_due or last_step):
                    # The next batch goes to the devices while this step runs; never before a
                    # save, so a saved input position holds no batch that was not trained on.
                    feeder.prefetch()
                step = self.step
                loss_value = float(losses["total_loss"])
                self.loss_guard.check(loss_value, step)
                if not self.first_step_done:
                    self._first_step(labels)
                window_examples += self.global_batch_size
                run_examples += self.global_batch_size
                examples_read += self.local_batch_size
                if step % config.log_every_steps == 0:
                    elapsed = max(time.time() - window_start, 1e-9)
                    examples_per_second = window_examples / elapsed
                    gap = batch_gap(predictions.numpy(), labels.numpy())
                    logging.info("step %d | loss %.4f | learning rate %g | training GAP %.4f | "
                                 "%.1f examples/s", step, loss_value, learning_rate, gap,
                                 examples_per_second)
                    with self.summary_writer.as_default():
                        for name, value in (("loss", loss_value),
                                            ("label_loss", float(losses["label_loss"])),
                                            ("learning_rate", learning_rate),
                                            ("training_gap", gap),
                                            ("examples_per_second", examples_per_second)):
                            tf.summary.scalar(name, value, step=step)
                    window_start, window_examples = time.time(), 0
                if save_due:
                    self._save(step)
                    last_saved_step, last_save_time = step, time.time()
                if stop_requested:
                    stop_reason = f"signal {stop_requests.signal_name or 'on another worker'}"
                    break
                if last_step:
                    stop_reason = "max_steps"
                    break
        if last_saved_step != step:
            self._save(step)
        if self.summary_writer is not None:  # (none when no step ran and nothing was saved)
            self.summary_writer.flush()
        rate = run_examples / max(time.time() - run_start, 1e-9)
        logging.info("Stopped at step %d (%s); checkpoint %s; this process read %d examples",
                     step, stop_reason, self.manager.latest_checkpoint, examples_read)
        return TrainResult(step, self.manager.latest_checkpoint or "", stop_reason, loss_value,
                           rate, examples_read)


def check_jit_compile(config, training_model):
    """--jit_compile needs a step XLA can compile: one device, numeric inputs only."""
    if not config.jit_compile:
        return
    if training_model.is_model_parallel:
        raise errors.InvalidInputError(
            "--jit_compile compiles a step into one XLA program for one device; this model "
            "places its sub-trees on several devices (--mod_devices): drop --jit_compile, or "
            "give --mod_devices a single device")
    if training_model.extra_batch_keys:
        raise errors.InvalidInputError(
            "--jit_compile: this training set-up reads "
            f"{', '.join(training_model.extra_batch_keys)} of each batch (a teacher cache looks "
            "teachers up by video id), which XLA cannot compile; drop --jit_compile")


def train(config, strategy=None, training_model_factory=None):
    """Trains as configured and returns a TrainResult (see Trainer).

    training_model_factory: optional callable(model) -> the model the steps train, called once
    under the strategy's scope: a yt8m.core.training_protocol.TrainingModel (e.g. a distillation
    wrapper, yt8m.distillation.training_setup) or a plain model.
    """
    trainer = Trainer(config, strategy, training_model_factory)
    with multi_worker.lost_worker_errors(trainer.strategy, config.train_dir):
        return trainer.run()
