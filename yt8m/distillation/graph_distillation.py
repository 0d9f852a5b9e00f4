"""Graph distillation (SPEC 5; the graph distillation paper, eqs. 2-10) as a training set-up:

  loss = lambda * T^2 * G_l  +  (1 - lambda) * L_hard  +  rep_weight * G_r

G_l, the logits graph (`graph.LogitsGraph`): teachers are vertices with learnable non-negative edge
weights e_n (a softmax over the edges into the student) and G_l = sum_n e_n d(teacher n at T,
student at T), d the KL divergence or the earth mover's distance (0-1 ground metric). The student is
softened at the same T as the teachers (as in multi-teacher distillation; the paper's eq. 6 leaves
the student at 1), hence the T^2.
G_r, the representation graph (`graph.RepresentationGraph`, needs >= 2 teachers with embeddings):
one vertex per pair of teachers, their embeddings fused by compact bilinear pooling (count sketch +
FFT, signed square root, L2), matched to the student's embedding by a Gaussian-kernel MMD over the
batch, weighted by learnable non-negative edge weights.
L_hard is the trainer's label loss scaled by 1 - lambda (`label_loss_weight`).
With `learn_edges=False` the edge weights stay uniform (the baseline the paper compares with).
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.distillation import graph as graph_lib
from yt8m.distillation import modes
from yt8m.distillation import teacher_sources
from yt8m.distillation import teachers as teachers_lib
from yt8m.distillation.distillation_model import (DistillationModel, require_embeddings,
                                                  stacked_teacher_outputs, student_logits)
from yt8m.core import errors


class GraphDistillationModel(DistillationModel):
    """Trains `student` through a logits graph (and a representation graph) over the teachers.

    Args:
      teacher_source: LiveTeachers / CachedTeachers (frozen teachers).
      num_classes: V. student_embedding_size: size of the student's `embedding` (for G_r).
      temperature, lam: T and lambda. form: "softmax" or "sigmoid". distance: "kl" or "emd".
      rep_weight: weight of G_r (0: no representation graph). rep_temperature: T_k of its
        vertices, D_k = softmax(V_k / T_k). bandwidth: MMD kernel sigma. V_k is L2-normalised,
        so its entries are ~1/sqrt(d): T_k = 1 leaves every D_k nearly uniform and the MMD near 0;
        the defaults (0.02, 0.1) suit embeddings of ~10^3 dimensions.
      learn_edges: train the edge weights (else they stay uniform).
    """

    def __init__(self, student, teacher_source, num_classes, student_embedding_size=None,
                 temperature=3.0, lam=0.5, form="softmax", distance="emd", rep_weight=1.0,
                 rep_temperature=0.02, bandwidth=0.1, learn_edges=True, **kwargs):
        num_teachers = len(teacher_source)
        if num_teachers < 1:
            raise ValueError("graph distillation needs at least one teacher")
        if not 0.0 <= lam <= 1.0:
            raise errors.InvalidInputError(f"--distill_lambda={lam!r} must be in [0, 1]")
        if rep_weight < 0:
            raise errors.InvalidInputError(f"--graph_rep_weight={rep_weight!r} must be >= 0")
        super().__init__(student, teacher_source, label_loss_weight=1.0 - lam, **kwargs)
        self.temperature = float(temperature)
        self.lam = float(lam)
        self.rep_weight = float(rep_weight)
        self.logits_graph = graph_lib.LogitsGraph(
            num_teachers, distance=distance, form=form, teacher_temperatures=temperature,
            student_temperature=temperature, name="logits_graph")
        self.logits_graph.build([tf.TensorShape([None, num_classes])] * (num_teachers + 1))
        self.representation_graph = None
        if self.rep_weight > 0:
            if num_teachers < 2:
                raise ValueError("the representation graph pairs teachers: it needs at least 2 "
                                 "(--teacher_dirs), or set --graph_rep_weight=0")
            require_embeddings(teacher_source.embedding_sizes, "the representation graph",
                               teacher_source.descriptions)
            require_embeddings([student_embedding_size], "the representation graph",
                               [f"the student {student.name}"])
            self.representation_graph = graph_lib.RepresentationGraph(
                num_teachers, vertex_temperatures=rep_temperature, bandwidth=bandwidth,
                name="representation_graph")
            self.representation_graph.build(
                [tf.TensorShape([None, int(size)]) for size in teacher_source.embedding_sizes]
                + [tf.TensorShape([None, int(student_embedding_size)])])
        for graph in self.graphs():
            graph.trainable = bool(learn_edges)

    def graphs(self):
        return [g for g in (self.logits_graph, self.representation_graph) if g is not None]

    def trained_extras(self):
        return self.graphs()

    def distillation_outputs(self, features, student_outputs, training):
        return self.teacher_outputs(features)

    def logits_graph_loss(self, outputs):
        teacher_logits = stacked_teacher_outputs(outputs, len(self.teacher_source), "logits")
        return self.logits_graph(teacher_logits + [student_logits(outputs)])

    def representation_graph_loss(self, outputs):
        features = stacked_teacher_outputs(outputs, len(self.teacher_source), "embedding")
        return self.representation_graph(features + [outputs["embedding"]])

    def distillation_loss(self, labels, outputs, label_weights):
        total = self.lam * self.temperature ** 2 * self.logits_graph_loss(outputs)
        if self.representation_graph is not None:
            total += self.rep_weight * self.representation_graph_loss(outputs)
        return total


def check_distance(distance):
    if distance not in graph_lib.DISTANCES:
        raise errors.InvalidInputError(f"--graph_distance={distance!r}: choose one of "
                                       f"{', '.join(graph_lib.DISTANCES)}")
    return distance



def check(config):
    """--distill_mode=graph: frozen teachers, and the graphs' settings."""
    check_distance(config.graph_distance)
    if config.graph_bandwidth <= 0:
        raise errors.InvalidInputError(f"--graph_bandwidth={config.graph_bandwidth}: must be > 0")
    if config.graph_rep_temperature <= 0:
        raise errors.InvalidInputError(
            f"--graph_rep_temperature={config.graph_rep_temperature}: must be > 0")
    teacher_sources.check_frozen_teachers(config)


def build(student, train_config, config, label_loss):
    del label_loss  # the teachers are frozen
    data = train_config.data
    return GraphDistillationModel(
        student, teacher_sources.teacher_source(config, data), data.num_classes,
        teachers_lib.output_size(student, "embedding"), temperature=config.temperature,
        lam=config.lam, form=config.form, distance=config.graph_distance,
        rep_weight=config.graph_rep_weight, rep_temperature=config.graph_rep_temperature,
        bandwidth=config.graph_bandwidth, learn_edges=config.graph_learn_edges,
        name="graph_distillation")


MODE = modes.Mode("graph", build=build, check=check)
