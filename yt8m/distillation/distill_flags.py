"""The distillation flags of train.py and their conversion to a DistillConfig
(yt8m.distillation.training_setup). Defaults are read from DistillConfig, so they live in one place.
"""
from absl import flags

import yt8m  # noqa: F401

from yt8m.distillation import training_setup
from frame_level_models.composite.frame_selection import STRATEGIES
from yt8m.distillation.graph import DISTANCES
from yt8m.distillation.losses import FORMS, PREDICTION_DISTANCES
from yt8m.distillation.teacher_student import TRAINING_MODES

_DEFAULT = training_setup.DistillConfig()


def define_flags(flag_values=flags.FLAGS):
    fv = flag_values
    flags.DEFINE_enum("distill_mode", None, list(training_setup.MODES),
                      "Distillation set-up: teacher_student (frame-skipping student, one "
                      "teacher), multi_teacher (weighted soft labels) or graph (learned teacher "
                      "weights). Unset: no distillation.", flag_values=fv)
    flags.DEFINE_list("teacher_dirs", list(_DEFAULT.teacher_dirs),
                      "Teachers: train dirs written by train.py or ensembles exported by "
                      "export_ensemble.py (frozen; parallel training: the teacher's "
                      "initialisation).", flag_values=fv)
    flags.DEFINE_list("teacher_weights", list(_DEFAULT.teacher_weights),
                      "multi_teacher: weight mu_i of each teacher's soft labels (normalised to "
                      "sum 1); default equal.", flag_values=fv)
    flags.DEFINE_string("teacher_cache", _DEFAULT.teacher_cache,
                        "Read the teachers' outputs from this cache (python -m "
                        "yt8m.distillation.teacher_cache) instead of running them; "
                        "--teacher_dirs then picks and orders teachers among the cached ones.",
                        flag_values=fv)
    flags.DEFINE_integer("student_frames", _DEFAULT.student_frames,
                         "The student sees this many frames per video, at training and inference "
                         "(0: every frame). Without --distill_mode: the paper's k-frame "
                         "baselines.", lower_bound=0, flag_values=fv)
    flags.DEFINE_enum("frame_selection", _DEFAULT.frame_selection, list(STRATEGIES),
                      "Which --student_frames frames: uniform (equally spaced), random (training; "
                      "uniform at inference), first, middle, last or first-middle-last.",
                      flag_values=fv)
    flags.DEFINE_list("distill_losses", list(_DEFAULT.losses),
                      "teacher_student: any of rep (representation MSE), pred (teacher vs student "
                      "probabilities), ce (label loss).", flag_values=fv)
    flags.DEFINE_enum("distill_training", _DEFAULT.training, list(TRAINING_MODES),
                      "teacher_student: serial (frozen trained teacher) or parallel (teacher "
                      "trained jointly).", flag_values=fv)
    flags.DEFINE_string("teacher_model", _DEFAULT.teacher_model,
                        "Parallel training without --teacher_dirs: the teacher's zoo model "
                        "(default --model), with the model hparam flags.", flag_values=fv)
    flags.DEFINE_float("distill_temperature", _DEFAULT.temperature,
                       "multi_teacher / graph: softmax or sigmoid temperature T.", flag_values=fv)
    flags.DEFINE_float("distill_lambda", _DEFAULT.lam,
                       "multi_teacher / graph: loss = lambda T^2 L_soft + (1 - lambda) L_hard.",
                       lower_bound=0.0, upper_bound=1.0, flag_values=fv)
    flags.DEFINE_enum("distill_form", _DEFAULT.form, list(FORMS),
                      "multi_teacher / graph: softmax across classes, or per-class sigmoid.",
                      flag_values=fv)
    flags.DEFINE_enum("distill_pred_distance", _DEFAULT.pred_distance, list(PREDICTION_DISTANCES),
                      "teacher_student L_pred: kl, squared_error or binary_kl.", flag_values=fv)
    flags.DEFINE_float("distill_rep_weight", _DEFAULT.rep_weight,
                       "teacher_student: weight of L_rep.", lower_bound=0.0, flag_values=fv)
    flags.DEFINE_float("distill_pred_weight", _DEFAULT.pred_weight,
                       "teacher_student: weight of L_pred.", lower_bound=0.0, flag_values=fv)
    flags.DEFINE_enum("graph_distance", _DEFAULT.graph_distance, list(DISTANCES),
                      "graph: distance on the logits graph's edges (emd: earth mover's).",
                      flag_values=fv)
    flags.DEFINE_float("graph_rep_weight", _DEFAULT.graph_rep_weight,
                       "graph: weight of the representation graph (MMD to pairwise bilinear "
                       "teacher features; needs >= 2 teachers with embeddings). 0: off.",
                       lower_bound=0.0, flag_values=fv)
    flags.DEFINE_bool("graph_learn_edges", _DEFAULT.graph_learn_edges,
                      "graph: learn the edge weights (else uniform).", flag_values=fv)
    flags.DEFINE_float("graph_rep_temperature", _DEFAULT.graph_rep_temperature,
                       "graph: temperature T_k of the representation graph's vertices "
                       "(softmax of the L2-normalised bilinear features).", flag_values=fv)
    flags.DEFINE_float("graph_bandwidth", _DEFAULT.graph_bandwidth,
                       "graph: Gaussian kernel sigma of the MMD.", flag_values=fv)


def _floats(values, flag_name):
    result = []
    for text in values:
        try:
            result.append(float(text))
        except ValueError:
            raise ValueError(f"--{flag_name}: {text!r} is not a number") from None
    return tuple(result)


def config_from_flags(flag_values=flags.FLAGS):
    """The DistillConfig of the flags (checked by training_setup.prepare)."""
    fv = flag_values
    teacher_hparams = None
    if fv.teacher_model:
        import frame_level_models
        from frame_level_models import hparams
        if fv.teacher_model not in frame_level_models.MODEL_NAMES:
            raise ValueError(f"--teacher_model={fv.teacher_model!r} is not a known model; choose "
                             f"one of: {', '.join(frame_level_models.MODEL_NAMES)}")
        teacher_hparams = hparams.hparams_from_flags(fv, model_name=fv.teacher_model)
    return training_setup.DistillConfig(
        mode=fv.distill_mode or "", teacher_dirs=tuple(fv.teacher_dirs),
        teacher_weights=_floats(fv.teacher_weights, "teacher_weights"),
        teacher_cache=fv.teacher_cache, student_frames=fv.student_frames,
        frame_selection=fv.frame_selection, losses=tuple(fv.distill_losses),
        training=fv.distill_training, teacher_model=fv.teacher_model,
        teacher_hparams=teacher_hparams, temperature=fv.distill_temperature,
        lam=fv.distill_lambda, form=fv.distill_form, pred_distance=fv.distill_pred_distance,
        rep_weight=fv.distill_rep_weight, pred_weight=fv.distill_pred_weight,
        graph_distance=fv.graph_distance, graph_rep_weight=fv.graph_rep_weight,
        graph_learn_edges=fv.graph_learn_edges, graph_rep_temperature=fv.graph_rep_temperature,
        graph_bandwidth=fv.graph_bandwidth)
