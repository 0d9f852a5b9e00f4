"""Hyper-parameters of the mixture models (MixtureModel, MixNeXtVLADModel, MODNeXtVLADModel).

Declared with the zoo's `HParam` record so they can join `frame_level_models.hparams.MODEL_HPARAMS`
(one table for every model flag); until they do, `define_flags` / `hparams_from_flags` here define
and read them.
"""
from absl import flags

import yt8m  # noqa: F401
from frame_level_models import hparams as hparams_lib
from frame_level_models.hparams import HParam

MIXTURE_HPARAMS = (
    HParam("mix_number", "integer", 3,
           "Branches of a one-level mixture (MixNeXtVLADModel; MixtureModel without --mod_tree).",
           lower_bound=1),
    HParam("mod_tree", "string", "",
           "Shape of a MOD tree: branch counts per level joined by 'x', root first (4x3 = 4 "
           "mixtures of 3 leaves, the MOD paper; 2x2x3 one level deeper). Empty: MODNeXtVLADModel "
           "uses 4x3, MixtureModel one level of --mix_number."),
    HParam("mixture_base_model", "string", "NeXtVLADModel",
           "Leaf model of MixtureModel: any frame_level_models model with a `logits` output."),
    HParam("cl_temperature", "float", 3.0,
           "Distillation temperature T of the mixtures below the root (and of the root unless "
           "--final_temperature is set); 0 disables the distillation term.", lower_bound=0.0),
    HParam("cl_lambda", "float", 9.0,
           "Weight of the distillation term (the references use T^2).", lower_bound=0.0),
    HParam("final_temperature", "float", None,
           "Temperature of the root mixture of a MOD tree (unset: --cl_temperature).",
           lower_bound=0.0),
    HParam("final_lambda", "float", None,
           "Distillation weight of the root mixture of a MOD tree (unset: --cl_lambda).",
           lower_bound=0.0),
    HParam("mod_temperatures", "string", "",
           "Per-level temperatures, root first, comma-separated (overrides cl_/final_temperature)."),
    HParam("mod_lambdas", "string", "",
           "Per-level distillation weights, root first, comma-separated (overrides "
           "cl_/final_lambda)."),
    HParam("cl_stop_teacher_gradient", "bool", False,
           "Stop the gradient of the distillation term on the mixture (teacher) side. The "
           "reference lets it flow (default)."),
    HParam("mix_gate_l2_penalty", "float", 1e-5,
           "L2 penalty of each mixture gate's kernel (starter meaning penalty/2*sum(w^2)).",
           lower_bound=0.0),
    HParam("mod_devices", "string", "",
           "Devices of the root's sub-trees, comma-separated (e.g. /GPU:0,/GPU:1), assigned "
           "round-robin. Empty: every visible GPU, else every logical CPU. One device: no "
           "placement."),
)

MIXTURE_HPARAM_NAMES = tuple(hparam.name for hparam in MIXTURE_HPARAMS)


def define_flags(flag_values=flags.FLAGS):
    """One absl flag per mixture hyper-parameter (the zoo's flag definition rules)."""
    for hparam in MIXTURE_HPARAMS:
        hparams_lib._define(hparam, flag_values)  # pylint: disable=protected-access


def hparams_from_flags(flag_values=flags.FLAGS):
    return {name: flag_values[name].value for name in MIXTURE_HPARAM_NAMES}


def resolve(model_name, hparams):
    """{name: value} of every mixture hparam: defaults filled in, values checked by the zoo's rules
    (errors name the model and the hparam)."""
    values = {}
    for hparam in MIXTURE_HPARAMS:
        value = hparams.get(hparam.name)
        if value is None:
            value = hparam.default
        values[hparam.name] = (None if value is None else
                               hparams_lib._check_value(hparam, value, model_name))  # noqa
    return values
