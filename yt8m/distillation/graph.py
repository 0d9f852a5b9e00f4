"""Graph distillation (Zhang & Peng, SPEC 5): learnable, non-negative edge weights decide how much
each teacher's knowledge flows to the student.

- `LogitsGraph`: vertices are the teachers plus the student; edge n -> m carries the distance
  between vertex n's softened class distribution (the source, a target for m) and vertex m's.
- `RepresentationGraph`: vertices are pairs of teachers whose features are fused by compact bilinear
  pooling; the student's features are matched to each vertex with a Gaussian-kernel MMD.

Edge weights are softmax-normalised parameters (over the edges that enter one vertex), so they are
non-negative and sum to 1: minimising the loss can shift weight between teachers but cannot switch
every edge off. The parameters start at 0 (equal weights).
"""
import itertools

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

from yt8m import losses as base_losses
from yt8m.distillation import losses
from yt8m.distillation.bilinear import CompactBilinearPooling

DISTANCES = ("kl", "emd")


def _as_list(values, count, what):
    if values is None:
        return [1.0] * count
    if isinstance(values, (int, float)):
        return [float(values)] * count
    values = [float(v) for v in values]
    if len(values) != count:
        raise ValueError(f"got {len(values)} {what} for {count} vertices")
    return values


def vertex_distance(source_logits, source_temperature, target_logits, target_temperature,
                    distance="kl", form="softmax"):
    """[B]: distance from the source vertex's softened distribution to the target's.

    kl: KL(source || target); emd: earth mover's distance with the 0-1 ground metric between
    classes (classes are unordered, so moving probability mass between any two classes costs 1),
    which is the total variation 0.5 * sum_c |p_c - q_c| for softmax distributions and, class by
    class, |p_c - q_c| summed over classes for the per-class Bernoulli (sigmoid) form.
    """
    source = source_logits / source_temperature
    target = target_logits / target_temperature
    if distance not in DISTANCES:
        raise ValueError(f"Unknown graph distance {distance!r}; choose one of: "
                         f"{', '.join(DISTANCES)}")
    if form == "softmax":
        if distance == "kl":
            source_log_p = tf.nn.log_softmax(source, axis=-1)
            return tf.reduce_sum(tf.exp(source_log_p)
                                 * (source_log_p - tf.nn.log_softmax(target, axis=-1)), axis=-1)
        return losses.total_variation(tf.nn.softmax(source, axis=-1),
                                      tf.nn.softmax(target, axis=-1))
    if form == "sigmoid":
        if distance == "kl":
            return base_losses.binary_kl_per_example(source, target, 1.0)
        return tf.reduce_sum(tf.abs(tf.sigmoid(source) - tf.sigmoid(target)), axis=-1)
    raise ValueError(f"Unknown distribution form {form!r}; choose one of: "
                     f"{', '.join(losses.FORMS)}")


class LogitsGraph(keras.layers.Layer):
    """Logits graph: vertices 0..M-1 are the teachers, vertex M the student.

    call([teacher_logits_0, ..., teacher_logits_{M-1}, student_logits]) returns the imitation loss
      mean over the batch of  sum over edges (n -> m)  e[n, m] * d(vertex n, vertex m),
    with sources n the teachers (their side carries no gradient: they are the targets of the edge).
    Edges enter the student from every teacher; with `teacher_edges=True` they also enter every
    teacher from the other teachers (parallel training, where teachers learn from each other).

    Args:
      num_teachers: M.
      distance: "kl" or "emd" (see `vertex_distance`).
      form: "softmax" (distribution across classes) or "sigmoid" (per-class Bernoulli).
      teacher_temperatures: T_k per teacher (a number or a list of M), softening its logits.
      student_temperature: the student's temperature (1 in the paper).
      edge_temperature: e[:, m] = softmax over the sources of edge_logits[:, m] / edge_temperature.
      teacher_edges: also learn and use teacher -> teacher edges.
    """

    def __init__(self, num_teachers, distance="kl", form="softmax", teacher_temperatures=None,
                 student_temperature=1.0, edge_temperature=1.0, teacher_edges=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_teachers, int) or num_teachers < 1:
            raise ValueError(f"LogitsGraph needs at least one teacher, got {num_teachers!r}")
        if distance not in DISTANCES:
            raise ValueError(f"Unknown graph distance {distance!r}; choose one of: "
                             f"{', '.join(DISTANCES)}")
        if form not in losses.FORMS:
            raise ValueError(f"Unknown distribution form {form!r}; choose one of: "
                             f"{', '.join(losses.FORMS)}")
        self.num_teachers = num_teachers
        self.distance = distance
        self.form = form
        self.teacher_temperatures = _as_list(teacher_temperatures, num_teachers,
                                             "teacher temperatures")
        self.student_temperature = float(student_temperature)
        self.edge_temperature = float(edge_temperature)
        self.teacher_edges = teacher_edges
        for temperature in self.teacher_temperatures + [self.student_temperature,
                                                        self.edge_temperature]:
            if not temperature > 0:
                raise ValueError(f"LogitsGraph temperatures must be > 0, got {temperature}")

    def build(self, input_shape):
        if len(input_shape) != self.num_teachers + 1:
            raise ValueError(f"LogitsGraph with {self.num_teachers} teachers takes "
                             f"{self.num_teachers + 1} inputs (teachers' logits, then the "
                             f"student's), got {len(input_shape)}")
        # edge_logits[n, m]: source teacher n -> target vertex m (column M is the student).
        self.edge_logits = self.add_weight(
            name="edge_logits", shape=(self.num_teachers, self.num_teachers + 1),
            initializer="zeros", trainable=True)
        super().build(input_shape)

    def edge_weights(self):
        """[M, M+1] non-negative weights; each used column sums to 1, e[n, n] = 0 (no self-loop)."""
        m = self.num_teachers
        self_loop = tf.concat([tf.eye(m, dtype=tf.bool), tf.zeros([m, 1], tf.bool)], axis=1)
        scaled = tf.where(self_loop, tf.constant(-1e9, self.edge_logits.dtype),
                          self.edge_logits / self.edge_temperature)
        weights = tf.nn.softmax(scaled, axis=0)
        # A single teacher has no teacher -> teacher edge: its column is all self-loop.
        return tf.where(self_loop, tf.zeros_like(weights), weights)

    def teacher_weights(self):
        """[M]: the weights of the edges teacher -> student."""
        return self.edge_weights()[:, self.num_teachers]

    def soft_target(self, teacher_logits):
        """[B, V]: the teachers' softened distributions weighted by `teacher_weights()`."""
        soften = tf.nn.softmax if self.form == "softmax" else tf.sigmoid
        weights = self.teacher_weights()
        return tf.add_n([weights[n] * soften(tf.stop_gradient(z) / t) for n, (z, t)
                         in enumerate(zip(teacher_logits, self.teacher_temperatures))])

    def call(self, inputs):
        *teacher_logits, student_logits = inputs
        weights = self.edge_weights()
        temperatures = self.teacher_temperatures + [self.student_temperature]
        vertices = list(teacher_logits) + [student_logits]
        targets = range(self.num_teachers + 1) if self.teacher_edges else [self.num_teachers]
        terms = []
        for m in targets:
            for n in range(self.num_teachers):
                if n == m:
                    continue
                d = vertex_distance(tf.stop_gradient(vertices[n]), temperatures[n],
                                    vertices[m], temperatures[m], self.distance, self.form)
                terms.append(weights[n, m] * d)
        return tf.reduce_mean(tf.add_n(terms))

    def get_config(self):
        config = super().get_config()
        config.update(num_teachers=self.num_teachers, distance=self.distance, form=self.form,
                      teacher_temperatures=self.teacher_temperatures,
                      student_temperature=self.student_temperature,
                      edge_temperature=self.edge_temperature, teacher_edges=self.teacher_edges)
        return config


class RepresentationGraph(keras.layers.Layer):
    """Representation graph: one vertex per pair of teachers (m < n), V_k = compact bilinear
    pooling of their features (signed sqrt, L2 norm), softened as D_k = softmax(V_k / T_k).

    call([teacher_features_0, ..., teacher_features_{M-1}, student_features]) returns
      sum_k w_k * MMD(softmax(student_features), D_k),  w = softmax(edge_logits / edge_temperature),
    where MMD compares the batch's rows as two samples (Gaussian kernel, `gaussian_mmd`). The sketch
    size is the student's feature size, so both samples live in the same space. Teacher features
    carry no gradient.

    Args:
      num_teachers: M >= 2 (C(M, 2) vertices).
      vertex_temperatures: T_k (a number or one per vertex, in itertools.combinations order).
      edge_temperature, bandwidth: the softmax temperature of the edge weights; the kernel sigma.
      seed: vertex k's bilinear pooling uses seed + k.
    """

    def __init__(self, num_teachers, vertex_temperatures=None, edge_temperature=1.0,
                 bandwidth=1.0, seed=0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_teachers, int) or num_teachers < 2:
            raise ValueError(f"RepresentationGraph pairs teachers: it needs at least 2, got "
                             f"{num_teachers!r}")
        self.num_teachers = num_teachers
        self.pairs = list(itertools.combinations(range(num_teachers), 2))
        self.vertex_temperatures = _as_list(vertex_temperatures, len(self.pairs),
                                            "vertex temperatures")
        self.edge_temperature = float(edge_temperature)
        self.bandwidth = float(bandwidth)
        self.seed = int(seed)

    def build(self, input_shape):
        if len(input_shape) != self.num_teachers + 1:
            raise ValueError(f"RepresentationGraph with {self.num_teachers} teachers takes "
                             f"{self.num_teachers + 1} inputs (teachers' features, then the "
                             f"student's), got {len(input_shape)}")
        sketch_size = int(tf.TensorShape(input_shape[-1])[-1])
        self.poolings = [CompactBilinearPooling(sketch_size, seed=self.seed + k,
                                                name=f"bilinear_{m}_{n}")
                         for k, (m, n) in enumerate(self.pairs)]
        for pooling, (m, n) in zip(self.poolings, self.pairs):
            pooling.build([input_shape[m], input_shape[n]])
        self.edge_logits = self.add_weight(name="edge_logits", shape=(len(self.pairs),),
                                           initializer="zeros", trainable=True)
        super().build(input_shape)

    def edge_weights(self):
        """[C(M, 2)] non-negative weights summing to 1."""
        return tf.nn.softmax(self.edge_logits / self.edge_temperature)

    def vertex_losses(self, inputs):
        """[C(M, 2)]: MMD between the softened student features and each vertex."""
        *teacher_features, student_features = inputs
        student = tf.nn.softmax(tf.cast(student_features, tf.float32), axis=-1)
        result = []
        for pooling, (m, n), temperature in zip(self.poolings, self.pairs,
                                                self.vertex_temperatures):
            vertex = pooling([tf.stop_gradient(teacher_features[m]),
                              tf.stop_gradient(teacher_features[n])])
            soft = tf.nn.softmax(vertex / temperature, axis=-1)
            result.append(losses.gaussian_mmd(student, soft, self.bandwidth))
        return tf.stack(result)

    def call(self, inputs):
        return tf.reduce_sum(self.edge_weights() * self.vertex_losses(inputs))

    def get_config(self):
        config = super().get_config()
        config.update(num_teachers=self.num_teachers,
                      vertex_temperatures=self.vertex_temperatures,
                      edge_temperature=self.edge_temperature, bandwidth=self.bandwidth,
                      seed=self.seed)
        return config
