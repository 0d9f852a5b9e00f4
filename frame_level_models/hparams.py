"""Every hyper-parameter of the model zoo, defined once: name, type, default, help.

Names and defaults follow the reference code (starter `frame_level_models.py` /
`video_level_models.py`, Willow's Gated NetVLAD, linrongc's NeXtVLAD); where a reference default
differs between models (the classifier's L2 penalty, probability gating), the flag default is None
and `MODEL_DEFAULTS` holds each model's value. `define_flags` turns the table into absl flags and
`hparams_from_flags` reads them back as the dict that `frame_level_models.build` takes.

`feature_names` / `feature_sizes` are build arguments too, but their flags belong to the data flags
(`yt8m.training.flags`), so `define_flags` leaves them out.
"""
import dataclasses
import types
from typing import Any, Optional, Tuple

from absl import flags

import yt8m  # noqa: F401
from yt8m.data import records
from yt8m.distillation import mixture_hparams

CLASSIFIER_NAMES = ("LogisticModel", "MoeModel")
POOLING_METHODS = ("max", "average")


@dataclasses.dataclass(frozen=True)
class HParam:
    name: str
    kind: str  # "integer", "float", "bool", "string" or "enum"
    default: Any
    help: str
    choices: Optional[Tuple[str, ...]] = None
    lower_bound: Optional[float] = None  # inclusive; checked for numbers
    upper_bound: Optional[float] = None


def _int(name, default, help_text, lower=1):
    return HParam(name, "integer", default, help_text, lower_bound=lower)


MODEL_HPARAMS = (
    # Classifiers (starter video_level_models, Willow's gated MoE).
    HParam("l2_penalty", "float", None,
           "L2 penalty of the classifier weights, starter meaning penalty/2*sum(w^2). Default per "
           "model: 1e-8 (starter models), 1e-6 (NetVLADModelLF, Willow's moe_l2), 1e-5 "
           "(NeXtVLADModel).", lower_bound=0.0),
    _int("moe_num_mixtures", 2, "Experts per class of the MoE classifier."),
    HParam("moe_prob_gating", "bool", None,
           "Probability context gating on the MoE output (Willow). Default per model: on for "
           "NetVLADModelLF, off elsewhere."),
    HParam("video_level_classifier_model", "enum", "MoeModel",
           "Classifier on top of DbofModel and LstmModel.", choices=CLASSIFIER_NAMES),
    # Frame sampling (training only).
    HParam("sample_random_frames", "bool", False,
           "Frame-level models: at training time, feed `iterations` frames drawn with "
           "replacement from the valid frames. Evaluation and inference always use every valid "
           "frame (deterministic)."),
    _int("iterations", 30, "Frames drawn per video when --sample_random_frames is on."),
    # DBoF (starter).
    _int("dbof_cluster_size", 8192, "DBoF clusters of the first feature stream (half for the "
         "others)."),
    _int("dbof_hidden_size", 1024, "DBoF hidden layer size."),
    HParam("dbof_add_batch_norm", "bool", True,
           "Batch norm on the DBoF input, cluster activations and hidden layer (else biases)."),
    HParam("dbof_pooling_method", "enum", "max", "Pooling of DBoF cluster activations over the "
           "valid frames.", choices=POOLING_METHODS),
    # LSTM (starter).
    _int("lstm_cells", 1024, "LSTM units per layer (one stack per feature stream)."),
    _int("lstm_layers", 2, "Stacked LSTM layers."),
    _int("hlstm_block_frames", 20, "HierarchicalLstmModel: frames per block of the lower LSTM "
         "(the paper: 20 for the teacher, 3-5 for frame-skipping students)."),
    # Gated NetVLAD (Willow, 2017 winner; defaults are the winning configuration).
    _int("netvlad_cluster_size", 256, "NetVLAD clusters of the first stream (half for the "
         "others)."),
    _int("netvlad_hidden_size", 1024, "Hidden layer after the NetVLAD concatenation."),
    HParam("netvlad_relu", "bool", False,
           "BN + ReLU6 on the NetVLAD hidden layer (the winner used a plain affine layer)."),
    HParam("netvlad_add_batch_norm", "bool", True,
           "Batch norm on the input frames and the cluster assignments (else assignment biases)."),
    HParam("gating", "bool", True, "Context gating on the NetVLAD hidden layer."),
    # NeXtVLAD (linrongc; defaults are the paper's configuration).
    _int("nextvlad_cluster_size", 128, "NeXtVLAD clusters of the first stream (half for the "
         "others)."),
    _int("nextvlad_hidden_size", 2048, "Hidden layer after the NeXtVLAD concatenation."),
    _int("groups", 8, "NeXtVLAD groups of the first stream (half for the others)."),
    _int("expansion", 2, "NeXtVLAD expansion factor lambda."),
    HParam("drop_rate", "float", 0.5, "Dropout before the NeXtVLAD hidden layer.",
           lower_bound=0.0, upper_bound=0.999),
    _int("gating_reduction", 8, "SE gating reduction r of the NeXtVLAD model."),
    HParam("pca_eigenvalues_file", "string", "",
           "NeXtVLAD reverse whitening: a .npy of the rgb PCA eigenvalues (one per rgb "
           "dimension); rgb frames are multiplied by sqrt(eigenvalue). Empty: off."),
) + tuple(HParam(**row) for row in mixture_hparams.MIXTURE_HPARAM_ROWS)

PRUNING_HPARAMS = (
    HParam("pruning_target_sparsity", "float", 0.0,
           "Magnitude pruning: final fraction of zeros in the large weight matrices (0: off).",
           lower_bound=0.0, upper_bound=0.999),
    _int("pruning_begin_step", 0, "Step at which pruning starts.", lower=0),
    _int("pruning_end_step", 10000, "Step at which the target sparsity is reached."),
    _int("pruning_frequency", 100, "Masks are updated every this many steps."),
)

INPUT_HPARAMS = ("feature_names", "feature_sizes")

# Model-specific defaults for the hparams whose reference default differs between models.
MODEL_DEFAULTS = {
    "NetVLADModelLF": {"l2_penalty": 1e-6, "moe_prob_gating": True},
    "NeXtVLADModel": {"l2_penalty": 1e-5},
}
_GLOBAL_DEFAULTS = {"l2_penalty": 1e-8, "moe_prob_gating": False}

_BY_NAME = {hparam.name: hparam for hparam in MODEL_HPARAMS}
_PRUNING_BY_NAME = {hparam.name: hparam for hparam in PRUNING_HPARAMS}
ALL_NAMES = tuple(sorted(set(_BY_NAME) | set(INPUT_HPARAMS)))


def _define(hparam, flag_values):
    kwargs = {"flag_values": flag_values}
    if hparam.kind == "enum":
        flags.DEFINE_enum(hparam.name, hparam.default, list(hparam.choices), hparam.help,
                          **kwargs)
    elif hparam.kind == "bool":
        flags.DEFINE_bool(hparam.name, hparam.default, hparam.help, **kwargs)
    elif hparam.kind == "string":
        flags.DEFINE_string(hparam.name, hparam.default, hparam.help, **kwargs)
    else:
        define = flags.DEFINE_integer if hparam.kind == "integer" else flags.DEFINE_float
        define(hparam.name, hparam.default, hparam.help, lower_bound=hparam.lower_bound,
               upper_bound=hparam.upper_bound, **kwargs)


def define_flag(hparam, flag_values=flags.FLAGS):
    """Defines the absl flag of one HParam (also used for hparams declared outside this table)."""
    _define(hparam, flag_values)


def define_flags(flag_values=flags.FLAGS, pruning=True):
    """Defines one absl flag per model hyper-parameter (and the pruning flags)."""
    for hparam in MODEL_HPARAMS + (PRUNING_HPARAMS if pruning else ()):
        _define(hparam, flag_values)


def hparams_from_flags(flag_values=flags.FLAGS, model_name=None):
    """The model hyper-parameter flags as a dict for `build`.

    With `model_name`, only the hparams that model uses (what `model_flags.json` should record).
    """
    names = [hparam.name for hparam in MODEL_HPARAMS]
    if model_name is not None:
        from frame_level_models import registry  # the registry imports this module
        used = set(registry.hparam_names(model_name))
        names = [name for name in names if name in used]
    return {name: flag_values[name].value for name in names}


def pruning_from_flags(flag_values=flags.FLAGS):
    """The pruning flags as keyword arguments of `frame_level_models.pruning.prune`
    (None when --pruning_target_sparsity is 0)."""
    values = {hparam.name: flag_values[hparam.name].value for hparam in PRUNING_HPARAMS}
    if not values["pruning_target_sparsity"]:
        return None
    return {"target_sparsity": values["pruning_target_sparsity"],
            "begin_step": values["pruning_begin_step"],
            "end_step": values["pruning_end_step"],
            "frequency": values["pruning_frequency"]}


def _check_value(hparam, value, model_name):
    where = f"{model_name}: hparam {hparam.name}={value!r}"
    if hparam.kind == "bool":
        if not isinstance(value, (bool,)):
            raise TypeError(f"{where} must be true or false")
        return value
    if hparam.kind in ("string", "enum"):
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string")
        if hparam.choices and value not in hparam.choices:
            raise ValueError(f"{where} is not one of {', '.join(hparam.choices)}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where} must be a number")
    if hparam.kind == "integer":
        if int(value) != value:
            raise TypeError(f"{where} must be an integer")
        value = int(value)
    else:
        value = float(value)
    if hparam.lower_bound is not None and value < hparam.lower_bound:
        raise ValueError(f"{where} must be >= {hparam.lower_bound}")
    if hparam.upper_bound is not None and value > hparam.upper_bound:
        raise ValueError(f"{where} must be <= {hparam.upper_bound}")
    return value


def check_value(hparam, value, model_name):
    """Checks one value against its HParam (type, choices, bounds); errors name model and hparam."""
    return _check_value(hparam, value, model_name)


def _split_csv(value):
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)


def resolve_features(model_name, frame_level, feature_names=None, feature_sizes=None):
    """(names, sizes) for a model, defaulting to rgb/audio (frame) or mean_rgb/mean_audio (video)
    with sizes 1024/128; strings such as "rgb,audio" are accepted (they are what the flags hold)."""
    default_names = records.DEFAULT_FEATURE_NAMES if frame_level else records.VIDEO_FEATURE_NAMES
    names = tuple(_split_csv(feature_names)) if feature_names is not None else default_names
    if feature_sizes is None:
        if len(names) != len(records.DEFAULT_FEATURE_SIZES):
            raise ValueError(f"{model_name}: feature_names={','.join(names)} needs feature_sizes "
                             "(the default sizes 1024,128 fit two features)")
        sizes = records.DEFAULT_FEATURE_SIZES
    else:
        try:
            sizes = tuple(int(size) for size in _split_csv(feature_sizes))
        except ValueError:
            raise ValueError(f"{model_name}: feature_sizes={feature_sizes!r} must be integers") \
                from None
    if not names or len(names) != len(sizes):
        raise ValueError(f"{model_name}: feature_names={names} and feature_sizes={sizes} need one "
                         "size per name")
    if any(size <= 0 for size in sizes):
        raise ValueError(f"{model_name}: feature_sizes={sizes} must be positive")
    if len(set(names)) != len(names) or "num_frames" in names:
        raise ValueError(f"{model_name}: feature_names={names} must be distinct and not "
                         "'num_frames'")
    video_names = [name for name in names if name.startswith("mean_")]
    if frame_level and video_names:
        raise ValueError(f"{model_name} is a frame-level model but feature_names has video-level "
                         f"features {video_names}; use rgb,audio (or a video-level model)")
    if not frame_level and len(video_names) != len(names):
        raise ValueError(f"{model_name} is a video-level model; feature_names={','.join(names)} "
                         "must be video-level features (mean_rgb,mean_audio)")
    return names, sizes


def resolve(model_name, used_names, hparams):
    """Checks `hparams` and fills in defaults: a namespace of every hparam the model uses.

    Unknown names raise an error listing the known ones; names known but not used by this model are
    accepted and ignored (callers may pass every flag).
    """
    unknown = sorted(set(hparams) - set(ALL_NAMES))
    if unknown:
        raise ValueError(f"{model_name}: unknown hparams {', '.join(unknown)}; known hparams: "
                         f"{', '.join(ALL_NAMES)}")
    values = {}
    model_defaults = MODEL_DEFAULTS.get(model_name, {})
    for name in used_names:
        hparam = _BY_NAME[name]
        value = hparams.get(name)
        if value is None:
            value = hparam.default
        if value is None:
            value = model_defaults.get(name, _GLOBAL_DEFAULTS.get(name))
        values[name] = _check_value(hparam, value, model_name)
    return types.SimpleNamespace(**values)


def default_value(model_name, name):
    """The value a model uses for `name` when the caller leaves it out (for docs and tests)."""
    value = _BY_NAME[name].default
    if value is None:
        value = MODEL_DEFAULTS.get(model_name, {}).get(name, _GLOBAL_DEFAULTS.get(name))
    return value
