"""What fits in a size budget at paper scale (3862 classes): the export bytes of the paper's
models at float32 / float16 / int8, dense and pruned + sparse (--sparse_weights), and how many
such members one export under --budget_mb holds (issue 19: a user who must fit under 1 GB).

    python bench/paper_scale.py      # a minute or two: the models are built, never trained

The bytes are the exporter's own count (yt8m.export.budget, what --size_budget_mb checks before
writing) plus its graph allowance per member. A pruned model is its freshly initialised weights
with each large matrix's smallest magnitudes zeroed by numpy: a sparse matrix's bytes depend only
on how many zeros it has, not on which. GAP is not measured here (bench/compression.py measures
it at CPU scale).
"""
import dataclasses

import numpy as np
from absl import app, flags

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

import frame_level_models
from yt8m.core import files
from yt8m.core import options
from yt8m.core.options import option
from yt8m.data import records
from yt8m.export import budget
from yt8m.export import exporter
from yt8m.export import member_module
from yt8m.export import precision as precision_lib

# NeXtVLAD's paper configuration and a Gated NetVLAD K32-H1024 (the float16 paper's "H" family).
SCALE_MODELS = {"NeXtVLADModel (8G 128K x2 2048H)": ("NeXtVLADModel", {}),
                "NetVLADModelLF K32-H1024": ("NetVLADModelLF", {"netvlad_cluster_size": 32,
                                                                "netvlad_hidden_size": 1024})}
SPARSE_WEIGHTS = 0.4  # below every pruned sparsity (as bench/compression.py)


@dataclasses.dataclass
class Options:
    output: str = option("bench/output/paper_scale", "Output path without extension (.json, .md).")
    budget_mb: float = option(1024.0, "The size budget (MB of 2**20 bytes; the challenge's 1 GB "
                              "is 1024).", lower=1.0)
    sparsities: tuple[float, ...] = option((0.5, 0.75, 0.9), "Fractions of zeros of the pruned "
                                           "rows.")


def build(model_name, hparams):
    return frame_level_models.build(model_name, records.DEFAULT_NUM_CLASSES,
                                    feature_names="rgb,audio", feature_sizes="1024,128", **hparams)


def zero_smallest(variables, sparsity):
    """Zeros round(sparsity * n) smallest |values| of every large matrix (as magnitude pruning
    leaves it); the weights below the low-precision size stay dense, as pruning leaves them."""
    for variable in variables:
        if precision_lib.is_low_precision_candidate(variable, precision_lib.DEFAULT_MIN_ELEMENTS):
            values = variable.numpy().reshape(-1)
            count = int(round(sparsity * values.size))
            values[np.argpartition(np.abs(values), count)[:count]] = 0
            variable.assign(values.reshape(variable.shape))


def size_rows(label, model_name, hparams, sparsities, budget_mb):
    model = build(model_name, hparams)
    variables = member_module.unique_variables(model)
    rows = []
    for sparsity in (0.0,) + tuple(sparsities):
        if sparsity:
            zero_smallest(variables, sparsity)
        by_precision = budget.sizes_by_precision(variables, precision_lib.DEFAULT_MIN_ELEMENTS,
                                                 SPARSE_WEIGHTS if sparsity else 0.0)
        for precision, num_bytes in by_precision.items():
            reserved = num_bytes + exporter.GRAPH_ALLOWANCE_BYTES
            rows.append({"model": label, "parameters": model.count_params(),
                         "sparsity": sparsity, "values": precision,
                         "storage": "sparse" if sparsity else "dense",
                         "mb": num_bytes / budget.BYTES_PER_MB,
                         "members_in_budget": int(budget_mb * budget.BYTES_PER_MB // reserved)})
    return rows


def markdown(rows, budget_mb, command):
    float32 = {row["model"]: row["mb"] for row in rows
               if not row["sparsity"] and row["values"] == precision_lib.FLOAT32}
    lines = [f"Command: `{command}`", "",
             f"| model | parameters | pruned | values | storage | MB | size / float32 | members "
             f"in {budget_mb:g} MB |", "|---|---:|---:|---|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['parameters'] / 1e6:.1f}M | {row['sparsity']:.0%} "
                     f"| {row['values']} | {row['storage']} | {row['mb']:.1f} | "
                     f"{row['mb'] / float32[row['model']]:.3f} | {row['members_in_budget']} |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    opts = options.from_flags(Options)
    rows = []
    for label, (model_name, hparams) in SCALE_MODELS.items():
        rows += size_rows(label, model_name, hparams, opts.sparsities, opts.budget_mb)
    command = " ".join(["python bench/paper_scale.py"] + [
        flags.FLAGS[name].serialize() for name in options.flag_names(Options)
        if flags.FLAGS[name].present])
    text = markdown(rows, opts.budget_mb, command)
    files.write_json_atomically(opts.output + ".json", {"command": command, "rows": rows,
                                                        "budget_mb": opts.budget_mb})
    files.write_text_atomically(opts.output + ".md", text)
    print(text)


if __name__ == "__main__":
    options.define_flags(Options)
    app.run(main)
