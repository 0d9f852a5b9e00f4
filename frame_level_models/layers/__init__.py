"""Keras layers of the model zoo, one module per layer family."""
from frame_level_models.layers.common import MaskedBatchNormalization
from frame_level_models.layers.frame_ops import (FrameBatchNorm, FrameL2Normalize, MaskedMean,
                                                 RandomFrameSampler, ReverseFrames,
                                                 ReverseWhitening, SplitFeatures)
from frame_level_models.layers.gating import ContextGating, SEGating
from frame_level_models.layers.logistic import LogisticClassifier
from frame_level_models.layers.moe import MoeClassifier
from frame_level_models.layers.dbof import DbofPooling
from frame_level_models.layers.dense import WideDense
from frame_level_models.layers.lstm import LstmEncoder
from frame_level_models.layers.netfv import NetFV
from frame_level_models.layers.netvlad import LightVLAD, NetVLAD, NetVLAGD
from frame_level_models.layers.gru import GruEncoder
from frame_level_models.layers.soft_dbof import GatedDBoF, SoftDBoF
from frame_level_models.layers.nextvlad import NeXtVLAD
