"""Statistics of a paired comparison: one 2x2 table of two models on the same rows.

Both models answered the same requests, and the feedback says for each row
whether each was right. Only the rows where they *disagree* (one right, the
other wrong) say anything about which is better; the rows where both are
right or both are wrong cancel out of the accuracy difference.

=========================  ==========================================================
``both_right``  (a)        both models right
``baseline_only`` (b)      only the baseline right
``candidate_only`` (c)     only the candidate right
``both_wrong``  (d)        both wrong
=========================  ==========================================================

What :func:`compare` reports, with the formula's source:

* ``difference`` = accuracy(candidate) - accuracy(baseline) = (c - b) / n.
* ``difference_ci95``: Newcombe's hybrid score interval for paired
  proportions, method 10 of R. G. Newcombe, "Improved confidence intervals
  for the difference between binomial proportions based on paired data",
  Statistics in Medicine 17 (1998) 2635-2650; as in M. W. Fagerland,
  S. Lydersen, P. Laake, *Statistical Analysis of Contingency Tables*
  (2017), section 8.5: two Wilson intervals combined with the
  continuity-corrected phi correlation of the table. A fixed-sample interval.
* ``mcnemar_p``: McNemar's exact (conditional) test, the two-sided binomial
  test of ``c`` successes in ``b + c`` trials with p = 1/2:
  ``min(1, 2 * P(Bin(b + c, 1/2) <= min(b, c)))`` (as
  ``statsmodels.stats.contingency_tables.mcnemar(exact=True)``). Valid for
  one look at a sample size fixed in advance only.
* ``always_valid_p`` and ``decision``: a mixture sequential probability
  ratio test (mSPRT) on the discordant pairs. With ``p = P(candidate right |
  they disagree)`` and ``H0: p = 1/2``, the likelihood ratio mixed over
  ``p ~ Beta(k, k)`` is::

      L_n = B(k + c, k + b) / B(k, k) * 2 ** (b + c)

  a nonnegative martingale under H0, so by Ville's inequality
  ``P(L_n >= 1/alpha for some n) <= alpha``: however often someone looks,
  "reject when ``1 / L_n <= alpha``" is wrong at most ``alpha`` of the time
  (H. Robbins, "Statistical methods related to the law of the iterated
  logarithm", Ann. Math. Statist. 41 (1970); R. Johari, L. Pekelis,
  D. Walsh, "Always valid inference: bringing sequential analysis to A/B
  testing", arXiv:1512.04922 / Operations Research 70 (2022); S. R. Howard,
  A. Ramdas, J. McAuliffe, J. Sekhon, "Time-uniform, nonparametric,
  nonasymptotic confidence sequences", Ann. Statist. 49 (2021)).
  ``p_ci`` is the matching confidence sequence for ``p``: every ``p`` whose
  mixture ratio is below ``1/alpha``.
* ``pairs_needed``: roughly how many more labelled pairs the always-valid
  test needs to call a true accuracy difference of ``effect`` in the
  candidate's favour, if the share of disagreeing pairs stays as observed:
  the smallest number of further discordant pairs ``m`` whose expected
  split (``m * p`` candidate wins, ``p = 1/2 + effect / (2 q)``, ``q`` the
  observed disagreement rate), added to the table, puts the mixture ratio
  over ``1/alpha``; divided by ``q``. 0 once the test has decided.

Pure Python (``math.lgamma``), no array library: a scrape computes a few
tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from feedback_stream.metrics import Z_95, wilson_interval

__all__ = [
    "MIXTURE_CONCENTRATION",
    "Decision",
    "PairTable",
    "PairedComparison",
    "always_valid_p",
    "binomial_cdf",
    "compare",
    "confidence_sequence",
    "log_mixture_ratio",
    "mcnemar_exact_p",
    "newcombe_interval",
    "pairs_needed",
]

MIXTURE_CONCENTRATION: Final = 5.0
"""``k`` of the ``Beta(k, k)`` mixing distribution of the mSPRT.

It spreads the alternative around 1/2 with a standard deviation of about
0.15, so the test is quickest when the candidate wins roughly 60 to 80 % of
the disagreements; any ``k`` keeps the guarantee, only the speed changes.
"""


class Decision(StrEnum):
    """What the always-valid test says, plainly."""

    BETTER = "better"
    WORSE = "worse"
    UNDECIDED = "no difference yet"


@dataclass(frozen=True, slots=True)
class PairTable:
    """The 2x2 table of one window: counts of rows both models answered, by who was right."""

    both_right: int = 0
    baseline_only: int = 0
    candidate_only: int = 0
    both_wrong: int = 0

    @property
    def pairs(self) -> int:
        return self.both_right + self.baseline_only + self.candidate_only + self.both_wrong

    @property
    def discordant(self) -> int:
        return self.baseline_only + self.candidate_only

    def as_matrix(self) -> list[list[int]]:
        """``[[both_right, baseline_only], [candidate_only, both_wrong]]``.

        Rows: baseline right / wrong; columns: candidate wrong / right would
        put ``both_wrong`` elsewhere, so this is the layout ``statsmodels``'
        ``mcnemar`` reads: the discordant cells off the diagonal.
        """
        return [[self.both_right, self.baseline_only], [self.candidate_only, self.both_wrong]]


def _log_binomial_term(n: int, k: int) -> float:
    """log(C(n, k) / 2**n)."""
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2.0)


def binomial_cdf(k: int, n: int) -> float:
    """P(Bin(n, 1/2) <= k), summed from ``k`` downwards until the terms vanish.

    Relative error below 1e-9 for ``n`` up to a few hundred thousand (the
    ``lgamma`` of the first term carries it); the number of terms is at most
    ``k + 1`` and, for ``k`` near ``n / 2``, a few dozen standard deviations.
    """
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if k > n - k:  # the upper part is the smaller sum
        return 1.0 - binomial_cdf(n - k - 1, n)
    term = math.exp(_log_binomial_term(n, k))
    total = term
    j = k
    while j > 0 and term > total * 1e-17:
        term *= j / (n - j + 1)  # C(n, j-1) / C(n, j)
        total += term
        j -= 1
    return min(1.0, total)


def mcnemar_exact_p(baseline_only: int, candidate_only: int) -> float:
    """Two-sided exact McNemar p-value: ``min(1, 2 * P(Bin(b + c, 1/2) <= min(b, c)))``."""
    n = baseline_only + candidate_only
    return min(1.0, 2.0 * binomial_cdf(min(baseline_only, candidate_only), n))


def newcombe_interval(table: PairTable, z: float = Z_95) -> tuple[float, float] | None:
    """Newcombe's (1998, method 10) interval for accuracy(candidate) - accuracy(baseline).

    ``None`` without pairs. See the module docstring for the source.
    """
    n = table.pairs
    if n == 0:
        return None
    a, b, c, d = table.both_right, table.baseline_only, table.candidate_only, table.both_wrong
    candidate_right, baseline_right = a + c, a + b
    p1, p2 = candidate_right / n, baseline_right / n
    ci1 = wilson_interval(candidate_right, n, z)
    ci2 = wilson_interval(baseline_right, n, z)
    assert ci1 is not None
    assert ci2 is not None
    l1, u1 = ci1
    l2, u2 = ci2
    margins = candidate_right * (n - candidate_right) * baseline_right * (n - baseline_right)
    phi = 0.0
    if margins > 0:
        # Continuity-corrected phi: (ad - bc - n/2) when ad - bc > n/2, 0 up to n/2.
        cross = a * d - b * c
        if cross > n / 2:
            phi = (cross - n / 2) / math.sqrt(margins)
        elif cross < 0:
            phi = cross / math.sqrt(margins)
    difference = p1 - p2
    lower = difference - math.sqrt(
        max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    )
    upper = difference + math.sqrt(
        max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    )
    return max(-1.0, lower), min(1.0, upper)


def _log_beta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def log_mixture_ratio(
    wins: int, losses: int, p: float = 0.5, k: float = MIXTURE_CONCENTRATION
) -> float:
    """log of the Beta(k, k) mixture likelihood ratio against ``P(win) = p``.

    ``wins`` are discordant pairs the candidate got right, ``losses`` those
    the baseline got right. ``log(B(k + wins, k + losses) / B(k, k)) -
    wins * log(p) - losses * log(1 - p)``; 0 without discordant pairs.
    """
    log_null = (wins * math.log(p) if wins else 0.0) + (losses * math.log1p(-p) if losses else 0.0)
    return _log_beta(k + wins, k + losses) - _log_beta(k, k) - log_null


def always_valid_p(wins: int, losses: int, k: float = MIXTURE_CONCENTRATION) -> float:
    """``min(1, 1 / L_n)``: the mSPRT's p-value for ``p = 1/2`` at this look.

    Under the null, the chance that it is ever at or below ``alpha``, over
    all looks, is at most ``alpha`` (Ville's inequality).
    """
    return min(1.0, math.exp(-log_mixture_ratio(wins, losses, 0.5, k)))


def confidence_sequence(
    wins: int, losses: int, alpha: float, k: float = MIXTURE_CONCENTRATION
) -> tuple[float, float]:
    """``{p : L_n(p) < 1/alpha}``, the mixture confidence sequence for P(win | discordant).

    It covers the true ``p`` at every look at once with probability at least
    ``1 - alpha``. Found by bisection on each side of the maximum-likelihood
    point (``log L_n(p)`` is convex in ``p``, at most 0 at its minimum, so the
    set is an interval around it).
    """
    threshold = math.log(1.0 / alpha)
    n = wins + losses
    centre = min(max(wins / n, 1e-12), 1 - 1e-12) if n else 0.5

    def outside(p: float) -> bool:
        return log_mixture_ratio(wins, losses, p, k) >= threshold

    def edge(inner: float, outer: float) -> float:
        if not outside(outer):
            return outer
        for _ in range(60):
            middle = (inner + outer) / 2
            if outside(middle):
                outer = middle
            else:
                inner = middle
        return inner

    lower = edge(centre, 1e-12)
    upper = edge(centre, 1 - 1e-12)
    return (0.0 if lower <= 1e-12 else lower), (1.0 if upper >= 1 - 1e-12 else upper)


def pairs_needed(
    table: PairTable, effect: float, alpha: float, k: float = MIXTURE_CONCENTRATION
) -> int | None:
    """Roughly how many more labelled pairs the always-valid test needs to detect ``effect``.

    ``None`` while no pair disagrees (the disagreement rate is unknown) or
    when ``effect`` is not positive. See the module docstring.
    """
    n, discordant = table.pairs, table.discordant
    if n == 0 or discordant == 0 or effect <= 0:
        return None
    q = discordant / n
    p = min(1.0, 0.5 + effect / (2.0 * q))
    threshold = math.log(1.0 / alpha)

    def crosses(m: int) -> bool:
        wins = round(m * p)
        return (
            log_mixture_ratio(table.candidate_only + wins, table.baseline_only + m - wins, 0.5, k)
            >= threshold
        )

    if crosses(0):
        return 0
    high = 1
    while not crosses(high):
        high *= 2
        if high > 1 << 40:
            return None
    low = high // 2
    while low + 1 < high:  # crosses(high), not crosses(low) (or low == 0)
        middle = (low + high) // 2
        if crosses(middle):
            high = middle
        else:
            low = middle
    return math.ceil(high / q)


@dataclass(frozen=True, slots=True)
class PairedComparison:
    """Everything one window says about baseline vs candidate (see the module docstring)."""

    table: PairTable
    baseline_accuracy: float | None
    candidate_accuracy: float | None
    difference: float | None
    difference_ci95: tuple[float, float] | None
    mcnemar_p: float
    always_valid_p: float
    p_candidate_wins: float | None
    p_candidate_wins_cs: tuple[float, float]
    decision: Decision
    alpha: float
    effect: float
    pairs_needed: int | None

    def to_dict(self) -> dict[str, Any]:
        table = self.table
        return {
            "pairs": table.pairs,
            "table": {
                "both_right": table.both_right,
                "baseline_only": table.baseline_only,
                "candidate_only": table.candidate_only,
                "both_wrong": table.both_wrong,
            },
            "discordant": table.discordant,
            "baseline_accuracy": self.baseline_accuracy,
            "candidate_accuracy": self.candidate_accuracy,
            "difference": self.difference,
            "difference_ci95": list(self.difference_ci95) if self.difference_ci95 else None,
            "mcnemar_p": self.mcnemar_p,
            "always_valid_p": self.always_valid_p,
            "p_candidate_wins": self.p_candidate_wins,
            "p_candidate_wins_cs": list(self.p_candidate_wins_cs),
            "decision": self.decision.value,
            "alpha": self.alpha,
            "effect": self.effect,
            "pairs_needed": self.pairs_needed,
        }


def compare(table: PairTable, alpha: float = 0.05, effect: float = 0.02) -> PairedComparison:
    """Every statistic of one table; ``alpha`` for the always-valid decision.

    Raises:
        ValueError: ``alpha`` not in (0, 1).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n = table.pairs
    wins, losses = table.candidate_only, table.baseline_only
    p_value = always_valid_p(wins, losses)
    if p_value <= alpha:
        decision = Decision.BETTER if wins > losses else Decision.WORSE
    else:
        decision = Decision.UNDECIDED
    return PairedComparison(
        table=table,
        baseline_accuracy=(table.both_right + table.baseline_only) / n if n else None,
        candidate_accuracy=(table.both_right + table.candidate_only) / n if n else None,
        difference=(wins - losses) / n if n else None,
        difference_ci95=newcombe_interval(table),
        mcnemar_p=mcnemar_exact_p(losses, wins),
        always_valid_p=p_value,
        p_candidate_wins=wins / (wins + losses) if wins + losses else None,
        p_candidate_wins_cs=confidence_sequence(wins, losses, alpha),
        decision=decision,
        alpha=alpha,
        effect=effect,
        pairs_needed=pairs_needed(table, effect, alpha),
    )
