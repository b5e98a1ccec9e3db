"""Shapley values of a game from its values on the sampled coalitions alone, by maximum sample
reuse within each coalition size: the surrogate's residual correction (`ratio_msr`) and the
estimate its held-out value score compares against (`msr_terms`).
"""

from __future__ import annotations

import math

import numpy as np

from .regression import complement_units, measured_endpoints


def _size_strata(x: np.ndarray, r: np.ndarray, within) -> np.ndarray:
    """(r(N) - r(empty)) / n plus, for each size s strictly between, within(z, r_s, s): the
    contribution of the table's coalitions of that size (indicators z, values r_s)."""
    n = x.shape[1]
    size = x.sum(1).astype(int)
    values = np.zeros(n)
    for s in np.unique(size):
        rows = size == s
        if s == 0:
            values -= r[rows].mean() / n
        elif s == n:
            values += r[rows].mean() / n
        else:
            values += within(x[rows].astype(np.float64), np.asarray(r[rows], np.float64), s)
    return values


def msr_terms(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Each row's term of `stratified_msr(x, r)` (rows x players; they sum to it): r(S) times
    (1[i in S] / s - 1[i not in S] / (n - s)) over the number of the table's coalitions of size s,
    and at the endpoints -r(empty) / n and r(N) / n over their number of rows."""
    n = x.shape[1]
    size = x.sum(1).astype(int)
    count = np.bincount(size, minlength=n + 1)[size]
    z = x.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # the endpoints take -1/n and 1/n
        weights = np.where(z > 0, 1 / size[:, None], -1 / (n - size[:, None]))
    return np.asarray(r, np.float64)[:, None] * weights / count[:, None]


def stratified_msr(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Shapley values of a game from its values on the sampled coalitions, by maximum sample reuse
    within each size: phi_i = (r(N) - r(empty)) / n + sum over sizes s of the mean over the
    table's coalitions S of size s of r(S) (1[i in S] / s - 1[i not in S] / (n - s)), unbiased
    where each size's coalitions are a uniform sample of that size (every sampler here draws so).
    A size without coalitions adds nothing. With complement pairs at equal counts per size (the
    leverage design) a constant r adds exactly 0. The values sum to r(N) - r(empty)."""
    return msr_terms(x, r).sum(0)


def ratio_msr(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Shapley values of a game from its values on the sampled coalitions, stratified by player and
    size as SVARM (Kolpaczki et al. 2024) does: phi_i = (1/n) sum over sizes s of [the mean of r over
    the table's coalitions of size s that hold i] - [the mean over those of size s that do not]
    (r(N) and r(empty) for the strata only they form). Unlike `stratified_msr`'s Horvitz-Thompson
    weights, each stratum is divided by the number of its coalitions the table actually holds (a
    ratio, Hajek, estimate): a residual whose level varies from size to size adds nothing, where
    the Horvitz-Thompson weights turn the chance count of i's coalitions into noise. A stratum the
    table holds no coalition of adds nothing. Consistent rather than unbiased; the values are then
    shifted equally (an exact, uniform shift, as `anchor_endpoints`) to sum to r(N) - r(empty), as
    `stratified_msr`'s do. As `attribute`'s residual correction it cut the benchmark's errors on
    the voting game at 50n (0.315 to 0.297) and the Fréchet game at 5n-20n (by a fifth to a
    quarter) and moved the other rows by 0.002 or less, but for tanh at 5n (0.224 to 0.240)
    (docs/estimators-benchmark.md)."""
    n = x.shape[1]

    def within(z, rs, s):
        held, missed = z.sum(0), len(rs) - z.sum(0)
        level = rs.mean()  # a stratum with no coalition: the size's mean, so it adds 0
        inside = np.where(held > 0, rs @ z / np.maximum(held, 1), level)
        outside = np.where(missed > 0, rs @ (1 - z) / np.maximum(missed, 1), level)
        return (inside - outside) / n

    values = _size_strata(x, r, within)
    v_empty, v_grand = measured_endpoints(x, r)  # an endpoint the table lacks adds 0, as above
    total = np.nan_to_num(v_grand) - np.nan_to_num(v_empty)
    return values + (total - values.sum()) / n


def stratified_variance(t: np.ndarray, unit: np.ndarray, stratum: np.ndarray) -> np.ndarray:
    """Variance of t.sum(0) where the rows come in units (summed first) drawn at random within
    each stratum: the units' sample variance times their number, per stratum. `t`: rows, or rows x
    columns (a variance per column). A stratum of one unit adds nothing."""
    t = np.asarray(t, np.float64)
    ids, unit_of_row = np.unique(unit, return_inverse=True)
    sums = np.zeros((len(ids),) + t.shape[1:])
    np.add.at(sums, unit_of_row, t)
    unit_stratum = np.zeros(len(ids), dtype=np.int64)
    unit_stratum[unit_of_row] = stratum
    total = np.zeros(t.shape[1:])
    for s in np.unique(unit_stratum):
        per_unit = sums[unit_stratum == s]
        if len(per_unit) > 1:
            total = total + len(per_unit) * np.var(per_unit, axis=0, ddof=1)
    return total


def ratio_msr_se(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The standard error of `ratio_msr(x, r)` per player, the coalitions between the endpoints
    being the random part: each is a uniform draw within its size (a coalition and its complement,
    where both are there, one draw of the stratum min(s, n - s), as the samplers draw them). The
    linearised (Hajek) variance: each coalition's residual less the mean of its player-and-size
    cell, times its weight in the estimate (1 / (n m) for the m coalitions of its size holding the
    player, minus that for those without), summed per unit, with the units' variance per stratum.
    A cell of m coalitions is scaled by sqrt(m / (m - 1)) for the degree of freedom its mean takes;
    a cell of one is centred on its size's mean instead, so it adds its spread, not zero. A stratum
    is scaled by the share of its coalitions the table lacks (the draw is without replacement: a
    size held whole varies with the draw no more; the utilities' own noise is the bootstrap's)."""
    n = x.shape[1]
    r = np.asarray(r, np.float64)
    size = x.sum(1).astype(int)
    inner = np.flatnonzero((size > 0) & (size < n))
    terms = np.zeros((len(inner), n))
    for s in np.unique(size[inner]):
        rows = size[inner] == s
        z = x[inner[rows]].astype(np.float64)
        rs = r[inner[rows]]
        held, missed = z.sum(0), len(rs) - z.sum(0)
        in_mean = np.where(held > 0, rs @ z / np.maximum(held, 1), rs.mean())
        out_mean = np.where(missed > 0, rs @ (1 - z) / np.maximum(missed, 1), rs.mean())
        count = np.where(z > 0, held, missed)
        centre = np.where(z > 0, in_mean, out_mean)
        centre = np.where(count > 1, centre, rs.mean())
        scale = np.sqrt(np.where(count > 1, count / np.maximum(count - 1, 1), 1.0))
        weight = np.where(z > 0, 1.0, -1.0) / (n * count)
        terms[rows] = weight * (rs[:, None] - centre) * scale
    unit = complement_units(x, inner)[inner]
    stratum = np.minimum(size[inner], n - size[inner])
    held = np.bincount(stratum, minlength=n // 2 + 1)  # rows of sizes s and n - s
    possible = np.array(
        [float(min(math.comb(n, s), 10**300)) * (1 if 2 * s == n else 2) for s in range(n // 2 + 1)]
    )
    terms *= np.sqrt(np.clip(1 - held / possible, 0, 1))[stratum, None]
    variance = stratified_variance(terms, unit, stratum)
    # A few large residuals make each player's own estimate erratic (its cells may miss them in
    # this draw and hold them in the next): no player's is taken below the players' mean.
    return np.sqrt(np.maximum(variance, variance.mean()))
