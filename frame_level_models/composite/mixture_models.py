"""The named mixture models of the zoo, built from hyper-parameters:

- MixNeXtVLADModel: one gated mixture of `mix_number` NeXtVLADModel branches (SPEC 4); also
  accepted under linrongc's spelling MixNeXtVladModel (a registry alias).
- MODNeXtVLADModel: a MOD tree of NeXtVLADModel leaves, shape `mod_tree` (default 4x3).
- MixtureModel: a tree of shape `mod_tree` (default one level of `mix_number`) over any zoo model
  named by `mixture_base_model`.

The leaves are built by the registry with every hparam that is not a mixture hparam, so a leaf is
exactly the standalone zoo model of the same name and hparams (`bn_momentum` reaches the leaves and
the gates); `node_model_flags` describes any node of a trained tree as a model of its own (what
yt8m/distillation/extract.py writes).
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tf_keras as keras

from frame_level_models import hparams as hparams_lib
from frame_level_models import model_parts
from frame_level_models import nextvlad_model
from frame_level_models import registry
from frame_level_models.composite import mod_tree
from frame_level_models.composite import placement
from frame_level_models.hparams import HParam, integer
from yt8m.core import errors
from yt8m.losses import LINRONGC_EPSILON

GENERIC_MIXTURE = "MixtureModel"
MIX_NEXTVLAD = "MixNeXtVLADModel"
MOD_NEXTVLAD = "MODNeXtVLADModel"
NEXTVLAD = "NeXtVLADModel"
MIXTURE_MODELS = (GENERIC_MIXTURE, MIX_NEXTVLAD, MOD_NEXTVLAD)
REFERENCE_ALIASES = {"MixNeXtVladModel": MIX_NEXTVLAD}  # linrongc/MOD's class name
DEFAULT_MOD_TREE = "4x3"

HPARAMS = (
    integer("mix_number", 3, "Branches of a one-level mixture (MixNeXtVLADModel; MixtureModel "
            "without --mod_tree)."),
    HParam("mod_tree", "string", "",
           "Shape of a MOD tree: branch counts per level joined by 'x', root first (4x3 = 4 "
           "mixtures of 3 leaves, the MOD paper; 2x2x3 one level deeper). Empty: "
           "MODNeXtVLADModel uses 4x3, MixtureModel one level of --mix_number."),
    HParam("mixture_base_model", "string", "NeXtVLADModel",
           "Leaf model of MixtureModel: any frame_level_models model with a `logits` output."),
    HParam("cl_temperature", "float", 3.0,
           "Distillation temperature T of the mixtures below the root (and of the root unless "
           "--final_temperature is set); 0 disables the distillation term.", lower_bound=0.0),
    HParam("cl_lambda", "float", 9.0, "Weight of the distillation term (the references use T^2).",
           lower_bound=0.0),
    HParam("final_temperature", "float", None,
           "Temperature of the root mixture of a MOD tree (unset: --cl_temperature).",
           lower_bound=0.0),
    HParam("final_lambda", "float", None,
           "Distillation weight of the root mixture of a MOD tree (unset: --cl_lambda).",
           lower_bound=0.0),
    HParam("mod_temperatures", "string", "",
           "Per-level temperatures, root first, comma-separated (overrides "
           "cl_/final_temperature)."),
    HParam("mod_lambdas", "string", "",
           "Per-level distillation weights, root first, comma-separated (overrides "
           "cl_/final_lambda)."),
    HParam("cl_stop_teacher_gradient", "bool", False,
           "Stop the gradient of the distillation term on the mixture (teacher) side. The "
           "reference lets it flow (default)."),
    HParam("mix_gate_l2_penalty", "float", 0.0,
           "L2 penalty of each mixture gate's kernel (starter meaning penalty/2*sum(w^2)); 0 as "
           "the reference's gate (mix_weights: no regularizer).", lower_bound=0.0),
    HParam("mod_devices", "string", "",
           "Devices of the root's sub-trees, comma-separated (e.g. /GPU:0,/GPU:1), assigned "
           "round-robin. Empty: every visible GPU, else every logical CPU. One device: no "
           "placement."),
)
HPARAM_NAMES = tuple(hparam.name for hparam in HPARAMS)
DESCRIPTIONS = {
    GENERIC_MIXTURE: "Gated mixture (or MOD tree, --mod_tree) of any zoo model "
                     "(--mixture_base_model) with online distillation.",
    MIX_NEXTVLAD: "Gated mixture of --mix_number NeXtVLAD models with online distillation.",
    MOD_NEXTVLAD: "MOD tree (--mod_tree, default 4x3) of NeXtVLAD models with online "
                  "distillation; top-level sub-trees placed on their own devices.",
}


def _check_name(model_name):
    """The registered name of a mixture model (aliases accepted)."""
    model_name = registry.canonical_name(model_name)
    if model_name not in MIXTURE_MODELS:
        raise ValueError(f"unknown mixture model {model_name!r}; choose one of: "
                         f"{', '.join(MIXTURE_MODELS)}")
    return model_name


def base_model_name(model_name, values):
    """The zoo model at the leaves."""
    model_name = _check_name(model_name)
    base = values["mixture_base_model"] if model_name == GENERIC_MIXTURE else NEXTVLAD
    if base in MIXTURE_MODELS:
        raise errors.InvalidInputError(
            f"{model_name}: mixture_base_model={base!r} is itself a mixture; give "
            "the tree's shape with --mod_tree instead (e.g. 4x3)")
    if base not in registry.model_names():
        raise errors.InvalidInputError(
            f"{model_name}: mixture_base_model={base!r} is not a zoo model; choose "
            f"one of: {', '.join(registry.model_names())}")
    return base


def tree_shape(model_name, values):
    """Branch counts per level, root first."""
    model_name = _check_name(model_name)
    if model_name == MIX_NEXTVLAD:
        if values["mod_tree"]:
            raise errors.InvalidInputError(
                "MixNeXtVLADModel is one level of --mix_number branches; "
                f"mod_tree={values['mod_tree']!r} needs MODNeXtVLADModel")
        return (values["mix_number"],)
    text = values["mod_tree"]
    if not text:
        text = DEFAULT_MOD_TREE if model_name == MOD_NEXTVLAD else str(values["mix_number"])
    return mod_tree.parse_tree_shape(text, "mod_tree")


def tree_level_settings(depth, values):
    return mod_tree.level_settings(depth, values["cl_temperature"], values["cl_lambda"],
                                   values["final_temperature"], values["final_lambda"],
                                   values["mod_temperatures"], values["mod_lambdas"])


def split_hparams(hparams):
    """(mixture hparams, the rest: hparams of the leaves and feature_names/feature_sizes)."""
    own = {k: v for k, v in hparams.items() if k in HPARAM_NAMES}
    rest = {k: v for k, v in hparams.items() if k not in HPARAM_NAMES}
    return own, rest


def resolve(model_name, own):
    """{name: value} of every mixture hparam: defaults filled in, values checked."""
    return vars(hparams_lib.resolve(_check_name(model_name), own, names=HPARAM_NAMES))


def gate_whitening(base, leaf_hparams):
    """The gates' reverse whitening (MixtureModel's gate_whitening, layer as config) when the
    leaves whiten their input (NeXtVLADModel --pca_eigenvalues_file), else None: the gates then
    read what the leaves read, as the reference's gate reads the whitened input."""
    if "pca_eigenvalues_file" not in registry.hparam_names(base):
        return None
    hp = hparams_lib.resolve(base, leaf_hparams, names=("pca_eigenvalues_file",))
    names, sizes = model_parts.resolve_features(base, True, leaf_hparams.get("feature_names"),
                                                leaf_hparams.get("feature_sizes"))
    stream = nextvlad_model.WHITENED_STREAM
    layer = nextvlad_model.reverse_whitening(hp, f"gate_{names[stream]}", sizes[stream])
    if layer is None:
        return None
    return {"feature": names[stream], "layer": keras.saving.serialize_keras_object(layer)}


def _leaf_with_logits(model, base):
    """The leaf, checked now (not at the first training step) to have logits."""
    outputs = getattr(model, "output", None)
    if isinstance(outputs, dict) and "logits" not in outputs:
        raise ValueError(f"{base} built with these hparams has no 'logits' output (outputs: "
                         f"{', '.join(sorted(outputs))}); a mixture combines its branches' "
                         "logits: use --video_level_classifier_model=LogisticModel")
    return model


def top_level_devices(model_name, hparams):
    """The device of each of the root's sub-trees (None everywhere: no placement)."""
    values = resolve(model_name, split_hparams(hparams)[0])
    return placement.assign_round_robin(
        placement.parse_devices(values["mod_devices"], "mod_devices"),
        tree_shape(model_name, values)[0])


def build(model_name, num_classes, **hparams):
    """Builds mixture model `model_name` (a MixtureModel tree) for `num_classes` classes."""
    model_name = _check_name(model_name)
    own, leaf_hparams = split_hparams(hparams)
    values = resolve(model_name, own)
    bn_momentum = hparams_lib.resolve(model_name, leaf_hparams, names=("bn_momentum",)).bn_momentum
    base = base_model_name(model_name, values)
    shape = tree_shape(model_name, values)
    settings = tree_level_settings(len(shape), values)
    devices = placement.parse_devices(values["mod_devices"], "mod_devices")

    def make_leaf(path):
        del path  # every leaf is the same model with its own weights
        return _leaf_with_logits(registry.build(base, num_classes, **leaf_hparams), base)

    return mod_tree.build_tree(shape, make_leaf, num_classes, settings, devices,
                               stop_teacher_gradient=values["cl_stop_teacher_gradient"],
                               gate_l2_penalty=values["mix_gate_l2_penalty"],
                               bn_momentum=bn_momentum, name=model_name,
                               gate_whitening=gate_whitening(base, leaf_hparams))


def _format_floats(values):
    return ",".join(repr(float(value)) for value in values)


def node_model_flags(tree_flags, path):
    """model_flags of the node at `path` of the tree described by `tree_flags`, as a model of its
    own: a leaf becomes its zoo model (e.g. NeXtVLADModel: "NeXtVLAD_distill"), a sub-tree a
    MixtureModel with the remaining levels' shape, temperatures and lambdas."""
    model_name = _check_name(tree_flags["model"])
    own, leaf_hparams = split_hparams(tree_flags.get("hparams", {}))
    values = resolve(model_name, own)
    base = base_model_name(model_name, values)
    shape = tree_shape(model_name, values)
    if len(path) > len(shape):
        raise errors.InvalidInputError(
            f"path {'/'.join(map(str, path))} is {len(path)} levels deep; the "
            f"{model_name} tree {mod_tree.format_tree_shape(shape)} has "
            f"{len(shape)} levels")
    for depth, index in enumerate(path):
        if index >= shape[depth]:
            raise errors.InvalidInputError(
                f"path {'/'.join(map(str, path))}: index {index} at depth {depth} is "
                f"out of range; that level has {shape[depth]} branches")
    flags = {key: value for key, value in tree_flags.items() if key != "hparams"}
    if len(path) == len(shape):
        flags["model"] = base
        used = set(registry.hparam_names(base))
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



# The hparams of the leaves: NeXtVLAD's, or (the generic mixture, whose leaf may be any zoo model)
# every model hparam; bn_momentum also sets the gates'.
_LEAF_HPARAMS = {GENERIC_MIXTURE: (model_parts.BN_MOMENTUM,), MIX_NEXTVLAD: nextvlad_model.HPARAMS,
                 MOD_NEXTVLAD: nextvlad_model.HPARAMS}
for _name in MIXTURE_MODELS:
    registry.register_composite(_name, frame_level=True, hparams=HPARAMS + _LEAF_HPARAMS[_name],
                                every_hparam=_name == GENERIC_MIXTURE,
                                description=DESCRIPTIONS[_name],
                                loss_epsilon=LINRONGC_EPSILON,
                                sub_model_devices=top_level_devices)(build)
for _alias, _name in REFERENCE_ALIASES.items():
    registry.register_alias(_alias, _name)
