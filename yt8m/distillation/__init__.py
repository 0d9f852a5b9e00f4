"""Distillation: the training-time wrappers that teach a zoo model from teachers (SPEC 5):
teacher-student (frame-skipping students), multi-teacher and graph distillation. Mixtures and MOD
trees (online distillation) and the frame-skipping student are models of the zoo:
`frame_level_models.composite`.

The building blocks re-exported here are pure functions and layers (no training loop): the
distillation losses, compact bilinear pooling and the logits / representation graphs.
"""
from yt8m.distillation.bilinear import CompactBilinearPooling
from yt8m.distillation.graph import LogitsGraph, RepresentationGraph
from yt8m.distillation.losses import (gaussian_mmd, hard_label_loss, multi_teacher_loss,
                                      multi_teacher_soft_labels, prediction_loss,
                                      representation_loss, soft_label_loss)
