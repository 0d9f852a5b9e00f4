"""Frame-skipping teacher-student, multi-teacher and graph distillation on synthetic data (the shape
of tables 1 and 4 of the teacher-student paper, at a scale that fits a 2-core CPU).

    .venv/bin/python bench/teacher_student.py --output_dir=/tmp/yt8m_bench_ts
    # 5.6 min on the 2-core CPU with the data set already written (+1-3 min to generate it)

Steps (everything through the same library calls train.py makes):
 1. a synthetic data set (yt8m.synthetic; reused when it exists with the same settings and
    generator code, bench/result_cache.py);
 2. the teacher: HierarchicalLstmModel over every frame (blocks of 20, as in the paper), and a
    second teacher (a small DbofModel) for the multi-teacher and graph runs;
 3. a teacher cache of both teachers over the training data (offline distillation: every student
    reads the teachers' outputs from it instead of running them);
 4. for each k: the Uniform-k baseline (the same hierarchical LSTM on k uniform frames, no teacher)
    and the serial teacher-student student (L_rep + L_pred + L_CE), blocks of 3 (k <= 6) or 5;
 5. at the largest k: multi-teacher (both teachers) vs single-teacher (the LSTM teacher alone)
    students, and graph distillation with learned vs uniform edge weights;
 6. validation GAP / MAP of every model, inference FLOPs per video (analytic, the LSTM gate matmuls
    and the classifier) and inference examples/s (a tf.function over full 300-frame validation
    batches; the student selects its k frames inside the model).
Writes results.json, results.md (the tables of docs/distillation_toolkit.md) and gap_and_speed.png.
Timings come from a shared machine: indicative only.
"""
import dataclasses
import json
import os
import shutil
import time

import numpy as np
from absl import app, logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

import bench_options
import figures
import training_runs
from frame_level_models import hierarchical_lstm
from yt8m import evaluation
from yt8m.core import files
from yt8m.core import options
from yt8m.core.options import option, override
from yt8m.distillation import teacher_cache
from yt8m.distillation import training_setup
from yt8m.distillation.config import DistillConfig
from yt8m.losses import get_label_loss
from yt8m.core.config import DataConfig, TrainConfig
from yt8m.training import checkpoints, inputs, trainer



@dataclasses.dataclass
class Options(bench_options.Output, bench_options.SyntheticScale, bench_options.FrameRange,
              bench_options.Seed, bench_options.Generation, bench_options.Optimization,
              bench_options.Timing, bench_options.SpeedBatches):
    output_dir: str = override(bench_options.Output, "output_dir",
                               "/tmp/yt8m_bench_teacher_student")
    num_videos: int = override(bench_options.SyntheticScale, "num_videos", 3000)
    num_classes: int = override(bench_options.SyntheticScale, "num_classes", 10)
    min_frames: int = override(bench_options.FrameRange, "min_frames", 150)
    max_frames: int = override(bench_options.FrameRange, "max_frames", 300)
    seed: int = override(bench_options.Seed, "seed", 5)
    validate_fraction: float = override(bench_options.Generation, "validate_fraction", 0.15)
    learning_rate: float = override(bench_options.Optimization, "learning_rate", 0.003,
                                    help="Adam learning rate (no decay).")
    ks: tuple[int, ...] = option((6, 10, 15, 20, 30), "Frames seen by the students.")
    cells: int = option(64, "LSTM cells of teacher and students (the paper: 1024).", lower=1)
    teacher_epochs: int = option(3, "Epochs of the teachers.", lower=1)
    student_epochs: int = option(3, "Epochs of every student and baseline.", lower=1)
    speed_batches: int = override(bench_options.SpeedBatches, "speed_batches", 4,
                                  help="Validation batches of 64 videos timed for examples/s.")


options.define_flags(Options)

HLSTM = "HierarchicalLstmModel"
SECOND_TEACHER = ("DbofModel", dict(dbof_cluster_size=256, dbof_hidden_size=64,
                                    video_level_classifier_model="LogisticModel"))


def hlstm_hparams(opts, block_frames):
    return dict(lstm_cells=opts.cells, lstm_layers=1, hlstm_block_frames=block_frames,
                video_level_classifier_model="LogisticModel")


def student_block(k):
    """The paper: blocks of 20 frames for the teacher, 5 or 3 for students."""
    return 3 if k <= 6 else 5


class Bench:
    def __init__(self, opts):
        self.opts = opts
        self.output_dir = opts.output_dir
        self.data_dir = training_runs.synthetic_data(
            os.path.join(opts.output_dir, "data"), opts.num_workers,
            **bench_options.synthetic_settings(opts, num_shards=4, num_segment_videos=0,
                                               test_fraction=0.0))
        self.data = DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                               frame_features=True, num_classes=opts.num_classes,
                               max_frames=opts.max_frames, num_readers=2)
        self.train_pattern = os.path.join(self.data_dir, "frame", "train*.tfrecord")
        self.validate_pattern = os.path.join(self.data_dir, "frame", "validate*.tfrecord")
        self.results = {}
        self.speed_batches = self._speed_batches()

    def train_config(self, name, model, hparams, epochs):
        train_dir = os.path.join(self.output_dir, "runs", name)
        shutil.rmtree(train_dir, ignore_errors=True)
        return TrainConfig(
            train_dir=train_dir, train_data_pattern=self.train_pattern, data=self.data,
            model=model, model_hparams=dict(hparams), batch_size=self.opts.batch_size,
            base_learning_rate=self.opts.learning_rate, learning_rate_decay=1.0,
            learning_rate_decay_examples=10**9, num_epochs=epochs, log_every_steps=50,
            export_model_steps=10**6, save_checkpoint_secs=10**6, checkpoint_input_pipeline=False,
            shuffle_seed=self.opts.seed, distribution_strategy="one_device")

    def train(self, name, model, hparams, epochs, distill=None):
        """Trains (with distillation when given) and evaluates; returns the result row."""
        started = time.time()
        config = self.train_config(name, model, hparams, epochs)
        config, factory = training_setup.prepare(config, distill or DistillConfig())
        result = trainer.train(config, training_model_factory=factory)
        train_seconds = time.time() - started
        row = {"name": name, "train_seconds": train_seconds, "steps": result.step,
               **self.evaluate(config.train_dir)}
        logging.info("%s: GAP %.4f MAP %.4f (%.0f s)", name, row["gap"], row["map"],
                     train_seconds)
        self.results[name] = row
        return config.train_dir

    def evaluate(self, train_dir):
        model = checkpoints.load_model(train_dir)
        step = evaluation.make_eval_step(model, self.data, get_label_loss("CrossEntropyLoss"))
        files = inputs.require_files(self.validate_pattern, "validate files")
        metrics = evaluation.evaluate_batches(
            step, inputs.evaluation_dataset(files, self.data, 64), self.opts.num_classes, 20)
        return {"gap": metrics["gap"], "map": metrics["map"]}

    def _speed_batches(self):
        files = inputs.require_files(self.validate_pattern, "validate files")
        dataset = inputs.evaluation_dataset(files, self.data, 64).take(self.opts.speed_batches)
        batches = [inputs.model_inputs(batch, self.data) for batch in dataset]
        # Full 300-frame batches for every model (a student gets whole videos and picks k).
        return [{name: (tf.pad(value, [[0, 0], [0, self.opts.max_frames - tf.shape(value)[1]],
                                       [0, 0]]) if name != "num_frames" else value)
                 for name, value in batch.items()} for batch in batches]

    def examples_per_second(self, train_dir):
        """Best of --passes passes over the speed batches (min time: least disturbed)."""
        model = checkpoints.load_model(train_dir)
        predict = tf.function(lambda features: model(features, training=False)["predictions"])
        for batch in self.speed_batches[:1]:
            predict(batch).numpy()  # trace and warm up
        count = sum(int(batch["num_frames"].shape[0]) for batch in self.speed_batches)
        best = float("inf")
        for _ in range(self.opts.passes):
            started = time.perf_counter()
            for batch in self.speed_batches:
                predict(batch).numpy()
            best = min(best, time.perf_counter() - started)
        return count / best


def flops(opts, num_frames, block_frames):
    return hierarchical_lstm.inference_flops(num_frames, (1024, 128), opts.cells, 1,
                                             block_frames, opts.num_classes)


def run_bench(bench):
    opts = bench.opts
    ks = list(opts.ks)
    largest = max(ks)
    teacher = bench.train("teacher", HLSTM, hlstm_hparams(opts, 20), opts.teacher_epochs)
    second = bench.train("teacher_dbof", *SECOND_TEACHER, opts.teacher_epochs)
    started = time.time()
    cache_dir = os.path.join(bench.output_dir, "teacher_cache")
    teacher_cache.write_teacher_cache([teacher, second], bench.train_pattern, cache_dir,
                                      batch_size=64, num_readers=2, overwrite=True)
    bench.results["cache"] = {"write_seconds": time.time() - started}
    speed = {"teacher": bench.examples_per_second(teacher)}
    for k in ks:
        hparams = hlstm_hparams(opts, student_block(k))
        baseline = bench.train(f"uniform_{k}", HLSTM, hparams, opts.student_epochs,
                               DistillConfig(student_frames=k))
        speed[f"k{k}"] = bench.examples_per_second(baseline)
        bench.train(f"student_{k}", HLSTM, hparams, opts.student_epochs, DistillConfig(
            mode="teacher_student", teacher_cache=cache_dir, teacher_dirs=(teacher,),
            student_frames=k, losses=("rep", "pred", "ce")))
    hparams = hlstm_hparams(opts, student_block(largest))
    for name, teachers in (("multi_teacher", (teacher, second)), ("single_teacher", (teacher,))):
        bench.train(f"{name}_{largest}", HLSTM, hparams, opts.student_epochs, DistillConfig(
            mode="multi_teacher", teacher_cache=cache_dir, teacher_dirs=teachers,
            student_frames=largest))
    for name, learn in (("graph_learned", True), ("graph_uniform", False)):
        bench.train(f"{name}_{largest}", HLSTM, hparams, opts.student_epochs, DistillConfig(
            mode="graph", teacher_cache=cache_dir, teacher_dirs=(teacher, second),
            student_frames=largest, graph_learn_edges=learn))
        bench.results[f"{name}_{largest}"]["edge_weights"] = graph_edge_weights(
            os.path.join(bench.output_dir, "runs", f"{name}_{largest}"))
    bench.results["speed"] = speed
    bench.results["flops"] = {"teacher": flops(opts, opts.max_frames, 20),
                              **{f"k{k}": flops(opts, k, student_block(k)) for k in ks}}
    return ks


def graph_edge_weights(train_dir):
    """The teacher -> student weights of the logits graph in the newest checkpoint."""
    path = tf.train.latest_checkpoint(train_dir)
    names = [name for name, _ in tf.train.list_variables(path)
             if name.startswith("training_model/logits_graph/edge_logits")
             and "OPTIMIZER_SLOT" not in name]
    logits = tf.train.load_variable(path, names[0])[:, -1]
    weights = np.exp(logits - logits.max())
    return [float(w) for w in weights / weights.sum()]


def tables(results, ks, max_frames):
    rows = ["| model | frames | GAP | MAP | inference GFLOPs / video | examples/s | train s |",
            "| --- | --- | --- | --- | --- | --- | --- |"]

    def row(name, label, frames, key):
        r = results[name]
        rows.append(f"| {label} | {frames} | {r['gap']:.4f} | {r['map']:.4f} | "
                    f"{results['flops'][key] / 1e9:.3f} | {results['speed'][key]:.0f} | "
                    f"{r['train_seconds']:.0f} |")

    row("teacher", "Teacher (all frames)", max_frames, "teacher")
    for k in ks:
        row(f"uniform_{k}", f"Uniform-{k} baseline", k, f"k{k}")
        row(f"student_{k}", f"Student-{k} (serial; L_rep, L_pred, L_CE)", k, f"k{k}")
    largest = max(ks)
    lines = ["\n".join(rows), "",
             "| student (k = %d) | GAP | MAP | teacher -> student weights |" % largest,
             "| --- | --- | --- | --- |"]
    for name, label in (("single_teacher", "multi_teacher mode, LSTM teacher only"),
                        ("multi_teacher", "multi_teacher mode, LSTM + DBoF teachers"),
                        ("graph_uniform", "graph, uniform edge weights"),
                        ("graph_learned", "graph, learned edge weights")):
        r = results[f"{name}_{largest}"]
        weights = ", ".join(f"{w:.3f}" for w in r.get("edge_weights", [])) or "-"
        lines.append(f"| {label} | {r['gap']:.4f} | {r['map']:.4f} | {weights} |")
    teacher, student = results["teacher"], results[f"student_{largest}"]
    lines += ["", f"Teacher DBoF (second teacher): GAP {results['teacher_dbof']['gap']:.4f}, "
              f"MAP {results['teacher_dbof']['map']:.4f}.",
              f"k = {largest}: student GAP {student['gap']:.4f} vs teacher {teacher['gap']:.4f} "
              f"({(student['gap'] - teacher['gap']) / teacher['gap'] * 100:+.1f}%); "
              f"examples/s x{results['speed'][f'k{largest}'] / results['speed']['teacher']:.1f}; "
              f"FLOPs x{results['flops']['teacher'] / results['flops'][f'k{largest}']:.1f} fewer."]
    return "\n".join(lines) + "\n"


def plot(results, ks, path):
    figure, (left, right) = figures.subplots(1, 2, figsize=(10, 4))
    left.plot(ks, [results[f"student_{k}"]["gap"] for k in ks], "o-", label="teacher-student")
    left.plot(ks, [results[f"uniform_{k}"]["gap"] for k in ks], "s--", label="Uniform-k baseline")
    left.axhline(results["teacher"]["gap"], color="k", linestyle=":", label="teacher (all frames)")
    left.set_xlabel("frames seen (k)")
    left.set_ylabel("validation GAP")
    left.legend()
    right.plot(ks, [results["speed"][f"k{k}"] for k in ks], "o-", label="student")
    right.axhline(results["speed"]["teacher"], color="k", linestyle=":", label="teacher")
    right.set_xlabel("frames seen (k)")
    right.set_ylabel("inference examples/s (shared CPU)")
    right.legend()
    figures.save_png(figure, path, dpi=100)


def main(argv):
    del argv
    started = time.time()
    opts = options.from_flags(Options)
    os.makedirs(opts.output_dir, exist_ok=True)
    bench = Bench(opts)
    ks = run_bench(bench)
    results = bench.results
    results["settings"] = {name: getattr(opts, name) for name in (
        "num_videos", "num_classes", "validate_fraction", "min_frames", "max_frames", "ks",
        "cells", "teacher_epochs", "student_epochs", "batch_size", "learning_rate", "seed")}
    results["total_seconds"] = time.time() - started
    files.write_text_atomically(os.path.join(opts.output_dir, "results.json"),
                                json.dumps(results, indent=2))
    text = tables(results, ks, opts.max_frames)
    files.write_text_atomically(os.path.join(opts.output_dir, "results.md"), text)
    plot(results, ks, os.path.join(opts.output_dir, "gap_and_speed.png"))
    print(text)
    print(f"total {results['total_seconds']:.0f} s; results in {opts.output_dir}")


if __name__ == "__main__":
    app.run(main)
