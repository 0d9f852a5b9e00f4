"""Label losses (the starter's `--label_loss` choices) and the KL divergences between logits that
mixtures (online distillation) and the distillation objectives share. TensorFlow ops returning a
scalar (or [B] for the `*_per_example` forms); this module imports nothing else of the project.

Every label loss has `calculate_loss(predictions, labels, label_weights=None, logits=None)`:
- predictions: [B, V] scores, probabilities for the sigmoid models of this project.
- labels: [B, V] multi-hot targets.
- label_weights: optional [B, V] weight of each class term (segment training: 1 at the rated
  classes, 0 elsewhere, so only rated classes carry loss).
- logits: optional [B, V] pre-sigmoid scores with predictions == sigmoid(logits). The starter's
  losses (CrossEntropyLoss, HingeLoss, SoftmaxLoss) ignore them, as the starter computed every loss
  on the predictions; the `Logits*` losses (named options, not the default) use them where given.
The per-example loss is summed over classes and averaged over the batch (starter convention).
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

# The starter's (and Willow's) CrossEntropyLoss epsilon: keeps log() finite on saturated
# probabilities and bounds each class term by -log(1e-5) = 11.5.
PROBABILITY_EPSILON = 1e-5
# linrongc's and MOD's CrossEntropyLoss (and their distillation KL) use 1e-8.
LINRONGC_EPSILON = 1e-8


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
    """The starter's loss: per-class binary cross-entropy on the PROBABILITIES,
    -[y log(p + eps) + (1 - y) log(1 - p + eps)], summed over classes, averaged over the batch.

    epsilon: 1e-5 (starter, Willow); linrongc's NeXtVLAD and MOD code used 1e-8, which those
    models register (frame_level_models.registry.loss_epsilon). Logits are ignored.
    """

    name = "CrossEntropyLoss"

    def __init__(self, epsilon=PROBABILITY_EPSILON):
        if not epsilon > 0:
            raise ValueError(f"{self.name}: epsilon must be > 0, got {epsilon!r}")
        self.epsilon = float(epsilon)

    def per_class(self, predictions, labels, logits):
        del logits
        predictions = tf.convert_to_tensor(predictions)
        labels = tf.cast(labels, predictions.dtype)
        return -(labels * tf.math.log(predictions + self.epsilon)
                 + (1.0 - labels) * tf.math.log(1.0 - predictions + self.epsilon))

    def calculate_loss(self, predictions, labels, label_weights=None, logits=None):
        with tf.name_scope("loss_xent"):
            return _weighted_mean_of_class_sums(self.per_class(predictions, labels, logits),
                                                label_weights)


class LogitsCrossEntropyLoss(CrossEntropyLoss):
    """Named option: the exact binary cross-entropy from the logits
    (`tf.nn.sigmoid_cross_entropy_with_logits`: no epsilon, no saturation on confident mistakes),
    where the model has logits (LogisticModel, NeXtVLAD, the mixtures); a model without logits
    (the MoE classifier) gets the starter's probability form."""

    name = "LogitsCrossEntropyLoss"

    def per_class(self, predictions, labels, logits):
        if logits is None:
            return super().per_class(predictions, labels, None)
        logits = tf.convert_to_tensor(logits)
        return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, logits.dtype),
                                                       logits=logits)


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
    """The starter's SoftmaxLoss: cross-entropy between the L1-normalised labels and a softmax
    across classes of the PREDICTIONS (probabilities, as the starter; logits are ignored).

    With label_weights (the starter's SoftmaxLoss takes none: its segment training fails with
    it), classes of weight 0 are left out of the softmax (they neither take probability mass nor
    count as targets) and the target is w * y, L1-normalised. A row without positive (weighted)
    labels contributes 0 (the starter floors the row sum at 1e-7: the same 0).
    """

    name = "SoftmaxLoss"

    def scores(self, predictions, logits):
        del logits
        return tf.convert_to_tensor(predictions)

    def calculate_loss(self, predictions, labels, label_weights=None, logits=None):
        with tf.name_scope("loss_softmax"):
            scores = self.scores(predictions, logits)
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


class LogitsSoftmaxLoss(SoftmaxLoss):
    """Named option: SoftmaxLoss with the softmax over the logits where the model has them (the
    multi-teacher paper's hard-label loss); over the predictions otherwise."""

    name = "LogitsSoftmaxLoss"

    def scores(self, predictions, logits):
        return tf.convert_to_tensor(predictions if logits is None else logits)


LABEL_LOSSES = {cls.name: cls for cls in (CrossEntropyLoss, HingeLoss, SoftmaxLoss,
                                          LogitsCrossEntropyLoss, LogitsSoftmaxLoss)}


def get_label_loss(name, probability_epsilon=None):
    """A new instance of the label loss called `name` (the `--label_loss` flag value).

    probability_epsilon: the epsilon of the cross-entropy's probability logs (the model family's
    reference value, frame_level_models.registry.loss_epsilon); None: the starter's 1e-5. The other
    losses have none.
    """
    try:
        loss_class = LABEL_LOSSES[name]
    except KeyError:
        raise ValueError(f"Unknown label loss {name!r} (--label_loss); choose one of: "
                         f"{', '.join(sorted(LABEL_LOSSES))}") from None
    if issubclass(loss_class, CrossEntropyLoss) and probability_epsilon is not None:
        return loss_class(probability_epsilon)
    return loss_class()


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


def epsilon_softmax_kl_per_example(target_logits, logits, temperature, epsilon):
    """[B]: the references' KL, sum_c q_c (log(q_c + eps) - log(p_c + eps)) with
    q = softmax(target/T), p = softmax(logits/T) (linrongc's / MOD's distillation term)."""
    check_temperature(temperature)
    logits = tf.convert_to_tensor(logits)
    q = tf.nn.softmax(tf.cast(target_logits, logits.dtype) / temperature, axis=-1)
    p = tf.nn.softmax(logits / temperature, axis=-1)
    return tf.reduce_sum(q * (tf.math.log(q + epsilon) - tf.math.log(p + epsilon)), axis=-1)


def mixture_kl(mixture_logits, branch_logits_list, temperature, epsilon=None):
    """Online distillation term of MixNeXtVLAD / MOD (SPEC 4):
    mean over the batch of sum_i KL(softmax(z/T) || softmax(z_i/T)).

    epsilon: None computes the KL exactly from log-softmaxes; a number computes it as the
    references do, on probabilities with epsilon inside the logs (linrongc / MOD: 1e-8).
    No stop-gradient on the mixture side (the reference code puts none; wrap `mixture_logits` in
    tf.stop_gradient to get the other variant). temperature == 0 means no distillation term (0).
    The caller multiplies by lambda (the references use lambda = T^2).
    """
    if temperature == 0:
        return tf.constant(0.0, tf.convert_to_tensor(mixture_logits).dtype)
    if not branch_logits_list:
        raise ValueError("mixture_kl needs at least one branch's logits")
    if epsilon is None:
        terms = [softmax_kl_per_example(mixture_logits, branch, temperature)
                 for branch in branch_logits_list]
    else:
        terms = [epsilon_softmax_kl_per_example(mixture_logits, branch, temperature, epsilon)
                 for branch in branch_logits_list]
    return tf.reduce_mean(tf.add_n(terms))
