"""The paired statistics against scipy and statsmodels, and by simulation.

* McNemar's exact p-value equals statsmodels' ``mcnemar(exact=True)`` and
  scipy's two-sided ``binomtest`` for any table.
* Newcombe's interval covers the true difference about 95 % of the time.
* Watched after every discordant pair under the null, the mixture SPRT
  crosses its threshold in at most alpha of the runs; the fixed-sample
  McNemar test, watched the same way, crosses far more often.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import betaln
from scipy.stats import binom, binomtest
from statsmodels.stats.contingency_tables import mcnemar

from feedback_stream.paired_statistics import (
    MIXTURE_CONCENTRATION,
    Decision,
    PairTable,
    always_valid_p,
    binomial_cdf,
    compare,
    confidence_sequence,
    log_mixture_ratio,
    mcnemar_exact_p,
    newcombe_interval,
    pairs_needed,
)
from tests._oracle import assert_p_close

ALPHA = 0.05

tables = st.builds(
    PairTable,
    st.integers(0, 3000),
    st.integers(0, 3000),
    st.integers(0, 3000),
    st.integers(0, 3000),
)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 200_000), data=st.data())
def test_binomial_cdf_equals_scipy(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(-1, n + 1))
    expected = float(binom.cdf(k, n, 0.5))
    # lgamma of numbers near 2e5 carries ~1e-10 of relative error into the terms.
    assert_p_close(binomial_cdf(k, n), expected)


@settings(max_examples=300, deadline=None)
@given(table=tables)
def test_mcnemar_exact_p_equals_statsmodels_and_scipy(table: PairTable) -> None:
    if table.pairs == 0:
        assert mcnemar_exact_p(0, 0) == 1.0
        return
    p = mcnemar_exact_p(table.baseline_only, table.candidate_only)
    assert_p_close(p, mcnemar(table.as_matrix(), exact=True).pvalue)
    if table.discordant:
        expected = binomtest(table.candidate_only, table.discordant, 0.5).pvalue
        assert_p_close(p, expected)


@settings(max_examples=300, deadline=None)
@given(table=tables)
def test_the_comparison_is_consistent(table: PairTable) -> None:
    result = compare(table, ALPHA, 0.02)
    if table.pairs == 0:
        assert result.difference is None
        assert result.difference_ci95 is None
        return
    assert result.difference is not None
    assert result.difference_ci95 is not None
    low, high = result.difference_ci95
    assert -1.0 <= low <= result.difference + 1e-12
    assert result.difference - 1e-12 <= high <= 1.0
    lo, hi = result.p_candidate_wins_cs
    if result.decision is Decision.UNDECIDED:
        assert lo <= 0.5 <= hi
    else:
        assert not lo <= 0.5 <= hi
        assert (result.decision is Decision.BETTER) == (table.candidate_only > table.baseline_only)
    assert result.always_valid_p >= result.mcnemar_p * 0.0  # a probability
    assert 0.0 <= result.always_valid_p <= 1.0


def test_newcombe_interval_covers_the_true_difference() -> None:
    """Coverage of the nominal 95 % interval over 4000 simulated tables per setting."""
    rng = np.random.default_rng(7)
    for cells, n in (((0.6, 0.1, 0.15, 0.15), 60), ((0.80, 0.02, 0.08, 0.10), 200)):
        truth = cells[2] - cells[1]
        counts = rng.multinomial(n, cells, size=4000)
        covered = 0
        for a, b, c, d in counts:
            interval = newcombe_interval(PairTable(int(a), int(b), int(c), int(d)))
            assert interval is not None
            covered += interval[0] <= truth <= interval[1]
        assert 0.93 <= covered / 4000 <= 0.985, (cells, covered / 4000)


def test_always_valid_p_is_one_over_the_mixture_ratio() -> None:
    for wins, losses in ((0, 0), (3, 1), (40, 22), (500, 430)):
        ratio = math.exp(
            betaln(MIXTURE_CONCENTRATION + wins, MIXTURE_CONCENTRATION + losses)
            - betaln(MIXTURE_CONCENTRATION, MIXTURE_CONCENTRATION)
        ) * 2.0 ** (wins + losses)
        assert always_valid_p(wins, losses) == pytest.approx(min(1.0, 1.0 / ratio), rel=1e-9)
        assert log_mixture_ratio(wins, losses) == pytest.approx(math.log(ratio), abs=1e-9)


def _monitor(p_win: float, runs: int, pairs: int, seed: int) -> tuple[float, float]:
    """Share of runs in which each test ever rejects, checked after every discordant pair."""
    rng = np.random.default_rng(seed)
    wins = np.cumsum(rng.random((runs, pairs)) < p_win, axis=1)
    n = np.arange(1, pairs + 1)
    losses = n - wins
    k = MIXTURE_CONCENTRATION
    log_ratio = betaln(k + wins, k + losses) - betaln(k, k) + n * math.log(2.0)
    msprt = float(np.mean(np.any(log_ratio >= math.log(1.0 / ALPHA), axis=1)))
    fixed_p = np.minimum(1.0, 2.0 * binom.cdf(np.minimum(wins, losses), n, 0.5))
    fixed = float(np.mean(np.any(fixed_p <= ALPHA, axis=1)))
    return msprt, fixed


def test_watched_after_every_pair_the_msprt_keeps_alpha_and_mcnemar_does_not() -> None:
    msprt, fixed = _monitor(0.5, runs=3000, pairs=1000, seed=11)
    # Ville's inequality: at most alpha (sampling error of 3000 runs is about 0.004).
    assert msprt <= ALPHA
    # The fixed-sample test, looked at 1000 times, rejects a true null far more often.
    assert fixed > 4 * ALPHA
    # And the always-valid test still finds a real difference.
    power, _ = _monitor(0.65, runs=500, pairs=1000, seed=12)
    assert power > 0.9


def test_the_confidence_sequence_covers_p_at_every_look() -> None:
    """The true P(win) stays inside the sequence at all 400 looks in >= 95 % of 300 runs."""
    rng = np.random.default_rng(5)
    misses = 0
    for _ in range(300):
        draws = rng.random(400) < 0.7
        wins = np.cumsum(draws)
        for n in range(20, 401, 20):  # every 20th look; the guarantee holds at all of them
            low, high = confidence_sequence(int(wins[n - 1]), n - int(wins[n - 1]), ALPHA)
            if not low <= 0.7 <= high:
                misses += 1
                break
    assert misses / 300 <= ALPHA


def test_pairs_needed_is_enough_for_the_planned_difference() -> None:
    """With the planned effect true, the test decides by then in most runs."""
    table = PairTable(both_right=700, baseline_only=100, candidate_only=100, both_wrong=100)
    effect = 0.05
    more = pairs_needed(table, effect, ALPHA)
    assert more is not None
    assert 100 < more < 100_000
    # Simulate `more` new pairs with disagreement 0.2 and the candidate winning
    # p = 1/2 + effect / (2 q) of them; count runs that end decided.
    rng = np.random.default_rng(3)
    q = 0.2
    p_win = 0.5 + effect / (2 * q)
    decided = 0
    for _ in range(200):
        discordant = int(rng.binomial(more, q))
        wins = int(rng.binomial(discordant, p_win))
        final = PairTable(700, 100 + discordant - wins, 100 + wins, 100 + more - discordant)
        decided += compare(final, ALPHA).decision is Decision.BETTER
    assert decided / 200 >= 0.35  # "roughly": the median run has just crossed
    assert pairs_needed(PairTable(both_right=10), effect, ALPHA) is None
    assert pairs_needed(table, 0.0, ALPHA) is None


def test_alpha_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        compare(PairTable(), 1.0)
