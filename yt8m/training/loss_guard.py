"""Which losses stop training, and which checkpoint is known to be good.

A step's loss is bad when it is not finite, or when it is more than `divergence_factor` times the
median of the last losses (a run that diverges but stays finite, 1e13, must not end "max_steps"
with exit 0 after rotating out every good checkpoint). The median of a window ignores the spikes
of a healthy run, and a loss that decreases never trips the guard.

The loss of step S+1 is the first measurement of the weights saved at step S, so a checkpoint is
known to be good only once the step after it had a good loss. A run stops at the first bad loss,
so of a train dir's checkpoints only the newest can be unproven: the one before it was followed
by good steps up to the newest one's save.
"""
import collections
import statistics

import yt8m  # noqa: F401
from yt8m.core import errors

WINDOW_STEPS = 100  # the running median's window
MIN_STEPS = 20  # losses seen before the median is trusted


class BadLossError(errors.UserError, RuntimeError):
    """Training stopped at a bad loss (not finite, or diverged); nothing was saved."""


class NonFiniteLossError(BadLossError):
    pass


class DivergedLossError(BadLossError):
    pass


class LossGuard:
    """Tells bad losses (`check`) and tracks the last checkpoint known to be good."""

    def __init__(self, divergence_factor):
        self.divergence_factor = divergence_factor
        self._recent = collections.deque(maxlen=WINDOW_STEPS)
        self.last_good = None  # the newest checkpoint whose next step's loss was good
        self.unproven = None  # a newer checkpoint whose next step has not run yet

    def restored(self, checkpoint, proven, older=""):
        """The run starts from `checkpoint`: a proven one (not the newest: good steps followed
        it), or the unproven newest, `older` ("" if none) being the checkpoint before it."""
        if proven:
            self.last_good, self.unproven = checkpoint, None
        else:
            self.last_good, self.unproven = older or None, checkpoint

    def saved(self, checkpoint):
        self.unproven = checkpoint

    def check(self, loss, step):
        """Raises NonFiniteLossError / DivergedLossError for a bad loss; a good one proves the
        unproven checkpoint."""
        problem, error_type = None, None
        if loss != loss or loss in (float("inf"), float("-inf")):
            problem, error_type = f"Loss is {loss} at step {step}", NonFiniteLossError
        elif self.divergence_factor and len(self._recent) >= MIN_STEPS:
            median = statistics.median(self._recent)
            if median > 0 and loss > self.divergence_factor * median:  # (a ratio needs a scale)
                problem, error_type = (
                    f"Loss is {loss:.6g} at step {step}, more than --divergence_factor="
                    f"{self.divergence_factor:g} times the median {median:.6g} of the last "
                    f"{len(self._recent)} steps (diverged)"), DivergedLossError
        if problem:
            raise error_type(f"{problem}; stopped without saving. {self._checkpoints_text()}")
        self._recent.append(loss)
        if self.unproven:
            self.last_good, self.unproven = self.unproven, None

    def _checkpoints_text(self):
        if self.unproven is None:
            return f"The last good checkpoint is {self.last_good or '(none)'}."
        good = (f"The last good checkpoint is {self.last_good}" if self.last_good
                else "No checkpoint is known to be good")
        return (f"{good}; the newest, {self.unproven}, holds the weights this loss measured: "
                "train.py resumes from the newest checkpoint, so remove it (its .index and .data "
                "files) to resume from an earlier one.")
