"""Choosing ensemble weights (and members) on validation predictions, by GAP (SPEC 2).

The paper tuned its weights and its member subset by hand; here both are searched:

- `tune_weights`: local search on the weight simplex. It starts from equal weights and moves
  `step` of weight from one member to another while GAP improves, with steps 0.2, 0.1, 0.05,
  0.02, 0.01. Weights stay >= 0 and sum to 1; a member can end at 0 (it is then left out of the
  export). GAP is piecewise constant in the weights, so a gradient method would not move.
- `select_under_budget`: every member subset whose size fits the budget and that cannot take
  one more member gets its weights tuned (a superset can always do at least as well by giving
  the extra members weight 0, so smaller subsets need no search); the best GAP wins.
"""
import dataclasses
import itertools

import yt8m  # noqa: F401
import numpy as np

from yt8m import metrics
from yt8m.core import errors

DEFAULT_STEPS = (0.2, 0.1, 0.05, 0.02, 0.01)
MAX_SUBSET_SEARCH_MEMBERS = 16
_EPSILON = 1e-9


def gap_score(predictions, labels, top_k=20):
    return float(metrics.gap(predictions, labels, top_k=top_k))


def weighted_predictions(member_predictions, weights):
    total = np.zeros_like(member_predictions[0], dtype=np.float32)
    for predictions, weight in zip(member_predictions, weights):
        if weight > 0:
            total += np.float32(weight) * predictions
    return total


@dataclasses.dataclass
class TuneResult:
    weights: list      # one per member, >= 0, summing to 1
    gap: float         # validation GAP with these weights
    equal_weights_gap: float


def tune_weights(member_predictions, labels, steps=DEFAULT_STEPS, top_k=20):
    """Weights on the simplex that maximise GAP (local search, see the module docstring)."""
    count = len(member_predictions)
    if count == 0:
        raise ValueError("no member predictions to tune weights on")
    cache = {}

    def score(weights):
        key = tuple(round(weight, 9) for weight in weights)
        if key not in cache:
            cache[key] = gap_score(weighted_predictions(member_predictions, weights), labels,
                                   top_k)
        return cache[key]

    weights = [1.0 / count] * count
    equal_gap = best_gap = score(weights)
    for step in steps:
        improved = True
        while improved:
            improved = False
            for gainer, loser in itertools.permutations(range(count), 2):
                if weights[loser] < step - _EPSILON:
                    continue
                candidate = list(weights)
                candidate[gainer] += step
                candidate[loser] = max(candidate[loser] - step, 0.0)
                candidate_gap = score(candidate)
                if candidate_gap > best_gap + _EPSILON:
                    weights, best_gap, improved = candidate, candidate_gap, True
    total = sum(weights)
    return TuneResult(weights=[weight / total for weight in weights], gap=best_gap,
                      equal_weights_gap=equal_gap)


def maximal_subsets_under_budget(member_bytes, budget_bytes):
    """Index tuples of the member subsets that fit the budget and cannot take one more member."""
    count = len(member_bytes)
    if count > MAX_SUBSET_SEARCH_MEMBERS:
        raise errors.InvalidInputError(f"--select_under_budget searches subsets of at most "
                                       f"{MAX_SUBSET_SEARCH_MEMBERS} members, got {count}")
    fitting = []
    for size in range(1, count + 1):
        for subset in itertools.combinations(range(count), size):
            if sum(member_bytes[index] for index in subset) <= budget_bytes:
                fitting.append(subset)
    fitting_sets = {frozenset(subset) for subset in fitting}
    return [subset for subset in fitting
            if not any(frozenset(subset) | {other} in fitting_sets
                       for other in range(count) if other not in subset)]


@dataclasses.dataclass
class SelectionResult:
    members: list      # chosen member indices, in the original order
    weights: list      # their weights
    gap: float
    candidates: list   # [(subset, gap)] of every subset searched


def select_under_budget(member_predictions, labels, member_bytes, budget_bytes, top_k=20,
                        steps=DEFAULT_STEPS):
    """The member subset (with tuned weights) of best GAP among those within the budget."""
    subsets = maximal_subsets_under_budget(member_bytes, budget_bytes)
    if not subsets:
        smallest = min(member_bytes)
        raise errors.InvalidInputError(
            f"--select_under_budget: no member fits the budget ({budget_bytes} bytes); the "
            f"smallest takes {smallest} bytes")
    best, candidates = None, []
    for subset in subsets:
        result = tune_weights([member_predictions[index] for index in subset], labels,
                              steps=steps, top_k=top_k)
        candidates.append((list(subset), result.gap))
        size = sum(member_bytes[index] for index in subset)
        if best is None or (result.gap, -size) > (best[1].gap, -best[2]):
            best = (subset, result, size)
    subset, result, _ = best
    return SelectionResult(members=list(subset), weights=result.weights, gap=result.gap,
                           candidates=candidates)
