"""Distillation: mixtures / MOD online distillation, teacher-student frame skipping, multi-teacher
and graph distillation (SPEC 4 and 5).

The building blocks re-exported here are pure functions and layers (no training loop):
frame selection for frame-skipping students, the distillation losses, compact bilinear pooling and
the logits / representation graphs.
"""
from yt8m.distillation.bilinear import CompactBilinearPooling
from yt8m.distillation.frame_selection import STRATEGIES as FRAME_SELECTION_STRATEGIES
from yt8m.distillation.frame_selection import frame_indices, select_frames
from yt8m.distillation.graph import LogitsGraph, RepresentationGraph
from yt8m.distillation.losses import (binary_kl, gaussian_mmd, hard_label_loss, mixture_kl,
                                      multi_teacher_loss, multi_teacher_soft_labels,
                                      prediction_loss, representation_loss, soft_label_loss,
                                      softmax_kl)
