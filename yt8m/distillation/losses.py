"""Distillation losses (SPEC 5): teacher-student matching, multi-teacher soft labels and MMD.
TensorFlow ops; every loss is a scalar averaged over the batch (per-example terms are summed over
classes / feature dimensions, as the label losses are). The KL divergences between logits that the
mixtures share (softmax_kl, binary_kl, mixture_kl) live in `yt8m.losses`.

Two forms of "class distribution" are offered for the multi-label task:
- softmax: one distribution across the V classes, softmax(z / T) (Hinton et al.; the papers' form);
- sigmoid: V independent Bernoulli distributions sigmoid(z_c / T), compared class by class with the
  binary KL (the per-class form that fits sigmoid multi-label models).
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m import losses as base_losses

FORMS = ("softmax", "sigmoid")
PREDICTION_DISTANCES = ("kl", "squared_error", "binary_kl")
# Clip for probabilities given as such (the logits forms need none).
_EPSILON = 1e-7


def _check_form(form):
    if form not in FORMS:
        raise ValueError(f"Unknown distribution form {form!r}; choose one of: {', '.join(FORMS)}")


# ----------------------------------------------------------------------------- teacher-student

def representation_loss(teacher_representation, student_representation,
                        stop_teacher_gradient=True):
    """L_rep = mean over the batch of ||E_T - E_S||^2 (squared L2 over the representation).

    The teacher side is a target: its gradient is stopped unless asked otherwise (in the paper's
    parallel training L_rep is back-propagated through the student only).
    """
    teacher = tf.convert_to_tensor(teacher_representation)
    if stop_teacher_gradient:
        teacher = tf.stop_gradient(teacher)
    student = tf.cast(student_representation, teacher.dtype)
    return tf.reduce_mean(tf.reduce_sum(tf.square(teacher - student), axis=-1))


def _binary_kl_from_probabilities(p, q):
    p = tf.clip_by_value(p, _EPSILON, 1.0 - _EPSILON)
    q = tf.clip_by_value(q, _EPSILON, 1.0 - _EPSILON)
    return p * (tf.math.log(p) - tf.math.log(q)) + (1 - p) * (tf.math.log(1 - p)
                                                              - tf.math.log(1 - q))


def prediction_loss(teacher_predictions, student_predictions, distance="kl",
                    stop_teacher_gradient=True):
    """L_pred between teacher and student class probabilities [B, V], mean over the batch.

    distance:
      "kl": KL(p_T || p_S) between the class distributions, each row L1-normalised first (so
        sigmoid outputs become a distribution across classes);
      "squared_error": sum_c (p_T,c - p_S,c)^2;
      "binary_kl": sum_c KL(Bernoulli(p_T,c) || Bernoulli(p_S,c)) (multi-label form).
    Probabilities are clipped to [1e-7, 1 - 1e-7] before logs. With logits and a temperature use
    `softmax_kl` / `binary_kl` instead.
    """
    if distance not in PREDICTION_DISTANCES:
        raise ValueError(f"Unknown prediction distance {distance!r}; choose one of: "
                         f"{', '.join(PREDICTION_DISTANCES)}")
    teacher = tf.convert_to_tensor(teacher_predictions)
    if stop_teacher_gradient:
        teacher = tf.stop_gradient(teacher)
    student = tf.cast(student_predictions, teacher.dtype)
    if distance == "squared_error":
        per_class = tf.square(teacher - student)
    elif distance == "binary_kl":
        per_class = _binary_kl_from_probabilities(teacher, student)
    else:
        p = tf.maximum(teacher, _EPSILON)
        q = tf.maximum(student, _EPSILON)
        p = p / tf.reduce_sum(p, axis=-1, keepdims=True)
        q = q / tf.reduce_sum(q, axis=-1, keepdims=True)
        per_class = p * (tf.math.log(p) - tf.math.log(q))
    return tf.reduce_mean(tf.reduce_sum(per_class, axis=-1))


# ----------------------------------------------------------------------------- multi-teacher

def _teacher_weights(num_teachers, weights):
    if weights is None:
        weights = [1.0] * num_teachers
    weights = [float(w) for w in weights]
    if len(weights) != num_teachers:
        raise ValueError(f"got {len(weights)} teacher weights for {num_teachers} teachers")
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"teacher weights must be >= 0 with a positive sum, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def multi_teacher_soft_labels(teacher_logits_list, temperature, weights=None, form="softmax"):
    """q = sum_i mu_i * q_i / sum_i mu_i, q_i the teacher's softened distribution [B, V].

    form "softmax": q_i = softmax(z_i / T) (a distribution across classes);
    form "sigmoid": q_i = sigmoid(z_i / T) (per-class probabilities).
    weights: mu_i (>= 0, default equal). The soft labels carry no gradient to the teachers.
    """
    _check_form(form)
    base_losses.check_temperature(temperature)
    if not teacher_logits_list:
        raise ValueError("multi-teacher soft labels need at least one teacher")
    mus = _teacher_weights(len(teacher_logits_list), weights)
    soften = tf.nn.softmax if form == "softmax" else tf.sigmoid
    soft = tf.add_n([mu * soften(tf.convert_to_tensor(z) / temperature)
                     for mu, z in zip(mus, teacher_logits_list)])
    return tf.stop_gradient(soft)


def soft_label_loss(soft_labels, student_logits, temperature, form="softmax"):
    """L_soft: mean over the batch of KL(q || student's softened distribution).

    softmax: sum_c q_c (log q_c - log softmax(s/T)_c). This is the paper's cross-entropy
      -sum_c q_c log softmax(s/T)_c minus the teacher entropy, a constant for the student: same
      gradients, and 0 when the student matches.
    sigmoid: sum_c binary KL(q_c || sigmoid(s_c/T)).
    """
    _check_form(form)
    base_losses.check_temperature(temperature)
    scaled = student_logits / temperature
    q = tf.cast(soft_labels, scaled.dtype)
    if form == "softmax":
        q_log_q = tf.where(q > 0, q * tf.math.log(tf.maximum(q, _EPSILON)), tf.zeros_like(q))
        per_class = q_log_q - q * tf.nn.log_softmax(scaled, axis=-1)
    else:
        q_clipped = tf.clip_by_value(q, _EPSILON, 1.0 - _EPSILON)
        entropy_terms = (q * tf.math.log(q_clipped) + (1 - q) * tf.math.log(1 - q_clipped))
        per_class = entropy_terms + q * tf.nn.softplus(-scaled) + (1 - q) * tf.nn.softplus(scaled)
    return tf.reduce_mean(tf.reduce_sum(per_class, axis=-1))


def hard_label_loss(student_logits, labels, form="softmax", label_weights=None):
    """L_hard on the true labels: the label losses from logits (the papers' form).

    softmax: `LogitsSoftmaxLoss` (cross-entropy with the L1-normalised multi-hot labels);
    sigmoid: `LogitsCrossEntropyLoss` (per-class binary cross-entropy summed over classes).
    """
    _check_form(form)
    loss = (base_losses.LogitsSoftmaxLoss() if form == "softmax"
            else base_losses.LogitsCrossEntropyLoss())
    return loss.calculate_loss(None, labels, label_weights=label_weights, logits=student_logits)


def multi_teacher_loss(student_logits, teacher_logits_list, labels, temperature, lam,
                       weights=None, form="softmax", label_weights=None):
    """lambda * T^2 * L_soft + (1 - lambda) * L_hard (multi-teacher paper, eq. 9).

    Returns a dict of scalars: loss, soft_loss (L_soft before scaling), hard_loss.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam!r}")
    soft_labels = multi_teacher_soft_labels(teacher_logits_list, temperature, weights, form)
    soft = soft_label_loss(soft_labels, student_logits, temperature, form)
    hard = hard_label_loss(student_logits, labels, form, label_weights)
    total = lam * temperature ** 2 * soft + (1.0 - lam) * hard
    return {"loss": total, "soft_loss": soft, "hard_loss": hard}


# ----------------------------------------------------------------------------- distances

def total_variation(p, q):
    """[B]: earth mover's distance between class distributions p and q [B, V] under the 0-1 ground
    metric (moving mass between any two different classes costs 1; classes have no order), which
    equals the total variation distance 0.5 * sum_c |p_c - q_c|."""
    return 0.5 * tf.reduce_sum(tf.abs(p - q), axis=-1)


def gaussian_kernel(x, y, bandwidth=1.0):
    """[n, m]: exp(-||x_i - y_j||^2 / (2 sigma^2)) between the rows of x [n, d] and y [m, d]."""
    x = tf.convert_to_tensor(x)
    y = tf.cast(y, x.dtype)
    squared = (tf.reduce_sum(tf.square(x), axis=1)[:, None]
               + tf.reduce_sum(tf.square(y), axis=1)[None, :]
               - 2.0 * tf.matmul(x, y, transpose_b=True))
    return tf.exp(-tf.maximum(squared, 0.0) / (2.0 * bandwidth ** 2))


def gaussian_mmd(x, y, bandwidth=1.0):
    """Squared maximum mean discrepancy between the samples x [n, d] and y [m, d] (rows are samples)
    with a Gaussian kernel: mean K(x, x') + mean K(y, y') - 2 mean K(x, y) (biased estimator, all
    pairs including i = i', as eq. 9 of the graph distillation paper)."""
    if not bandwidth > 0:
        raise ValueError(f"MMD kernel bandwidth must be > 0, got {bandwidth!r}")
    return (tf.reduce_mean(gaussian_kernel(x, x, bandwidth))
            + tf.reduce_mean(gaussian_kernel(y, y, bandwidth))
            - 2.0 * tf.reduce_mean(gaussian_kernel(x, y, bandwidth)))
