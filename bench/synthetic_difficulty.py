"""Is the synthetic task hard in the right way? (SPEC section 9)

Generates a demo-scale synthetic data set (yt8m.synthetic), trains zoo models with a small Keras
loop and reports validation GAP:
  - video level: LogisticModel (and MoeModel) on mean_rgb/mean_audio,
  - frame level: NetVLADModelLF and NeXtVLADModel on the frames.
The frame-level models should beat the mean-based ones by 0.1 GAP or more and stay clearly below
1.0. GAP is measured against the labels written in the validate files (noisy, like the real ones)
and against the clean labels the generator planted (`yt8m.synthetic.plan_video`).

    .venv/bin/python bench/synthetic_difficulty.py     # ~6 min on 2 shared CPU cores
Writes results.json and gap_by_epoch.png under --output_dir (bench/output/synthetic_difficulty).
"""
import dataclasses
import json
import os
import time

import numpy as np
from absl import app, logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

import bench_options
import figures
import frame_level_models
import training_runs
from yt8m import data, losses, metrics, synthetic
from yt8m.core import files
from yt8m.core import options
from yt8m.core.options import option, override
from yt8m.data import records



@dataclasses.dataclass
class Options(bench_options.Output, bench_options.SyntheticScale, bench_options.Seed,
              bench_options.Generation, bench_options.Optimization,
              bench_options.VideoLearningRate, bench_options.BatchNorm, bench_options.TrainFrames):
    output_dir: str = override(bench_options.Output, "output_dir",
                               "bench/output/synthetic_difficulty")
    num_videos: int = override(bench_options.SyntheticScale, "num_videos", 3000)
    num_classes: int = override(bench_options.SyntheticScale, "num_classes", 60)
    batch_size: int = override(bench_options.Optimization, "batch_size", 64)
    learning_rate: float = override(bench_options.Optimization, "learning_rate",
                                    help="Adam learning rate of the frame-level models.")
    bn_momentum: float = override(bench_options.BatchNorm, "bn_momentum", 0.9)
    models: tuple[str, ...] = option(
        ("LogisticModel", "MoeModel", "NetVLADModelLF", "NeXtVLADModel"),
        "Zoo models to train (video-level ones read the means).")
    frame_epochs: int = option(10, "Epochs of the frame-level models.", lower=1)
    video_epochs: int = option(15, "Epochs of the video-level models.", lower=1)
    learning_rate_decay: float = option(
        0.85, "Learning rate factor per epoch (the references decay by 0.8 every few million "
        "examples; a demo epoch is a few thousand).")


options.define_flags(Options)

# Small versions of the zoo models: the demo scale has ~2k training videos and 2 CPU cores.
MODEL_HPARAMS = {
    "LogisticModel": {},
    "MoeModel": {"moe_num_mixtures": 4},
    "NetVLADModelLF": {"netvlad_cluster_size": 32, "netvlad_hidden_size": 256},
    "NeXtVLADModel": {"nextvlad_cluster_size": 32, "nextvlad_hidden_size": 256, "groups": 8,
                      "expansion": 2, "drop_rate": 0.5},
}


# ------------------------------------------------------------------------------------- data

class Split:
    """One split in memory, read with the project's readers: uint8 frames (first 300), the
    video-level means, the written (noisy) labels and the clean labels the generator planted."""

    def __init__(self, data_dir, config, split_name):
        num_classes = config.num_classes
        self.ids, self.rgb, self.audio, labels = [], [], [], []
        for batch in data.frame_dataset(os.path.join(data_dir, "frame", f"{split_name}*.tfrecord"),
                                        64, num_classes, dequantize=False).as_numpy_iterator():
            for row, count in enumerate(batch["num_frames"]):
                self.ids.append(batch["id"][row].decode())
                # Copies, so the padded batch arrays can be freed.
                self.rgb.append(batch["rgb"][row, :count].copy())
                self.audio.append(batch["audio"][row, :count].copy())
            labels.append(batch["labels"])
        self.labels = np.concatenate(labels)
        self.num_frames = np.array([len(r) for r in self.rgb], np.int32)
        means = {}
        for batch in data.video_dataset(os.path.join(data_dir, "video", f"{split_name}*.tfrecord"),
                                        256, num_classes).as_numpy_iterator():
            for row, video_id in enumerate(batch["id"]):
                means[video_id.decode()] = (batch["mean_rgb"][row], batch["mean_audio"][row])
        self.mean_rgb = np.stack([means[i][0] for i in self.ids])
        self.mean_audio = np.stack([means[i][1] for i in self.ids])
        world = synthetic.build_world(config)
        prefix = synthetic.SPLITS[split_name][1]
        self.clean_labels = np.zeros_like(self.labels)
        for row, video_id in enumerate(self.ids):
            plan = synthetic.plan_video(world, config, split_name, int(video_id[len(prefix):]))
            self.clean_labels[row, plan.true_labels] = 1.0

    def __len__(self):
        return len(self.ids)

    def frame_batch(self, indices, rng=None, frames=None):
        """Dequantized frames; with `rng`, `frames` sorted random frames per video."""
        width = frames if rng is not None else int(self.num_frames[indices].max())
        batch = {"rgb": np.zeros((len(indices), width, 1024), np.uint8),
                 "audio": np.zeros((len(indices), width, 128), np.uint8),
                 "num_frames": np.zeros(len(indices), np.int32)}
        for row, index in enumerate(indices):
            count = self.num_frames[index]
            chosen = (np.sort(rng.choice(count, min(count, frames), replace=False))
                      if rng is not None else np.arange(count))
            batch["rgb"][row, :len(chosen)] = self.rgb[index][chosen]
            batch["audio"][row, :len(chosen)] = self.audio[index][chosen]
            batch["num_frames"][row] = len(chosen)
        for name in ("rgb", "audio"):
            batch[name] = records.dequantize_np(batch[name])
        return batch

    def video_batch(self, indices):
        return {"mean_rgb": self.mean_rgb[indices], "mean_audio": self.mean_audio[indices]}


# ------------------------------------------------------------------------------------- training

def train_and_evaluate(opts, name, train, validate, epochs):
    keras.utils.set_random_seed(opts.seed)
    hparams = dict(MODEL_HPARAMS[name])
    if "iterations" in frame_level_models.hparam_names(name):
        # Models that sample (Willow's) draw --train_frames frames, with replacement, from the
        # frames the batch holds.
        hparams["iterations"] = opts.train_frames
    model = frame_level_models.build(name, train.labels.shape[1], bn_momentum=opts.bn_momentum,
                                     **hparams)
    frame_level = frame_level_models.is_frame_level(name)
    steps_per_epoch = len(train) // opts.batch_size
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(
        opts.learning_rate if frame_level else opts.video_learning_rate,
        decay_steps=steps_per_epoch, decay_rate=opts.learning_rate_decay, staircase=True))
    label_loss = losses.CrossEntropyLoss()

    @tf.function(reduce_retracing=True)
    def train_step(inputs, labels):
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            loss = label_loss(outputs["predictions"], labels, logits=outputs.get("logits"))
            if model.losses:
                loss += tf.add_n(model.losses)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    @tf.function(reduce_retracing=True)
    def predict(inputs):
        return model(inputs, training=False)["predictions"]

    def batch(split, indices, rng=None):
        if frame_level:
            return split.frame_batch(indices, rng, opts.train_frames)
        return split.video_batch(indices)

    rng = np.random.default_rng(opts.seed)
    history = []
    started = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(train))
        for begin in range(0, len(order) - opts.batch_size + 1, opts.batch_size):
            indices = order[begin:begin + opts.batch_size]
            loss = train_step(batch(train, indices, rng), train.labels[indices])
        predictions = np.concatenate([
            predict(batch(validate, np.arange(begin, min(begin + 64, len(validate))))).numpy()
            for begin in range(0, len(validate), 64)])
        history.append({"epoch": epoch + 1, "loss": float(loss),
                        "gap": metrics.gap(predictions, validate.labels),
                        "gap_clean": metrics.gap(predictions, validate.clean_labels),
                        "seconds": time.perf_counter() - started})
        logging.info("%s epoch %d: loss %.3f, GAP %.4f (clean labels %.4f), %.0f s", name,
                     epoch + 1, history[-1]["loss"], history[-1]["gap"],
                     history[-1]["gap_clean"], history[-1]["seconds"])
    return {"model": name, "frame_level": frame_level, "hparams": hparams,
            "parameters": int(model.count_params()), "history": history,
            "final_gap": history[-1]["gap"], "final_gap_clean": history[-1]["gap_clean"],
            "best_gap": max(h["gap"] for h in history)}


# ------------------------------------------------------------------------------------- report

def plot(results, path):
    figure, axes = figures.subplots(1, 2, figsize=(10, 4), sharey=True)
    for result in results:
        epochs = [h["epoch"] for h in result["history"]]
        style = "-" if result["frame_level"] else "--"
        for axis, key in zip(axes, ("gap", "gap_clean")):
            axis.plot(epochs, [h[key] for h in result["history"]], style, marker=".",
                      label=result["model"])
    axes[0].set_title("validate GAP, written (noisy) labels")
    axes[1].set_title("validate GAP, clean planted labels")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("GAP@20")
    axes[0].set_ylim(0, 1)
    axes[1].legend()
    figures.save_png(figure, path, dpi=100)


def main(argv):
    del argv
    opts = options.from_flags(Options)
    unknown = [name for name in opts.models if name not in MODEL_HPARAMS]
    if unknown:
        raise ValueError(f"--models: unknown {unknown}; choose from {sorted(MODEL_HPARAMS)}")
    settings = bench_options.synthetic_settings(opts, test_fraction=0.0, num_segment_videos=0)
    config = synthetic.Config(**settings)
    data_dir = training_runs.synthetic_data(os.path.join(opts.output_dir, "data"),
                                            opts.num_workers, **settings)
    splits = {}
    for split in ("train", "validate"):
        splits[split] = Split(data_dir, config, split)
    logging.info("loaded %d train and %d validate videos", len(splits["train"]),
                 len(splits["validate"]))

    # What a model that knew the planted labels would score against the noisy written ones.
    ceiling = metrics.gap(splits["validate"].clean_labels, splits["validate"].labels)
    results = []
    for name in opts.models:
        epochs = (opts.frame_epochs if frame_level_models.is_frame_level(name)
                  else opts.video_epochs)
        results.append(train_and_evaluate(opts, name, splits["train"], splits["validate"],
                                          epochs))
    report = {"data": dataclasses.asdict(config),
              "train_videos": len(splits["train"]), "validate_videos": len(splits["validate"]),
              "noisy_label_ceiling_gap": ceiling,
              "flags": {name: getattr(opts, name) for name in
                        ("frame_epochs", "video_epochs", "batch_size", "learning_rate",
                         "learning_rate_decay", "video_learning_rate", "train_frames",
                         "bn_momentum")},
              "results": results}
    files.write_text_atomically(os.path.join(opts.output_dir, "results.json"),
                                json.dumps(report, indent=2) + "\n")
    plot(results, os.path.join(opts.output_dir, "gap_by_epoch.png"))
    print(f"GAP of the planted labels against the written ones (ceiling): {ceiling:.4f}")
    print(f"{'model':<16}{'params':>10}{'GAP':>8}{'GAP clean':>11}{'best GAP':>10}{'seconds':>9}")
    for result in results:
        print(f"{result['model']:<16}{result['parameters']:>10}{result['final_gap']:>8.4f}"
              f"{result['final_gap_clean']:>11.4f}{result['best_gap']:>10.4f}"
              f"{result['history'][-1]['seconds']:>9.0f}")


if __name__ == "__main__":
    app.run(main)
