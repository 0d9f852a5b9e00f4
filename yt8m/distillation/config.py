"""The distillation settings of train.py (the --distill_* / --teacher_* / --graph_* flags): one
record whose fields declare their flags (`yt8m.core.options`); training_setup checks and applies
them."""
import dataclasses
from typing import Optional

import yt8m  # noqa: F401
from yt8m.core.options import option
from frame_level_models.composite.frame_selection import STRATEGIES
from yt8m.distillation.graph import DISTANCES
from yt8m.distillation.losses import FORMS, PREDICTION_DISTANCES

LOSS_NAMES = ("rep", "pred", "ce")  # teacher_student's loss terms
TRAINING_MODES = ("serial", "parallel")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Distillation settings; the field names are the train.py flags without their prefixes."""
    mode: str = option(
        "", "Distillation set-up: teacher_student (frame-skipping student, one teacher), "
        "multi_teacher (weighted soft labels) or graph (learned teacher weights). Unset: no "
        "distillation. Any mode registered in yt8m.distillation.modes is accepted (checked when "
        "training starts).", flag="distill_mode")
    teacher_dirs: tuple[str, ...] = option(
        (), "Teachers: train dirs written by train.py or ensembles exported by "
        "export_ensemble.py (frozen; parallel training: the teacher's initialisation).")
    teacher_weights: tuple[float, ...] = option(
        (), "multi_teacher: weight mu_i of each teacher's soft labels (normalised to sum 1); "
        "default equal.")
    teacher_cache: str = option(
        "", "Read the teachers' outputs from this cache (python -m "
        "yt8m.distillation.teacher_cache) instead of running them; --teacher_dirs then picks "
        "and orders teachers among the cached ones.")
    student_frames: int = option(
        0, "The student sees this many frames per video, at training and inference (0: every "
        "frame). Without --distill_mode: the paper's k-frame baselines.", lower=0)
    frame_selection: str = option(
        "uniform", "Which --student_frames frames: uniform (equally spaced), random (training; "
        "uniform at inference), first, middle, last or first-middle-last.", choices=STRATEGIES)
    losses: tuple[str, ...] = option(
        LOSS_NAMES, "teacher_student: any of rep (representation MSE), pred (teacher vs student "
        "probabilities), ce (label loss).", flag="distill_losses")
    training: str = option(
        "serial", "teacher_student: serial (frozen trained teacher) or parallel (teacher "
        "trained jointly).", choices=TRAINING_MODES, flag="distill_training")
    teacher_model: str = option(
        "", "Parallel training without --teacher_dirs: the teacher's zoo model (default "
        "--model), with the model hparam flags.")
    teacher_hparams: Optional[dict] = None  # the teacher's hparams (from the model hparam flags)
    temperature: float = option(
        3.0, "multi_teacher / graph: softmax or sigmoid temperature T.",
        flag="distill_temperature")
    lam: float = option(
        0.5, "multi_teacher / graph: loss = lambda T^2 L_soft + (1 - lambda) L_hard.",
        lower=0.0, upper=1.0, flag="distill_lambda")
    form: str = option(
        "softmax", "multi_teacher / graph: softmax across classes, or per-class sigmoid.",
        choices=FORMS, flag="distill_form")
    pred_distance: str = option(
        "kl", "teacher_student L_pred: kl, squared_error or binary_kl.",
        choices=PREDICTION_DISTANCES, flag="distill_pred_distance")
    rep_weight: float = option(1.0, "teacher_student: weight of L_rep.", lower=0.0,
                               flag="distill_rep_weight")
    pred_weight: float = option(1.0, "teacher_student: weight of L_pred.", lower=0.0,
                                flag="distill_pred_weight")
    graph_distance: str = option(
        "emd", "graph: distance on the logits graph's edges (emd: earth mover's).",
        choices=DISTANCES)
    graph_rep_weight: float = option(
        1.0, "graph: weight of the representation graph (MMD to pairwise bilinear teacher "
        "features; needs >= 2 teachers with embeddings). 0: off.", lower=0.0)
    graph_learn_edges: bool = option(True, "graph: learn the edge weights (else uniform).")
    graph_rep_temperature: float = option(
        0.02, "graph: temperature T_k of the representation graph's vertices (softmax of the "
        "L2-normalised bilinear features).")
    graph_bandwidth: float = option(0.1, "graph: Gaussian kernel sigma of the MMD.")
