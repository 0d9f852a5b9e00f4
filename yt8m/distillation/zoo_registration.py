"""Registers the mixture models in the zoo (`frame_level_models/__init__.py` calls `register`).

Imported while frame_level_models itself is being imported, so it loads nothing of the zoo at
module level; the factory imports the builders (mixture_models) when a mixture is first built.
"""
import yt8m  # noqa: F401

from yt8m.distillation import mixture_hparams

GENERIC_MIXTURE = "MixtureModel"
MIX_NEXTVLAD = "MixNeXtVLADModel"
MOD_NEXTVLAD = "MODNeXtVLADModel"
NEXTVLAD = "NeXtVLADModel"
MIXTURE_MODELS = (GENERIC_MIXTURE, MIX_NEXTVLAD, MOD_NEXTVLAD)
DESCRIPTIONS = {
    GENERIC_MIXTURE: "Gated mixture (or MOD tree, --mod_tree) of any zoo model "
                     "(--mixture_base_model) with online distillation.",
    MIX_NEXTVLAD: "Gated mixture of --mix_number NeXtVLAD models with online distillation.",
    MOD_NEXTVLAD: "MOD tree (--mod_tree, default 4x3) of NeXtVLAD models with online "
                  "distillation; top-level sub-trees placed on their own devices.",
}


def declared_hparams(model_name, registry):
    """The hparams a mixture model uses (what its model_flags.json records): the mixture hparams
    plus those of its leaf model (every zoo hparam for the generic MixtureModel)."""
    if model_name == GENERIC_MIXTURE:
        leaf = tuple(hparam.name for hparam in registry.hparams_lib.MODEL_HPARAMS)
    else:
        leaf = tuple(registry.hparam_names(NEXTVLAD))
    own = mixture_hparams.MIXTURE_HPARAM_NAMES
    return own + tuple(name for name in leaf if name not in own)


def build_mixture(name, num_classes, **hparams):
    from yt8m.distillation import mixture_models  # builds on the zoo: imported at first use
    return mixture_models.build(name, num_classes, **hparams)


def register(registry):
    """Adds MixtureModel, MixNeXtVLADModel and MODNeXtVLADModel to `registry` (frame level)."""
    for name in MIXTURE_MODELS:
        registry.register_composite(name, frame_level=True,
                                    hparams=declared_hparams(name, registry),
                                    description=DESCRIPTIONS[name])(build_mixture)
