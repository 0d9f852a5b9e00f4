"""Hyper-parameters of the mixture models (MixtureModel, MixNeXtVLADModel, MODNeXtVLADModel).

The table is plain data (keyword arguments of `frame_level_models.hparams.HParam`) and this module
imports nothing from frame_level_models at load time, so the zoo's hparams.py can import it and
add the rows to MODEL_HPARAMS (one table for every model flag) without an import cycle. Until it
does, `define_flags` / `hparams_from_flags` here define and read them.
"""
from absl import flags

import yt8m  # noqa: F401

MIXTURE_HPARAM_ROWS = (
    dict(name="mix_number", kind="integer", default=3, lower_bound=1,
         help="Branches of a one-level mixture (MixNeXtVLADModel; MixtureModel without "
              "--mod_tree)."),
    dict(name="mod_tree", kind="string", default="",
         help="Shape of a MOD tree: branch counts per level joined by 'x', root first (4x3 = 4 "
              "mixtures of 3 leaves, the MOD paper; 2x2x3 one level deeper). Empty: "
              "MODNeXtVLADModel uses 4x3, MixtureModel one level of --mix_number."),
    dict(name="mixture_base_model", kind="string", default="NeXtVLADModel",
         help="Leaf model of MixtureModel: any frame_level_models model with a `logits` output."),
    dict(name="cl_temperature", kind="float", default=3.0, lower_bound=0.0,
         help="Distillation temperature T of the mixtures below the root (and of the root unless "
              "--final_temperature is set); 0 disables the distillation term."),
    dict(name="cl_lambda", kind="float", default=9.0, lower_bound=0.0,
         help="Weight of the distillation term (the references use T^2)."),
    dict(name="final_temperature", kind="float", default=None, lower_bound=0.0,
         help="Temperature of the root mixture of a MOD tree (unset: --cl_temperature)."),
    dict(name="final_lambda", kind="float", default=None, lower_bound=0.0,
         help="Distillation weight of the root mixture of a MOD tree (unset: --cl_lambda)."),
    dict(name="mod_temperatures", kind="string", default="",
         help="Per-level temperatures, root first, comma-separated (overrides "
              "cl_/final_temperature)."),
    dict(name="mod_lambdas", kind="string", default="",
         help="Per-level distillation weights, root first, comma-separated (overrides "
              "cl_/final_lambda)."),
    dict(name="cl_stop_teacher_gradient", kind="bool", default=False,
         help="Stop the gradient of the distillation term on the mixture (teacher) side. The "
              "reference lets it flow (default)."),
    dict(name="mix_gate_l2_penalty", kind="float", default=1e-5, lower_bound=0.0,
         help="L2 penalty of each mixture gate's kernel (starter meaning penalty/2*sum(w^2))."),
    dict(name="mod_devices", kind="string", default="",
         help="Devices of the root's sub-trees, comma-separated (e.g. /GPU:0,/GPU:1), assigned "
              "round-robin. Empty: every visible GPU, else every logical CPU. One device: no "
              "placement."),
)

MIXTURE_HPARAM_NAMES = tuple(row["name"] for row in MIXTURE_HPARAM_ROWS)


def mixture_hparams():
    """The table as `frame_level_models.hparams.HParam` records."""
    from frame_level_models import hparams as hparams_lib  # late: the zoo may import this module
    return tuple(hparams_lib.HParam(**row) for row in MIXTURE_HPARAM_ROWS)


def define_flags(flag_values=flags.FLAGS):
    """One absl flag per mixture hyper-parameter, by the zoo's flag rules."""
    from frame_level_models import hparams as hparams_lib
    for hparam in mixture_hparams():
        hparams_lib._define(hparam, flag_values)  # pylint: disable=protected-access


def hparams_from_flags(flag_values=flags.FLAGS):
    return {name: flag_values[name].value for name in MIXTURE_HPARAM_NAMES}


def resolve(model_name, hparams):
    """{name: value} of every mixture hparam: defaults filled in, values checked by the zoo's rules
    (errors name the model and the hparam)."""
    from frame_level_models import hparams as hparams_lib
    values = {}
    for hparam in mixture_hparams():
        value = hparams.get(hparam.name)
        if value is None:
            value = hparam.default
        values[hparam.name] = (None if value is None else
                               hparams_lib._check_value(hparam, value, model_name))  # noqa
    return values
