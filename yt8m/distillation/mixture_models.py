"""The named mixture models of the zoo, built from hyper-parameters:

- MixNeXtVLADModel: one gated mixture of `mix_number` NeXtVLADModel branches (SPEC 4).
- MODNeXtVLADModel: a MOD tree of NeXtVLADModel leaves, shape `mod_tree` (default 4x3).
- MixtureModel: a tree of shape `mod_tree` (default one level of `mix_number`) over any zoo model
  named by `mixture_base_model`.

The leaves are built by `frame_level_models.build` with every hparam that is not a mixture hparam,
so a leaf is exactly the standalone zoo model of the same name and hparams; `node_model_flags`
describes any node of a trained tree as a model of its own (what extract.py writes).
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

import frame_level_models
from yt8m.distillation import mixture_hparams
from yt8m.distillation import mod_tree
from yt8m.distillation import placement
from yt8m.distillation import zoo_registration

GENERIC_MIXTURE = zoo_registration.GENERIC_MIXTURE
NEXTVLAD = zoo_registration.NEXTVLAD
MIXTURE_MODELS = zoo_registration.MIXTURE_MODELS
DEFAULT_MOD_TREE = "4x3"


def _check_name(model_name):
    if model_name not in MIXTURE_MODELS:
        raise ValueError(f"unknown mixture model {model_name!r}; choose one of: "
                         f"{', '.join(MIXTURE_MODELS)}")


def base_model_name(model_name, values):
    """The zoo model at the leaves."""
    _check_name(model_name)
    base = values["mixture_base_model"] if model_name == GENERIC_MIXTURE else NEXTVLAD
    if base in MIXTURE_MODELS:
        raise ValueError(f"{model_name}: mixture_base_model={base!r} is itself a mixture; give "
                         "the tree's shape with --mod_tree instead (e.g. 4x3)")
    if base not in frame_level_models.MODEL_NAMES:
        raise ValueError(f"{model_name}: mixture_base_model={base!r} is not a zoo model; choose "
                         f"one of: {', '.join(frame_level_models.MODEL_NAMES)}")
    return base


def tree_shape(model_name, values):
    """Branch counts per level, root first."""
    _check_name(model_name)
    if model_name == "MixNeXtVLADModel":
        if values["mod_tree"]:
            raise ValueError("MixNeXtVLADModel is one level of --mix_number branches; "
                             f"mod_tree={values['mod_tree']!r} needs MODNeXtVLADModel")
        return (values["mix_number"],)
    text = values["mod_tree"]
    if not text:
        text = DEFAULT_MOD_TREE if model_name == "MODNeXtVLADModel" else str(values["mix_number"])
    return mod_tree.parse_tree_shape(text, "mod_tree")


def tree_level_settings(depth, values):
    return mod_tree.level_settings(depth, values["cl_temperature"], values["cl_lambda"],
                                   values["final_temperature"], values["final_lambda"],
                                   values["mod_temperatures"], values["mod_lambdas"])


def split_hparams(hparams):
    """(mixture hparams, the rest: hparams of the leaves and feature_names/feature_sizes)."""
    own = {k: v for k, v in hparams.items() if k in mixture_hparams.MIXTURE_HPARAM_NAMES}
    rest = {k: v for k, v in hparams.items() if k not in mixture_hparams.MIXTURE_HPARAM_NAMES}
    return own, rest


def build(model_name, num_classes, **hparams):
    """Builds mixture model `model_name` (a MixtureModel tree) for `num_classes` classes."""
    own, leaf_hparams = split_hparams(hparams)
    values = mixture_hparams.resolve(model_name, own)
    base = base_model_name(model_name, values)
    shape = tree_shape(model_name, values)
    settings = tree_level_settings(len(shape), values)
    devices = placement.parse_devices(values["mod_devices"], "mod_devices")

    def make_leaf(path):
        del path  # every leaf is the same model with its own weights
        return frame_level_models.build(base, num_classes, **leaf_hparams)

    return mod_tree.build_tree(shape, make_leaf, num_classes, settings, devices,
                               stop_teacher_gradient=values["cl_stop_teacher_gradient"],
                               gate_l2_penalty=values["mix_gate_l2_penalty"], name=model_name)


def _format_floats(values):
    return ",".join(repr(float(value)) for value in values)


def node_model_flags(tree_flags, path):
    """model_flags of the node at `path` of the tree described by `tree_flags`, as a model of its
    own: a leaf becomes its zoo model (e.g. NeXtVLADModel: "NeXtVLAD_distill"), a sub-tree a
    MixtureModel with the remaining levels' shape, temperatures and lambdas."""
    model_name = tree_flags["model"]
    own, leaf_hparams = split_hparams(tree_flags.get("hparams", {}))
    values = mixture_hparams.resolve(model_name, own)
    base = base_model_name(model_name, values)
    shape = tree_shape(model_name, values)
    if len(path) > len(shape):
        raise ValueError(f"path {'/'.join(map(str, path))} is {len(path)} levels deep; the "
                         f"{model_name} tree {mod_tree.format_tree_shape(shape)} has "
                         f"{len(shape)} levels")
    for depth, index in enumerate(path):
        if index >= shape[depth]:
            raise ValueError(f"path {'/'.join(map(str, path))}: index {index} at depth {depth} is "
                             f"out of range; that level has {shape[depth]} branches")
    flags = {key: value for key, value in tree_flags.items() if key != "hparams"}
    if len(path) == len(shape):
        flags["model"] = base
        used = set(frame_level_models.hparam_names(base))
        flags["hparams"] = dict(sorted((k, v) for k, v in leaf_hparams.items() if k in used))
        return flags
    settings = tree_level_settings(len(shape), values)[len(path):]
    sub_values = dict(values, mixture_base_model=base,
                      mod_tree=mod_tree.format_tree_shape(shape[len(path):]),
                      final_temperature=None, final_lambda=None,
                      mod_temperatures=_format_floats(level.temperature for level in settings),
                      mod_lambdas=_format_floats(level.distill_lambda for level in settings))
    flags["model"] = GENERIC_MIXTURE
    flags["hparams"] = dict(sorted({**leaf_hparams, **sub_values}.items()))
    return flags
