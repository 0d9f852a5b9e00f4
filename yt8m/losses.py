"""Label losses (the starter's `--label_loss` choices) and the KL divergences between logits that
mixtures (online distillation) and the distillation objectives share. TensorFlow ops returning a
scalar (or [B] for the `*_per_example` forms); this module imports nothing else of the project.

Every label loss has `calculate_loss(predictions, labels, label_weights=None, logits=None)`:
- predictions: [B, V] scores, probabilities for the sigmoid models of this project.
- labels: [B, V] multi-hot targets.
- label_weights: optional [B, V] weight of each class term (segment training: 1 at the rated
  classes, 0 elsewhere, so only rated classes carry loss).
- logits: optional [B, V] pre-sigmoid scores with predictions == sigmoid(logits); a loss that can
  use them does (exact and numerically safe), the others ignore them.
The per-example loss is summed over classes and averaged over the batch (starter convention).
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

# Keeps log() finite on saturated probabilities; the starter's value, so losses match its logs.
PROBABILITY_EPSILON = 1e-5


def _weighted_mean_of_class_sums(per_class_loss, label_weights):
    if label_weights is not None:
        per_class_loss = per_class_loss * tf.cast(label_weights, per_class_loss.dtype)
    return tf.reduce_mean(tf.reduce_sum(per_class_loss, axis=1))


class BaseLoss:
    """Interface of the label losses; subclasses implement `calculate_loss`."""

    name = None

    def calculate_loss(self, predictions, labels, label_weights=None, logits=None):
        raise NotImplementedError

    def __call__(self, predictions, labels, label_weights=None, logits=None):
        return self.calculate_loss(predictions, labels, label_weights=label_weights, logits=logits)


class CrossEntropyLoss(BaseLoss):
    """Per-class binary cross-entropy, summed over classes, averaged over the batch.

    From logits when given (`tf.nn.sigmoid_cross_entropy_with_logits`); otherwise on probabilities
    as -[y log(p + eps) + (1 - y) log(1 - p + eps)] with eps = 1e-5, like the starter.
    """

    name = "CrossEntropyLoss"

    def calculate_loss(self, predictions, labels, label_weights=None, logits=None):
        with tf.name_scope("loss_xent"):
            if logits is not None:
                logits = tf.convert_to_tensor(logits)
                labels = tf.cast(labels, logits.dtype)
                per_class = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
            else:
                predictions = tf.convert_to_tensor(predictions)
                labels = tf.cast(labels, predictions.dtype)
                per_class = -(labels * tf.math.log(predictions + PROBABILITY_EPSILON)
                              + (1.0 - labels) * tf.math.log(1.0 - predictions
                                                             + PROBABILITY_EPSILON))
            return _weighted_mean_of_class_sums(per_class, label_weights)


class HingeLoss(BaseLoss):
    """Per-class hinge max(0, b - s * p) with s = 2y - 1 (+1 positive, -1 negative), summed over
    classes, averaged over the batch. Applied to `predictions` as the starter does (logits are
    ignored: the margin b is meant on the model's output scale)."""

    name = "HingeLoss"

    def __init__(self, margin=1.0):
        self.margin = margin

    def calculate_loss(self, predictions, labels, label_weights=None, logits=None):
        del logits
        with tf.name_scope("loss_hinge"):
            predictions = tf.convert_to_tensor(predictions)
            signs = 2.0 * tf.cast(labels, predictions.dtype) - 1.0
            per_class = tf.nn.relu(self.margin - signs * predictions)
            return _weighted_mean_of_class_sums(per_class, label_weights)


class SoftmaxLoss(BaseLoss):
    """Cross-entropy between the L1-normalised labels and a softmax across classes.

    The softmax runs over the logits when given, else over `predictions` (the starter's choice).
    With label_weights, classes of weight 0 are left out of the softmax (they neither take
    probability mass nor count as targets) and the target is w * y, L1-normalised. A row without
    positive (weighted) labels contributes 0.
    """

    name = "SoftmaxLoss"

    def calculate_loss(self, predictions, labels, label_weights=None, logits=None):
        with tf.name_scope("loss_softmax"):
            scores = tf.convert_to_tensor(logits if logits is not None else predictions)
            targets = tf.cast(labels, scores.dtype)
            if label_weights is not None:
                weights = tf.cast(label_weights, scores.dtype)
                targets = targets * weights
                # A very negative score rather than -inf keeps 0 * log_softmax finite.
                scores = tf.where(weights > 0, scores, tf.constant(-1e9, scores.dtype))
            row_sums = tf.reduce_sum(targets, axis=1, keepdims=True)
            targets = tf.math.divide_no_nan(targets, row_sums)
            per_example = -tf.reduce_sum(targets * tf.nn.log_softmax(scores, axis=1), axis=1)
            return tf.reduce_mean(per_example)


LABEL_LOSSES = {cls.name: cls for cls in (CrossEntropyLoss, HingeLoss, SoftmaxLoss)}


def get_label_loss(name):
    """Returns a new instance of the label loss called `name` (the `--label_loss` flag value)."""
    try:
        return LABEL_LOSSES[name]()
    except KeyError:
        raise ValueError(f"Unknown label loss {name!r} (--label_loss); choose one of: "
                         f"{', '.join(sorted(LABEL_LOSSES))}") from None


# ----------------------------------------------------------------------------- KL from logits

def check_temperature(temperature):
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")


def softmax_kl_per_example(target_logits, logits, temperature=1.0):
    """[B]: KL(softmax(target/T) || softmax(logits/T)) across the class axis."""
    check_temperature(temperature)
    logits = tf.convert_to_tensor(logits)
    target_logits = tf.cast(target_logits, logits.dtype)
    target_log_p = tf.nn.log_softmax(target_logits / temperature, axis=-1)
    log_q = tf.nn.log_softmax(logits / temperature, axis=-1)
    return tf.reduce_sum(tf.exp(target_log_p) * (target_log_p - log_q), axis=-1)


def binary_kl_per_example(target_logits, logits, temperature=1.0):
    """[B]: sum_c KL(Bernoulli(sigmoid(t_c/T)) || Bernoulli(sigmoid(z_c/T))), from logits.

    Uses log sigmoid(x) = -softplus(-x) and log(1 - sigmoid(x)) = -softplus(x): no clipping.
    """
    check_temperature(temperature)
    logits = tf.convert_to_tensor(logits)
    t = tf.cast(target_logits, logits.dtype) / temperature
    z = logits / temperature
    p = tf.sigmoid(t)
    per_class = (p * (tf.nn.softplus(-z) - tf.nn.softplus(-t))
                 + (1 - p) * (tf.nn.softplus(z) - tf.nn.softplus(t)))
    return tf.reduce_sum(per_class, axis=-1)


def softmax_kl(target_logits, logits, temperature=1.0):
    """Mean over the batch of KL(softmax(target/T) || softmax(logits/T))."""
    return tf.reduce_mean(softmax_kl_per_example(target_logits, logits, temperature))


def binary_kl(target_logits, logits, temperature=1.0):
    """Mean over the batch of the per-class binary KL with temperature (sigmoid form)."""
    return tf.reduce_mean(binary_kl_per_example(target_logits, logits, temperature))


def mixture_kl(mixture_logits, branch_logits_list, temperature):
    """Online distillation term of MixNeXtVLAD / MOD (SPEC 4):
    mean over the batch of sum_i KL(softmax(z/T) || softmax(z_i/T)).

    No stop-gradient on the mixture side (the reference code puts none; wrap `mixture_logits` in
    tf.stop_gradient to get the other variant). temperature == 0 means no distillation term (0).
    The caller multiplies by lambda (the references use lambda = T^2).
    """
    if temperature == 0:
        return tf.constant(0.0, tf.convert_to_tensor(mixture_logits).dtype)
    if not branch_logits_list:
        raise ValueError("mixture_kl needs at least one branch's logits")
    return tf.reduce_mean(tf.add_n([softmax_kl_per_example(mixture_logits, branch, temperature)
                                    for branch in branch_logits_list]))
