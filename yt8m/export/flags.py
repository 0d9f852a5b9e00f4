"""export_ensemble.py's flags and their conversion to an ExportConfig.

Defined on a given FlagValues so tests can parse command lines without touching the global flags
(where inference.py and eval.py define flags of the same names).
"""
from absl import flags

import yt8m  # noqa: F401
from yt8m.export import exporter
from yt8m.export import precision as precision_lib

_DEFAULTS = exporter.ExportConfig(members=(), output_dir="")


def define_export_flags(flag_values=flags.FLAGS):
    fv = flag_values
    flags.DEFINE_list("members", [], "Comma-separated TRAIN_DIR[@CHECKPOINTS] of the ensemble "
                      "members; CHECKPOINTS is latest, last:N, START:END (steps) or STEP.",
                      flag_values=fv)
    flags.DEFINE_list("weights", [], "Comma-separated member weights (normalised to sum 1); "
                      "default equal.", flag_values=fv)
    flags.DEFINE_string("output_dir", "", "Directory of the SavedModel to write (must not exist "
                        "unless --overwrite).", flag_values=fv)
    flags.DEFINE_bool("float16", False, "Store the large weight matrices as float16.",
                      flag_values=fv)
    flags.DEFINE_bool("int8", False, "Store the large weight matrices as per-channel int8 with "
                      "float32 scales.", flag_values=fv)
    flags.DEFINE_float("sparse_weights", _DEFAULTS.sparse_weights, "Store a large matrix with "
                       "at least this fraction of zeros (a pruned one) as a bit mask + its "
                       "non-zero values, when smaller; 0: off. Any precision.", lower_bound=0.0,
                       upper_bound=1.0, flag_values=fv)
    flags.DEFINE_float("size_budget_mb", _DEFAULTS.size_budget_mb,
                       "Refuse the export if it would exceed this many MB (2**20 bytes).",
                       flag_values=fv)
    flags.DEFINE_string("average_checkpoints", _DEFAULTS.average_checkpoints,
                        "Checkpoints averaged for members given without @: latest, last:N, "
                        "START:END or STEP.", flag_values=fv)
    flags.DEFINE_integer("min_low_precision_elements", _DEFAULTS.min_low_precision_elements,
                         "Weight matrices with fewer values stay float32.", flag_values=fv)
    flags.DEFINE_integer("top_k", _DEFAULTS.top_k, "Classes in the top-k outputs of the "
                         "signatures and in GAP.", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("tune_weights_on", "", "Frame-level validation file pattern: choose the "
                        "member weights that maximise GAP on it.", flag_values=fv)
    flags.DEFINE_bool("select_under_budget", False, "With --tune_weights_on: also choose which "
                      "members to keep within --size_budget_mb.", flag_values=fv)
    flags.DEFINE_string("eval_data_pattern", "", "Frame-level validation file pattern to verify "
                        "the export on and report GAP before/after (default: "
                        "--tune_weights_on; without either, random videos).", flag_values=fv)
    flags.DEFINE_integer("max_eval_examples", _DEFAULTS.max_eval_examples,
                         "Videos read from the validation data.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Videos per batch when reading "
                         "validation data.", lower_bound=1, flag_values=fv)
    flags.DEFINE_float("max_prediction_diff", None, "Largest accepted |export - float32 "
                       "ensemble| prediction difference (default 1e-5 float32, 1e-3 float16, "
                       "2e-2 int8).", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir.", flag_values=fv)


def _weights(texts):
    weights = []
    for text in texts:
        try:
            weights.append(float(text))
        except ValueError:
            raise ValueError(f"--weights: {text!r} is not a number") from None
    return weights or None


def config_from_flags(flag_values=flags.FLAGS):
    fv = flag_values
    if fv.float16 and fv.int8:
        raise ValueError("--float16 and --int8 exclude each other: choose one precision")
    precision = (precision_lib.FLOAT16 if fv.float16 else
                 precision_lib.INT8 if fv.int8 else precision_lib.FLOAT32)
    return exporter.ExportConfig(
        members=list(fv.members), output_dir=fv.output_dir, weights=_weights(fv.weights),
        precision=precision, average_checkpoints=fv.average_checkpoints,
        size_budget_mb=fv.size_budget_mb,
        min_low_precision_elements=fv.min_low_precision_elements,
        sparse_weights=fv.sparse_weights, top_k=fv.top_k,
        tune_weights_on=fv.tune_weights_on, select_under_budget=fv.select_under_budget,
        eval_data_pattern=fv.eval_data_pattern, max_eval_examples=fv.max_eval_examples,
        batch_size=fv.batch_size, max_prediction_diff=fv.max_prediction_diff,
        overwrite=fv.overwrite)
