"""Shows where a MOD tree's sub-trees live: their variables, and the devices of their matrix
products and of those products' gradients in a traced training step.

    python -m yt8m.distillation.placement_report --num_cpu_devices=3 --model=MODNeXtVLADModel \
        --mod_tree=2x3 --mod_devices=/CPU:1,/CPU:2

The step is the trainer's: its loss (`yt8m.training.objective.training_loss`), the model's
`compute_gradients` and the trainer's Adam (clipping and updating each variable on its device,
yt8m.training.model_parallel), traced with tf.function. The report (JSON on stdout) lists, per
top-level sub-tree, the devices of its variables, of its forward MatMul/Einsum ops, of their
gradient ops, of its optimizer updates and of every optimizer op computing them (clipping, slot
updates, Adam's arithmetic). Tiny hyper-parameters keep it fast: it checks
placement, not speed.
"""
import collections
import dataclasses
import json

import numpy as np
from absl import app
from absl import flags

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from frame_level_models.composite import mixture_models
from yt8m import losses as label_losses
from yt8m.core import options
from yt8m.core.config import LocalDevices
from yt8m.training import distribution
from yt8m.training import objective
from yt8m.training.optimizers import make_optimizer

PRODUCT_OPS = ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum")
# What the Keras optimizers emit to update a variable.
UPDATE_OPS = ("AssignSubVariableOp", "AssignAddVariableOp", "AssignVariableOp")



@dataclasses.dataclass
class ReportOptions(LocalDevices):
    num_cpu_devices: int = options.override(LocalDevices, "num_cpu_devices", 3)
    model: str = options.option("MODNeXtVLADModel", "Mixture model to build.")
    mod_tree: str = options.option("2x2", "Tree shape.")
    mod_devices: str = options.option("", "Devices of the top-level sub-trees (empty: all).")
    mixture_base_model: str = options.option("NeXtVLADModel", "Leaf model of MixtureModel.")
    num_classes: int = options.option(6, "Classes.", lower=1)
    batch_size: int = options.option(4, "Batch of the traced step.", lower=1)


options.define_flags(ReportOptions)


def _tiny_hparams(report_options):
    return dict(feature_names="rgb,audio", feature_sizes="16,8", nextvlad_cluster_size=4,
                nextvlad_hidden_size=8, groups=2, expansion=2, mod_tree=report_options.mod_tree,
                mod_devices=report_options.mod_devices,
                mixture_base_model=report_options.mixture_base_model)


def _canonical(device):
    """'/job:localhost/replica:0/task:0/device:CPU:1' and '/device:CPU:1' -> '/device:CPU:1'."""
    spec = tf.DeviceSpec.from_string(device or "")
    return f"/device:{spec.device_type}:{spec.device_index}" if spec.device_type else ""


def _scope_owner(op_name, scopes):
    """Index of the sub-tree whose name scope holds the op (or None)."""
    parts = op_name.split("/")
    for index, scope in enumerate(scopes):
        if scope in parts:
            return index
    return None


def placement_report(model, batch_size, num_classes):
    """Traces one training step of `model` and returns the report dict (see the module doc)."""
    specs = model.input_specs
    rng = np.random.default_rng(0)
    frames = 5
    batch = {name: tf.constant(rng.normal(size=(batch_size, frames) + tuple(shape[1:])),
                               tf.float32) for name, shape in specs.items() if name != "num_frames"}
    batch["num_frames"] = tf.constant(rng.integers(1, frames + 1, size=batch_size), tf.int32)
    labels = tf.constant(rng.integers(0, 2, size=(batch_size, num_classes)), tf.float32)
    optimizer = make_optimizer("AdamOptimizer", 1e-3, 1.0,
                               on_variable_devices=model.is_model_parallel)
    optimizer.build(model.trainable_variables)
    label_loss = label_losses.CrossEntropyLoss()

    @tf.function
    def train_step(features, targets):
        with tf.GradientTape() as tape:
            outputs = model(features, training=True)
            losses = objective.training_loss(model, outputs, targets, None, label_loss, 1.0)
        variables = model.trainable_variables
        gradients = model.compute_gradients(tape, losses["total_loss"], variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return losses["total_loss"]

    loss = float(train_step(batch, labels))  # also checks that the placed step runs
    graph = train_step.get_concrete_function(batch, labels).graph
    subtrees = list(model.branch_models)
    scopes = [subtree.name for subtree in subtrees]
    if len(set(scopes)) != len(scopes):
        raise ValueError(f"top-level sub-trees share names {scopes}; cannot tell their ops apart")
    forward = collections.defaultdict(collections.Counter)
    backward = collections.defaultdict(collections.Counter)
    for op in graph.get_operations():
        if op.type not in PRODUCT_OPS:
            continue
        owner = _scope_owner(op.name, scopes)
        if owner is None:
            continue
        table = backward if op.name.startswith(("gradients/", "gradient_tape/")) else forward
        table[owner][_canonical(op.device)] += 1
    # Optimizer updates write to the variable's handle (their first input, a captured tensor).
    internal_name = {id(external): internal.name for external, internal in graph.captures}
    owner_of_handle = {}
    for index, subtree in enumerate(subtrees):
        for variable in subtree.trainable_variables:
            name = internal_name.get(id(variable.handle))
            if name is not None:
                owner_of_handle[name] = index
    updates = collections.defaultdict(collections.Counter)
    update_ops = collections.defaultdict(list)
    for op in graph.get_operations():
        if op.type in UPDATE_OPS and op.inputs and op.inputs[0].name in owner_of_handle:
            updates[owner_of_handle[op.inputs[0].name]][_canonical(op.device)] += 1
            update_ops[owner_of_handle[op.inputs[0].name]].append(op)
    # The arithmetic of the optimizer's ops an update depends on (data or control: a slot's update
    # precedes its read), within the optimizer's name scope: clipping, Adam's formulas. Ops on a
    # variable handle (reads, writes) run where the variable lives whatever their device says.
    optimizer_ops = collections.defaultdict(collections.Counter)
    for index, ops in update_ops.items():
        seen, pending = set(), list(ops)
        while pending:
            op = pending.pop()
            if op.name in seen or not op.name.startswith(optimizer.name + "/"):
                continue
            seen.add(op.name)
            if not any(tensor.dtype == tf.resource for tensor in [*op.inputs, *op.outputs]):
                optimizer_ops[index][_canonical(op.device)] += 1
            pending.extend([tensor.op for tensor in op.inputs] + list(op.control_inputs))
    report = {"loss": loss, "root_gate_variable_devices": sorted(
        {_canonical(v.device) for v in model.gate.variables}), "subtrees": []}
    for index, (subtree, device) in enumerate(zip(subtrees, model.branch_devices)):
        report["subtrees"].append({
            "path": str(index),
            "name": subtree.name,
            "assigned_device": _canonical(device) if device else "",
            "variable_devices": sorted({_canonical(v.device) for v in subtree.variables}),
            "forward_products": dict(forward[index]),
            "gradient_products": dict(backward[index]),
            "optimizer_updates": dict(updates[index]),
            "optimizer_ops": dict(optimizer_ops[index]),
        })
    return report


def main(argv):
    del argv
    report_options = options.from_flags(ReportOptions, flags.FLAGS)
    distribution.configure_cpu_devices(report_options.num_cpu_devices)
    model = mixture_models.build(report_options.model, report_options.num_classes,
                                 **_tiny_hparams(report_options))
    print(json.dumps(placement_report(model, report_options.batch_size,
                                      report_options.num_classes), indent=2, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
