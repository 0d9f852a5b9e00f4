"""MOD trees: mixtures of mixtures of any depth and branching, from one flag (`--mod_tree=4x3`).

"4x3" is the MOD paper's tree: a root mixture of 4 sub-mixtures of 3 leaves (12 leaf models);
"2x2x3" adds a level; "3" is a one-level mixture (MixNeXtVLAD). The root's children (the top-level
sub-trees) are placed round-robin on the devices (model parallelism); deeper nodes run where their
top-level sub-tree runs.

Each level of mixtures has its own distillation temperature and lambda. By default the root uses
`final_temperature`/`final_lambda` (the reference's names for the top level; unset: the same as
`cl_*`, as in the paper) and every lower level `cl_temperature`/`cl_lambda`; `mod_temperatures` and
`mod_lambdas` (comma lists, one value per level, root first) set each level explicitly.
"""
import dataclasses

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

from frame_level_models.composite import placement
from frame_level_models.composite.mixture import MixtureModel
from frame_level_models.layers import common
from yt8m.core import errors


@dataclasses.dataclass(frozen=True)
class LevelSettings:
    temperature: float
    distill_lambda: float


def parse_tree_shape(text, flag_name="--mod_tree"):
    """'4x3' -> (4, 3): branches per mixture, root first."""
    parts = [part.strip() for part in str(text).lower().split("x")]
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        raise errors.InvalidInputError(
            f"{flag_name}={text!r} is not a tree shape such as 3, 4x3 or 2x2x3 "
            "(branch counts joined by 'x', root first)") from None
    if any(count < 1 for count in shape):
        raise errors.InvalidInputError(f"{flag_name}={text!r}: every branch count must be >= 1")
    return shape


def format_tree_shape(shape):
    return "x".join(str(count) for count in shape)


def _float_list(text, flag_name, depth):
    values = [part.strip() for part in str(text or "").split(",") if part.strip()]
    if not values:
        return None
    try:
        numbers = [float(value) for value in values]
    except ValueError:
        raise errors.InvalidInputError(
            f"{flag_name}={text!r} is not a comma-separated list of numbers") from None
    if len(numbers) != depth:
        raise errors.InvalidInputError(
            f"{flag_name}={text!r} has {len(numbers)} values; the tree has {depth} "
            "levels of mixtures (give one per level, root first)")
    return numbers


def level_settings(depth, cl_temperature, cl_lambda, final_temperature=None, final_lambda=None,
                   mod_temperatures="", mod_lambdas=""):
    """One LevelSettings per level of mixtures, root first (see the module doc for the rules)."""
    temperatures = _float_list(mod_temperatures, "--mod_temperatures", depth)
    lambdas = _float_list(mod_lambdas, "--mod_lambdas", depth)
    if temperatures is None:
        top = cl_temperature if final_temperature is None else final_temperature
        temperatures = [top] + [cl_temperature] * (depth - 1)
    if lambdas is None:
        top = cl_lambda if final_lambda is None else final_lambda
        lambdas = [top] + [cl_lambda] * (depth - 1)
    for level, temperature in enumerate(temperatures):
        if temperature < 0:
            raise errors.InvalidInputError(
                f"distillation temperature of level {level} is {temperature}; it must "
                "be >= 0 (0 disables distillation at that level)")
    return [LevelSettings(float(t), float(l)) for t, l in zip(temperatures, lambdas)]


def build_tree(shape, make_leaf, num_classes, settings, devices=(), stop_teacher_gradient=False,
               gate_l2_penalty=0.0, bn_momentum=common.BN_MOMENTUM, name="mod_tree",
               gate_bias=True, gate_whitening=None):
    """Builds the MixtureModel tree of `shape` whose leaves come from `make_leaf(path)`.

    Args:
      shape: branch counts per level, root first (parse_tree_shape).
      make_leaf: callable(path tuple) -> a built model with a `logits` output.
      settings: one LevelSettings per level (level_settings).
      devices: devices for the root's children, assigned round-robin (placement.assign_round_robin);
        empty or a single device: no explicit placement.
      gate_bias, gate_whitening: of every gate (MixtureModel; gate_whitening with the layer given
        as its serialized config, so each gate gets its own).
    """
    if len(settings) != len(shape):
        raise ValueError(f"{len(settings)} level settings for a tree of {len(shape)} levels")
    top_devices = placement.assign_round_robin(list(devices), shape[0])
    placement.check_strategy_allows_placement(top_devices)

    def build_node(path):
        depth = len(path)
        if depth == len(shape):
            return make_leaf(path)
        children = []
        for index in range(shape[depth]):
            device = top_devices[index] if depth == 0 else None
            # The child's weights are created here, so they land on the child's device.
            with placement.device_scope(device):
                children.append(build_node(path + (index,)))
        level = settings[depth]
        node_name = name if depth == 0 else f"{name}_mixture_" + "_".join(map(str, path))
        return MixtureModel(children, num_classes, temperature=level.temperature,
                            distill_lambda=level.distill_lambda,
                            stop_teacher_gradient=stop_teacher_gradient,
                            branch_devices=top_devices if depth == 0 else None,
                            gate_l2_penalty=gate_l2_penalty, bn_momentum=bn_momentum,
                            gate_bias=gate_bias, gate_whitening=gate_whitening, name=node_name)

    return build_node(())


def parse_path(text, flag_name="--path"):
    """'2/1' -> (2, 1): 0-based branch indices from the root."""
    parts = [part.strip() for part in str(text).strip().strip("/").split("/")]
    try:
        path = tuple(int(part) for part in parts)
    except ValueError:
        raise errors.InvalidInputError(
            f"{flag_name}={text!r} is not a path of branch indices such as 2 or 2/1 "
            "(0-based, root first, joined by '/')") from None
    if any(index < 0 for index in path):
        raise errors.InvalidInputError(f"{flag_name}={text!r}: branch indices are 0-based and >= 0")
    return path
