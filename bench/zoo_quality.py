"""Every zoo model trained for the same budget on one synthetic set: parameters, validation
GAP/MAP/Hit@1, training and inference examples/s.

Models are scaled down to fit a 2-core CPU (ZOO below); every model gets the same epochs, batch
size and optimizer, video-level models read the means of the same videos. Training runs with the
project's trainer, evaluation with yt8m.evaluation, inference speed through the inference input
pipeline (every frame up to max_frames, padded).
"""
import itertools
import os

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

import training_runs

# (model, frame level, hparams): the zoo at CPU scale. Frame-level models train on
# `train_frames` random frames per video (--sample_random_frames --iterations) and predict on all,
# except DbofModel, which samples its `train_frames` frames at evaluation too (the starter's).
ZOO = (
    ("LogisticModel", False, {}),
    ("MoeModel", False, {"moe_num_mixtures": 4}),
    ("FrameLevelLogisticModel", True, {}),
    ("DbofModel", True, {"dbof_cluster_size": 1024, "dbof_hidden_size": 256}),
    ("LstmModel", True, {"lstm_cells": 256, "lstm_layers": 2}),
    ("NetVLADModelLF", True, {"netvlad_cluster_size": 32, "netvlad_hidden_size": 256}),
    ("NeXtVLADModel", True, {"nextvlad_cluster_size": 32, "nextvlad_hidden_size": 256}),
)


def run(output_dir, *, num_videos, num_classes, epochs, batch_size, frame_learning_rate,
        video_learning_rate, train_frames, bn_momentum, seed, models=None, reuse=True,
        precisions=("float32",)):
    """Trains and evaluates each model of ZOO (or of `models`) once per mixed-precision policy of
    `precisions`; returns the result rows."""
    settings = dict(num_videos=num_videos, num_classes=num_classes, seed=seed,
                    validate_fraction=0.2, test_fraction=0.0, num_segment_videos=0, num_shards=2)
    data_dir = training_runs.synthetic_data(
        training_runs.settings_dir(output_dir, "data", settings), **settings)
    rows = []
    for (name, frame_level, hparams), precision in itertools.product(ZOO, precisions):
        if models and name not in models:
            continue
        hparams = dict(hparams)
        if frame_level:
            hparams.update(sample_random_frames=True, iterations=train_frames)
        learning_rate = frame_learning_rate if frame_level else video_learning_rate
        settings = {"model": name, "hparams": hparams, "epochs": epochs,
                    "batch_size": batch_size, "learning_rate": learning_rate,
                    "bn_momentum": bn_momentum, "seed": seed, "data_dir": data_dir}
        run_name = name
        if precision != "float32":  # float32 runs keep the settings (and cache) they had
            settings["mixed_precision"] = precision
            run_name = f"{name}-{precision}"
        result = training_runs.train_and_evaluate(
            os.path.join(output_dir, "runs", run_name), data_dir, model=name, hparams=hparams,
            frame_level=frame_level, num_classes=num_classes, max_frames=300,
            batch_size=batch_size, learning_rate=learning_rate, epochs=epochs,
            bn_momentum=bn_momentum, seed=seed, settings=settings, reuse=reuse,
            measure_inference=True, mixed_precision=precision)
        result["level"] = "frame" if frame_level else "video"
        result["precision"] = precision
        rows.append(result)
        print(f"{name} ({precision}): {result['parameters']:,} parameters, GAP "
              f"{result['gap']:.4f} MAP {result['map']:.4f}, train "
              f"{result['train_examples_per_second']:.1f} / inference "
              f"{result['inference_examples_per_second']:.1f} examples/s", flush=True)
    return rows


def table(rows):
    lines = ["| Model | Level | Precision | Trainable parameters | GAP | MAP | Hit@1 | "
             "Train examples/s | Inference examples/s |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['level']} | {r.get('precision', 'float32')} | "
                     f"{r['parameters']:,} | {r['gap']:.4f} | "
                     f"{r['map']:.4f} | {r['hit_at_one']:.4f} | "
                     f"{r['train_examples_per_second']:.1f} | "
                     f"{r['inference_examples_per_second']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(rows, axes):
    """Left: validation GAP and MAP per model; right: training and inference examples/s."""
    names = [r["model"] + ("" if r.get("precision", "float32") == "float32"
                           else f" ({r['precision']})") for r in rows]
    positions = range(len(rows))
    width = 0.4
    for offset, metric in ((-width / 2, "gap"), (width / 2, "map")):
        bars = axes[0].barh([p + offset for p in positions], [r[metric] for r in rows], width,
                            label=metric.upper())
        axes[0].bar_label(bars, fmt="%.3f", fontsize=7)
    axes[0].set_yticks(list(positions), [f"{n}\n({r['parameters'] / 1e6:.1f}M)"
                                         for n, r in zip(names, rows)], fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("validation score")
    axes[0].set_xlim(0, 1)
    axes[0].legend(fontsize=8, loc="lower right")
    for offset, key, label in ((-width / 2, "train_examples_per_second", "training"),
                               (width / 2, "inference_examples_per_second", "inference")):
        bars = axes[1].barh([p + offset for p in positions], [r[key] for r in rows], width,
                            label=label)
        axes[1].bar_label(bars, fmt="%.0f", fontsize=7)
    # Same rows, same order as the left panel; headroom on the log axis for the bar labels.
    axes[1].set_yticks(list(positions), names, fontsize=8)
    axes[1].invert_yaxis()
    axes[1].set_xscale("log")
    fastest = max(max(r["train_examples_per_second"], r["inference_examples_per_second"])
                  for r in rows)
    axes[1].set_xlim(right=fastest * 3)
    axes[1].set_xlabel("examples/s (log scale)")
    axes[1].legend(fontsize=8, loc="lower right")
