"""Exports trained models as one ensemble SavedModel (float32, float16 or int8 weights).

    python export_ensemble.py --members=runs/netvlad@last:3,runs/nextvlad@20000:30000 \
        --weights=0.6,0.4 --float16 --output_dir=export/ensemble

See docs/export.md for the member syntax, the signatures and how to serve the export.
"""
from absl import flags

import yt8m  # noqa: F401
from yt8m.export import exporter
from yt8m.export import precision as precision_lib
from yt8m.training import cli

_DEFAULTS = exporter.ExportConfig(members=(), output_dir="")

flags.DEFINE_list("members", [], "Comma-separated TRAIN_DIR[@CHECKPOINTS] of the ensemble "
                  "members; CHECKPOINTS is latest, last:N, START:END (steps) or STEP.")
flags.DEFINE_list("weights", [], "Comma-separated member weights (normalised to sum 1); "
                  "default equal.")
flags.DEFINE_string("output_dir", "", "Directory of the SavedModel to write (must not exist "
                    "unless --overwrite).")
flags.DEFINE_bool("float16", False, "Store the large weight matrices as float16.")
flags.DEFINE_bool("int8", False, "Store the large weight matrices as per-channel int8 with "
                  "float32 scales.")
flags.DEFINE_float("size_budget_mb", _DEFAULTS.size_budget_mb,
                   "Refuse the export if it would exceed this many MB (2**20 bytes).")
flags.DEFINE_string("average_checkpoints", _DEFAULTS.average_checkpoints,
                    "Checkpoints averaged for members given without @: latest, last:N, "
                    "START:END or STEP.")
flags.DEFINE_integer("min_low_precision_elements", _DEFAULTS.min_low_precision_elements,
                     "Weight matrices with fewer values stay float32.")
flags.DEFINE_integer("top_k", _DEFAULTS.top_k, "Classes in the top-k outputs of the signatures "
                     "and in GAP.")
flags.DEFINE_string("tune_weights_on", "", "Frame-level validation file pattern: choose the "
                    "member weights that maximise GAP on it.")
flags.DEFINE_bool("select_under_budget", False, "With --tune_weights_on: also choose which "
                  "members to keep within --size_budget_mb.")
flags.DEFINE_string("eval_data_pattern", "", "Frame-level validation file pattern for the GAP "
                    "before/after check (default: --tune_weights_on).")
flags.DEFINE_integer("max_eval_examples", _DEFAULTS.max_eval_examples,
                     "Videos read from the validation data.", lower_bound=1)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Videos per batch when reading "
                     "validation data.", lower_bound=1)
flags.DEFINE_float("max_prediction_diff", None, "Largest accepted |export - float32 ensemble| "
                   "prediction difference (default 1e-5 float32, 1e-3 float16, 2e-2 int8).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir.")

FLAGS = flags.FLAGS


def _weights(texts):
    weights = []
    for text in texts:
        try:
            weights.append(float(text))
        except ValueError:
            raise ValueError(f"--weights: {text!r} is not a number") from None
    return weights or None


def config_from_flags():
    if FLAGS.float16 and FLAGS.int8:
        raise ValueError("--float16 and --int8 exclude each other: choose one precision")
    precision = (precision_lib.FLOAT16 if FLAGS.float16 else
                 precision_lib.INT8 if FLAGS.int8 else precision_lib.FLOAT32)
    return exporter.ExportConfig(
        members=FLAGS.members, output_dir=FLAGS.output_dir, weights=_weights(FLAGS.weights),
        precision=precision, average_checkpoints=FLAGS.average_checkpoints,
        size_budget_mb=FLAGS.size_budget_mb,
        min_low_precision_elements=FLAGS.min_low_precision_elements, top_k=FLAGS.top_k,
        tune_weights_on=FLAGS.tune_weights_on, select_under_budget=FLAGS.select_under_budget,
        eval_data_pattern=FLAGS.eval_data_pattern, max_eval_examples=FLAGS.max_eval_examples,
        batch_size=FLAGS.batch_size, max_prediction_diff=FLAGS.max_prediction_diff,
        overwrite=FLAGS.overwrite)


def main():
    report = exporter.export_ensemble(config_from_flags())
    print(exporter.format_report(report), flush=True)


if __name__ == "__main__":
    cli.run(main, "export_ensemble.py")
