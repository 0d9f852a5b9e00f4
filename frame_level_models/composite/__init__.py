"""Composite models: models made of other models of the zoo, registered like every other model.

- mixture.py: `MixtureModel`, a gated mixture of models trained with online distillation;
- mod_tree.py: MOD trees (mixtures of mixtures) from a shape such as 4x3;
- mixture_models.py: the registered MixtureModel, MixNeXtVLADModel and MODNeXtVLADModel;
- frame_selection.py / frame_skipping.py: `FrameSkippingModel`, a zoo model that sees k frames;
- placement.py: which device each top-level sub-tree of a MOD tree lives on.

`frame_level_models/__init__.py` imports the registering modules.
"""
