"""export_ensemble: members' train dirs -> one verified SavedModel, written atomically.

Steps: load every member (checkpoint averaging included) -> optionally tune the weights / choose
the members on validation data -> build the ensemble module at the requested precision (pruned
matrices bit-packed with --sparse_weights) -> check the size budget (before anything is written)
-> save to a temp dir next to output_dir -> reload it and verify (max abs difference against the
float32 ensemble, GAP before and after) -> write export_report.json -> rename the temp dir to
output_dir. Any failure removes the temp dir.
"""
import dataclasses
import os
from typing import Optional

from absl import logging

import yt8m  # noqa: F401
import numpy as np
import tensorflow as tf

from yt8m.core import files
from yt8m.core import model_flags as model_flags_lib
from yt8m.core import options
from yt8m.core.option_groups import Batching, TopK
from yt8m.export import budget
from yt8m.export import member_module
from yt8m.export import members as members_lib
from yt8m.export import precision as precision_lib
from yt8m.export import serving
from yt8m.export import storage
from yt8m.export import tuning
from yt8m.export import validation_data
from yt8m.core import errors

REPORT_FILE = "export_report.json"
SAVED_MODEL_FILE = "saved_model.pb"
# Largest |exported - float32 ensemble| prediction difference accepted by default.
DEFAULT_MAX_PREDICTION_DIFF = {name: precision_lib.get(name).max_prediction_diff
                               for name in precision_lib.PRECISIONS}
# Size of the traced graph per member, reserved when --select_under_budget compares sizes before
# any graph exists (the real total is checked again before writing).
GRAPH_ALLOWANCE_BYTES = 2 ** 20


class PredictionMismatchError(errors.InvalidInputError):
    pass


@dataclasses.dataclass
class ExportConfig:
    """What to export and how: the options of export_ensemble.py."""
    members: list[str] = options.option(
        default_factory=list, help="Comma-separated TRAIN_DIR[@CHECKPOINTS] of the ensemble "
        "members; CHECKPOINTS is latest, last:N, START:END (steps) or STEP.")
    output_dir: str = options.option(
        "", "Directory of the SavedModel to write (must not exist unless --overwrite).")
    weights: Optional[list[float]] = options.option(
        None, "Comma-separated member weights (normalised to sum 1); default equal.")
    precision: str = options.option(
        precision_lib.FLOAT32, "Storage of the large weight matrices: " + "; ".join(
            f"{name}: {precision_lib.get(name).help}" for name in precision_lib.PRECISIONS)
        + ".", choices=precision_lib.PRECISIONS,
        deprecated_aliases={"float16": precision_lib.FLOAT16, "int8": precision_lib.INT8})
    average_checkpoints: str = options.option(
        members_lib.LATEST, "Checkpoints averaged for members given without @: latest, last:N, "
        "START:END or STEP.")
    size_budget_mb: float = options.option(
        1024.0, "Refuse the export if it would exceed this many MB (2**20 bytes).")
    min_low_precision_elements: int = options.option(
        precision_lib.DEFAULT_MIN_ELEMENTS, "Weight matrices with fewer values stay float32.")
    float16_selection: str = options.option(
        precision_lib.SIZE_SELECTION, "Which matrices --precision=float16 stores as float16: "
        "size (every matrix with at least --min_low_precision_elements values) or boliu61 "
        "(exactly the four tensors of boliu61's --float16_flag: the hidden layer and the MoE "
        "gate, expert and probability-gating matrices).", choices=precision_lib.SELECTIONS)
    sparse_weights: float = options.option(
        0.0, "Store a large matrix with at least this fraction of zeros (a pruned one) as a bit "
        "mask + its non-zero values, when that is smaller; 0: off. Combines with any "
        "--precision (yt8m.export.storage).", lower=0.0, upper=1.0)
    top_k: int = options.override(
        TopK, "top_k", help="Classes in the top-k outputs of the signatures and in GAP.")
    tune_weights_on: str = options.option(
        "", "Frame-level validation file pattern: choose the member weights that maximise GAP "
        "on it.")
    select_under_budget: bool = options.option(
        False, "With --tune_weights_on: also choose which members to keep within "
        "--size_budget_mb.")
    eval_data_pattern: str = options.option(
        "", "Frame-level validation file pattern to verify the export on and report GAP "
        "before/after (default: --tune_weights_on; without either, random videos).")
    max_eval_examples: int = options.option(
        10000, "Videos read from the validation data.", lower=1)
    batch_size: int = options.override(
        Batching, "batch_size", 64, help="Videos per batch when reading validation data.")
    max_prediction_diff: Optional[float] = options.option(
        None, "Largest accepted |export - float32 ensemble| prediction difference (default "
        + ", ".join(f"{limit:g} {name}" for name, limit in DEFAULT_MAX_PREDICTION_DIFF.items())
        + ").")
    overwrite: bool = options.option(False, "Replace an existing --output_dir.")


def _check_config(config, specs):
    precision_lib.check_precision(config.precision)
    if not config.output_dir:
        raise errors.InvalidInputError(
            "--output_dir is empty: give the directory to write the SavedModel to")
    _check_output_outside_inputs(config, specs)
    # --overwrite replaces an earlier export, never a directory of anything else.
    files.check_replaceable_directory(config.output_dir, "--output_dir", config.overwrite,
                                      (SAVED_MODEL_FILE, REPORT_FILE), "export_ensemble.py")
    if config.size_budget_mb <= 0:
        raise errors.InvalidInputError(
            f"--size_budget_mb must be positive, got {config.size_budget_mb:g}")
    if config.weights is not None:
        if len(config.weights) != len(config.members):
            raise errors.InvalidInputError(f"--weights has {len(config.weights)} values for "
                                           f"{len(config.members)} --members")
        if any(weight < 0 for weight in config.weights) or sum(config.weights) <= 0:
            raise errors.InvalidInputError(f"--weights must be >= 0 with a positive sum, got "
                                           f"{list(config.weights)}")
        if config.tune_weights_on:
            raise errors.InvalidInputError(
                "--weights and --tune_weights_on exclude each other: tuning "
                "chooses the weights")
    if config.select_under_budget and not config.tune_weights_on:
        raise errors.InvalidInputError(
            "--select_under_budget needs --tune_weights_on (validation data to "
            "choose the members by GAP)")
    storage.check_sparse_weights(config.sparse_weights)
    if config.min_low_precision_elements < 1:
        raise errors.InvalidInputError("--min_low_precision_elements must be >= 1, got "
                                       f"{config.min_low_precision_elements}")
    if (config.float16_selection != precision_lib.SIZE_SELECTION
            and config.precision != precision_lib.FLOAT16):
        raise errors.InvalidInputError(
            f"--float16_selection={config.float16_selection} chooses the float16 tensors; it "
            f"needs --precision=float16, not {config.precision}")


def _check_output_outside_inputs(config, specs):
    """The export replaces --output_dir whole: it must not be, hold or lie inside a member's
    train dir or a validation file."""
    inputs = [("--members", spec.train_dir) for spec in specs]
    for flag in ("tune_weights_on", "eval_data_pattern"):
        for pattern in filter(None, getattr(config, flag).split(",")):
            inputs += [(f"--{flag}", path) for path in tf.io.gfile.glob(pattern.strip())]
    files.check_output_path(config.output_dir, "--output_dir", inputs)


def _check_members_agree(loaded):
    num_classes = {int(member.model_flags["num_classes"]) for member in loaded}
    if len(num_classes) != 1:
        raise errors.InvalidInputError(
            "--members predict different numbers of classes: " + ", ".join(
            f"{member.spec.train_dir}: {member.model_flags['num_classes']}" for member in loaded))
    for member in loaded:
        for name, size in zip(*model_flags_lib.features(member.model_flags)):
            base = name[len(member_module.VIDEO_LEVEL_PREFIX):] if name.startswith(
                member_module.VIDEO_LEVEL_PREFIX) else name
            if serving.FEATURE_SIZES.get(base) != size:
                raise errors.InvalidInputError(
                    f"--members: {member.spec.train_dir} uses feature {name!r} of size {size}; "
                    f"the serving signatures carry {serving.FEATURE_SIZES}")
    return num_classes.pop()


def _normalised(weights):
    total = float(sum(weights))
    return [float(weight) / total for weight in weights]


def _float32_member_predictions(members, batches):
    """Per member [N, V] float32 predictions over `batches`, plus labels [N, V]."""
    forwards = [tf.function(member.float32_predictions, reduce_retracing=True, autograph=False)
                for member in members]
    per_member = [[] for _ in members]
    labels = []
    for batch in batches:
        frames = {name: batch[name] for name in serving.FEATURE_NAMES}
        for outputs, forward in zip(per_member, forwards):
            outputs.append(forward(frames, batch["num_frames"]).numpy())
        labels.append(batch["labels"].numpy())
    if not labels:
        raise errors.InvalidInputError("the validation data holds no video")
    return [np.concatenate(outputs) for outputs in per_member], np.concatenate(labels)


def _gap_data(config):
    """(pattern, flag name) of the data GAP is reported on, or (None, None)."""
    if config.eval_data_pattern:
        return config.eval_data_pattern, "--eval_data_pattern"
    if config.tune_weights_on:
        return config.tune_weights_on, "--tune_weights_on"
    return None, None


def _batches(config, pattern, flag_name, num_classes, members):
    return validation_data.frame_batches(pattern, flag_name, config.batch_size,
                                         config.max_eval_examples, num_classes,
                                         max(member.max_frames for member in members))


def _choose_weights(config, members, num_classes, loaded_weights_bytes, report):
    """(kept member indices, weights): given, equal, tuned or selected under the budget."""
    count = len(members)
    if not config.tune_weights_on:
        weights = _normalised(config.weights) if config.weights else [1.0 / count] * count
        return list(range(count)), weights
    predictions, labels = _float32_member_predictions(
        members, _batches(config, config.tune_weights_on, "--tune_weights_on", num_classes,
                          members))
    if config.select_under_budget:
        budget_bytes = config.size_budget_mb * budget.BYTES_PER_MB
        sizes = [size + GRAPH_ALLOWANCE_BYTES for size in loaded_weights_bytes]
        result = tuning.select_under_budget(predictions, labels, sizes, budget_bytes,
                                            top_k=config.top_k)
        report["selection"] = {
            "chosen": [config.members[index] for index in result.members],
            "candidates": [{"members": [config.members[index] for index in subset], "gap": gap}
                           for subset, gap in result.candidates]}
        kept, weights = result.members, result.weights
    else:
        result = tuning.tune_weights(predictions, labels, top_k=config.top_k)
        report["tuning"] = {"equal_weights_gap": result.equal_weights_gap,
                            "tuned_gap": result.gap}
        kept, weights = list(range(count)), result.weights
    return kept, weights


def _graph_bytes(signatures):
    return sum(function.graph.as_graph_def().ByteSize() for function in signatures.values())


def build_ensemble(loaded, weights, precision, selection, num_classes, top_k=20,
                   sparse_weights=0.0):
    """EnsembleModule over LoadedMembers (their models keep their float32 weights); selection:
    a precision.Selection (or the size rule's minimum element count)."""
    modules = [member_module.MemberModule(member.model, member.model_flags, precision,
                                          selection, name=f"member_{index}",
                                          sparse_weights=sparse_weights)
               for index, member in enumerate(loaded)]
    return serving.EnsembleModule(modules, weights, num_classes, top_k=top_k)


def storage_report(loaded, ensemble):
    """Per member and storage group (yt8m.export.storage): tensors, sparsity, stored and dense
    bytes; and one row per matrix stored sparse."""
    groups, sparse_tensors = [], []
    for member, module in zip(loaded, ensemble.members):
        plans = module.storage_plans
        for group, totals in storage.group_totals([plan for _, plan in plans]).items():
            groups.append({"member": member.spec.describe(), "group": group, **totals})
        sparse_tensors += [{"member": member.spec.describe(), "variable": name,
                            "shape": list(plan.shape), "precision": plan.precision,
                            "sparsity": plan.num_zeros / plan.num_elements,
                            "stored_bytes": plan.stored_bytes, "dense_bytes": plan.dense_bytes}
                           for name, plan in plans if plan.group == storage.SPARSE]
    return {"tensor_groups": groups, "sparse_tensors": sparse_tensors}


def export_ensemble(config):
    """Runs the whole export (see the module docstring); returns the report dict."""
    default_selection = members_lib.parse_selection(config.average_checkpoints,
                                                    "--average_checkpoints")
    specs = members_lib.parse_members(config.members, default_selection)
    _check_config(config, specs)
    loaded = [members_lib.load_member(spec) for spec in specs]
    num_classes = _check_members_agree(loaded)
    selection = precision_lib.Selection(config.min_low_precision_elements,
                                        config.float16_selection)
    sizes = [budget.sizes_by_precision(member_module.unique_variables(member.model), selection,
                                       config.sparse_weights)
             for member in loaded]
    report = {
        "output_dir": config.output_dir,
        "precision": config.precision,
        "float16_selection": config.float16_selection,
        "sparse_weights": config.sparse_weights,
        "num_classes": num_classes,
        "members": [{"member": member.spec.describe(), "model": member.model_flags.get("model"),
                     "checkpoints": member.checkpoints, "bytes": size}
                    for member, size in zip(loaded, sizes)],
    }

    float32_modules = [member_module.MemberModule(member.model, member.model_flags,
                                                  precision_lib.FLOAT32, selection,
                                                  name=f"member_{index}")
                       for index, member in enumerate(loaded)]
    kept, weights = _choose_weights(config, float32_modules, num_classes,
                                    [size[config.precision] for size in sizes], report)
    # A member left at weight 0 would only cost space.
    kept, weights = zip(*[(index, weight) for index, weight in zip(kept, weights) if weight > 0])
    loaded = [loaded[index] for index in kept]
    weights = _normalised(weights)
    report["weights"] = {loaded_member.spec.describe(): weight
                         for loaded_member, weight in zip(loaded, weights)}

    ensemble = build_ensemble(loaded, weights, config.precision, selection, num_classes,
                              config.top_k, config.sparse_weights)
    max_frames = int(ensemble.max_frames.numpy())
    report["max_frames"] = max_frames
    report.update(storage_report(loaded, ensemble))
    signatures = ensemble.signatures()
    for function in signatures.values():
        member_module.check_no_float32_reads(function, ensemble.members)
    estimated = ensemble.saved_bytes() + _graph_bytes(signatures)
    report["size_bytes"] = {precision: sum(size[precision] for size in
                                           (sizes[index] for index in kept))
                            for precision in precision_lib.PRECISIONS}
    report["estimated_export_bytes"] = estimated
    budget.check_budget(estimated, config.size_budget_mb, f"the {config.precision} ensemble")

    with files.atomic_directory(config.output_dir) as temp_dir:
        tf.saved_model.save(ensemble, temp_dir, signatures=signatures)
        report.update(_verify(temp_dir, ensemble, config, num_classes))
        budget.check_budget(report["on_disk_bytes"], config.size_budget_mb,
                            f"the written {config.precision} ensemble")
        files.write_json_atomically(os.path.join(temp_dir, REPORT_FILE), report)
    logging.info("Exported %s (report: %s)", config.output_dir,
                 os.path.join(config.output_dir, REPORT_FILE))
    return report


def _verification_batches(ensemble, config, num_classes):
    """(batches, data pattern): the validation data when given, else random videos of random
    lengths (no labels, no GAP)."""
    pattern, flag_name = _gap_data(config)
    if pattern:
        return _batches(config, pattern, flag_name, num_classes, ensemble.members), pattern
    frames, num_frames = validation_data.random_videos(8, int(ensemble.max_frames.numpy()))
    return [dict(frames, num_frames=num_frames)], None


def _verify(export_dir, ensemble, config, num_classes):
    """Reloads the export and compares it with the float32 ensemble over the validation data (or
    random videos): max abs prediction difference, and GAP of both when there are labels."""
    serve = tf.saved_model.load(export_dir).signatures[serving.SERVING_DEFAULT]
    reference = tf.function(ensemble.float32_predict, reduce_retracing=True, autograph=False)
    batches, pattern = _verification_batches(ensemble, config, num_classes)
    max_diff, exported, expected, labels = 0.0, [], [], []
    for batch in batches:
        frames = {name: batch[name] for name in serving.FEATURE_NAMES}
        exported.append(serve(**frames, num_frames=batch["num_frames"])["predictions"].numpy())
        expected.append(reference(frames, batch["num_frames"]).numpy())
        max_diff = max(max_diff, float(np.max(np.abs(exported[-1] - expected[-1]))))
        if pattern:
            labels.append(batch["labels"].numpy())
    limit = (config.max_prediction_diff if config.max_prediction_diff is not None
             else DEFAULT_MAX_PREDICTION_DIFF[config.precision])
    if max_diff > limit:
        raise PredictionMismatchError(
            f"the {config.precision} export differs from the float32 ensemble by up to "
            f"{max_diff:.3g} in a prediction, over the limit {limit:g} "
            "(--max_prediction_diff); nothing was written")
    result = {"max_abs_prediction_diff": max_diff, "max_prediction_diff_limit": limit,
              "verified_on": pattern or "random videos",
              "verified_videos": int(sum(len(part) for part in exported)),
              "on_disk_bytes": budget.directory_bytes(export_dir)}
    if pattern:
        labels = np.concatenate(labels)
        result["gap_float32"] = tuning.gap_score(np.concatenate(expected), labels, config.top_k)
        result["gap_exported"] = tuning.gap_score(np.concatenate(exported), labels,
                                                  config.top_k)
        result["gap_data"] = pattern
    return result


def format_report(report):
    """A few lines for the terminal; the full report is export_report.json."""
    mb = budget.BYTES_PER_MB
    sizes = report["size_bytes"]
    lines = [
        f"Exported a {report['precision']} ensemble of {len(report['weights'])} member(s) to "
        f"{report['output_dir']}",
        "  weights: " + ", ".join(f"{member}={weight:.4g}"
                                  for member, weight in report["weights"].items()),
        f"  size on disk: {report['on_disk_bytes'] / mb:.3f} MB (variables: "
        + ", ".join(f"{name} {size / mb:.3f} MB" for name, size in sizes.items()) + ")",
        f"  max |prediction - float32 ensemble|: {report['max_abs_prediction_diff']:.3g} "
        f"(limit {report['max_prediction_diff_limit']:g})",
    ]
    sparse = [row for row in report.get("tensor_groups", []) if row["group"] == storage.SPARSE]
    if sparse:
        elements = sum(row["elements"] for row in sparse)
        zeros = sum(row["sparsity"] * row["elements"] for row in sparse)
        lines.append(
            f"  sparse storage: {sum(row['tensors'] for row in sparse)} matrices, sparsity "
            f"{zeros / elements:.3f}, {sum(row['stored_bytes'] for row in sparse) / mb:.3f} MB "
            f"instead of {sum(row['dense_bytes'] for row in sparse) / mb:.3f} MB dense")
    if "gap_exported" in report:
        lines.append(f"  GAP on {report['gap_data']}: float32 {report['gap_float32']:.5f}, "
                     f"exported {report['gap_exported']:.5f}")
    lines.append(f"  report: {os.path.join(report['output_dir'], REPORT_FILE)}")
    return "\n".join(lines)
