"""A payout table: a budget split among the contributors by their Shapley values.

Each metric paid for gets a part of the budget in proportion to its weight, and splits that
part among the contributors by their values, turned so that helping the model is paid: a
"lower is better" metric's values are negated first. How contributors who hurt the metric are
treated is the `negative` policy:

- `clip` (default): they get 0; the part goes to the others in proportion to their (positive)
  values.
- `shift`: everyone in proportion to their value minus the least value: the most harmful gets
  0, a harmless contributor still gets something, and the order is that of the values.
- `net`: in proportion to the values themselves; a harmful contributor's payout is negative (a
  charge). The values then sum to what the whole coalition gained (efficiency), so the part is
  split only when that sum is positive.

Where the policy leaves nothing to split in proportion to (no contributor helps the metric under
`clip`, all values equal under `shift`), the metric's part is split equally: the contributors are
then indistinguishable to it, and the table says so (`equal_split` in its metadata). Under `net`
a total that is not positive is refused: a proportional split of it would pay the harmful.

The interval of each payout carries the values' uncertainty through: each value is drawn from a
two-piece normal whose lower and upper halves have the spreads of a normal with the attribution
table's interval ends at the level's quantiles (so a skewed interval stays skewed), the payouts recomputed per draw, and their
percentile interval taken at the tables' level. The draws are independent across contributors
(the tables keep no bootstrap replicates, so their correlation is not known): a wider value
interval gives a wider payout interval. Every draw's payouts sum to the budget, like the point
payout's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..workflow.io import read_table_metadata

POLICIES = ("clip", "shift", "net")
DIRECTIONS = ("higher", "lower")
DEFAULT_DRAWS = 2000
DEFAULT_LEVEL = 0.9
COLUMNS = ["contributor", "payout", "payout_low", "payout_high", "share", "rank"]


class PayoutError(ValueError):
    """Bad input to the payout, naming the file, column or value at fault."""


def parse_metric(spec: str) -> tuple[str, float | None, str | None]:
    """`NAME[:WEIGHT[:DIRECTION]]` -> (name, weight or None, direction or None)."""
    parts = spec.split(":")
    if not parts[0] or len(parts) > 3:
        raise PayoutError(f"--metric {spec!r}: expected NAME[:WEIGHT[:higher|lower]]")
    weight = direction = None
    if len(parts) > 1 and parts[1] != "":
        try:
            weight = float(parts[1])
        except ValueError:
            raise PayoutError(f"--metric {spec!r}: weight {parts[1]!r} is not a number") from None
    if len(parts) > 2:
        direction = parts[2]
    return parts[0], weight, direction


def read_attribution(path: str) -> tuple[str, pd.DataFrame, dict]:
    """(metric name, table, metadata) of an attribution table: the name from its metadata (the
    workflow's tables), else the file's stem (those of `surrogateshap attribute`)."""
    try:
        table = pd.read_parquet(path)
        meta = read_table_metadata(path)
    except FileNotFoundError:
        raise PayoutError(f"attribution table not found: {path}") from None
    except Exception as error:  # not Parquet, truncated: name the file
        raise PayoutError(f"{path}: cannot read the attribution table: {error}") from None
    missing = [c for c in ("contributor", "shapley") if c not in table.columns]
    if missing:
        raise PayoutError(
            f"{path}: no {' or '.join(map(repr, missing))} column (columns: {list(table.columns)})"
        )
    metric = meta.get("metric")
    name = metric.get("name") if isinstance(metric, dict) else None
    return name or Path(path).name.split(".")[0], table, meta


def _direction(name: str, given: str | None, meta: dict, path: str) -> str:
    """The metric's direction: as given, else the table's metadata, else the package's metric."""
    from ..proxy.metrics import METRICS

    metric = meta.get("metric")
    direction = (
        given
        or (metric.get("direction") if isinstance(metric, dict) else None)
        or (METRICS[name].direction if name in METRICS else None)
    )
    if direction is None:
        raise PayoutError(
            f"{path}: metric {name!r} has no known direction; give it as "
            f"--metric {name}:WEIGHT:higher or {name}:WEIGHT:lower"
        )
    if direction not in DIRECTIONS:
        raise PayoutError(f"metric {name!r}: direction {direction!r} is not higher or lower")
    return direction


def split(values: np.ndarray, part: float, negative: str) -> tuple[np.ndarray, bool]:
    """One metric's `part` of the budget split by oriented values (last axis: contributors;
    leading axes: draws). Returns the payouts and whether any row was split equally."""
    values = np.asarray(values, dtype=np.float64)
    if negative == "clip":
        basis = np.maximum(values, 0.0)
    elif negative == "shift":
        basis = values - values.min(-1, keepdims=True)
    elif negative == "net":
        basis = values
    else:
        raise PayoutError(f"negative policy {negative!r}: expected one of {', '.join(POLICIES)}")
    total = basis.sum(-1, keepdims=True)
    if negative == "net":
        if (total <= 0).any():
            raise PayoutError(
                "negative policy net: the values sum to "
                f"{float(total.min()):.4g}, not above 0, so there is nothing to split in "
                "proportion (use clip or shift)"
            )
        return part * basis / total, False
    equal = (total <= 0)[..., 0]
    n = values.shape[-1]
    safe = np.where(total > 0, total, 1.0)
    shares = np.where(total > 0, basis / safe, 1.0 / n)
    return part * shares, bool(equal.any())


def _draw_values(table: pd.DataFrame, level: float, draws: int, rng) -> np.ndarray:
    """(draws, contributors) values from two-piece normals matching each interval's ends."""
    value = table["shapley"].to_numpy(np.float64)
    low = table["ci_low"].to_numpy(np.float64) if "ci_low" in table else np.full_like(value, np.nan)
    high = (
        table["ci_high"].to_numpy(np.float64) if "ci_high" in table else np.full_like(value, np.nan)
    )
    z = norm.ppf(0.5 + level / 2)
    # no interval: no spread (`payout` then gives none); an end on the wrong side: none that way
    below = np.nan_to_num(np.maximum(value - low, 0.0)) / z
    above = np.nan_to_num(np.maximum(high - value, 0.0)) / z
    e = np.abs(rng.standard_normal((draws, len(value))))
    upper = rng.random((draws, len(value))) < above / np.where(below + above > 0, below + above, 1)
    return value + np.where(upper, e * above, -e * below)


def payout(
    tables: dict[str, tuple[pd.DataFrame, dict]],
    budget: float,
    weights: dict[str, float] | None = None,
    directions: dict[str, str] | None = None,
    negative: str = "clip",
    draws: int = DEFAULT_DRAWS,
    level: float | None = None,
    seed: int = 0,
    sources: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The payout table and its metadata. `tables`: metric -> (attribution table, its metadata);
    `weights`: metric -> weight (None: every table, equal weights); `directions`: metric ->
    higher/lower, overriding the tables' metadata. Columns: contributor, payout (sums to `budget`),
    payout_low/payout_high (the interval at `level`, default the tables' ci_level), share
    (payout / budget), rank (1 = paid most), and one `payout_<metric>` column per metric."""
    sources = sources or {m: m for m in tables}
    if not np.isfinite(budget) or budget <= 0:
        raise PayoutError(f"budget {budget!r}: must be a number above 0")
    if negative not in POLICIES:
        raise PayoutError(f"negative policy {negative!r}: expected one of {', '.join(POLICIES)}")
    if draws < 1:
        raise PayoutError(f"draws {draws!r}: at least 1")
    weights = dict(weights) if weights else {m: 1.0 for m in tables}
    unknown = [m for m in weights if m not in tables]
    if unknown:
        raise PayoutError(
            f"metric(s) {unknown} have no attribution table (tables for: {sorted(tables)})"
        )
    for m, w in weights.items():
        if not (np.isfinite(w) and w > 0):
            raise PayoutError(f"metric {m!r}: weight {w!r} must be a number above 0")
    first = next(iter(weights))
    names = tables[first][0]["contributor"].astype(str).tolist()
    levels = set()
    for m in weights:
        table, meta = tables[m]
        if sorted(table["contributor"].astype(str)) != sorted(names):
            raise PayoutError(
                f"{sources[m]}: its contributors differ from those of {sources[first]}"
            )
        bad = ~np.isfinite(table["shapley"].to_numpy(np.float64))
        if bad.any():
            who = table["contributor"][bad].tolist()[:5]
            raise PayoutError(f"{sources[m]}: column 'shapley' is not finite for {who}")
        if meta.get("ci_level") is not None:
            levels.add(float(meta["ci_level"]))
    if level is None:
        level = levels.pop() if len(levels) == 1 else DEFAULT_LEVEL
    if not 0 < level < 1:
        raise PayoutError(f"level {level!r}: must be between 0 and 1")
    rng = np.random.default_rng(seed)
    total_weight = sum(weights.values())
    point = np.zeros(len(names))
    drawn = np.zeros((draws, len(names)))
    out = pd.DataFrame({"contributor": names})
    info = {}
    without = []  # metrics whose values have no interval: the payout's would look certain
    for m, w in weights.items():
        table, meta = tables[m]
        if not all(
            c in table and np.isfinite(table[c].to_numpy(np.float64)).all()
            for c in ("ci_low", "ci_high")
        ):
            without.append(sources[m])
        table = table.set_index(table["contributor"].astype(str)).loc[names].reset_index(drop=True)
        direction = _direction(m, (directions or {}).get(m), meta, sources[m])
        sign = 1.0 if direction == "higher" else -1.0
        part = budget * w / total_weight
        paid, equal = split(sign * table["shapley"].to_numpy(np.float64), part, negative)
        paid_draws, _ = split(sign * _draw_values(table, level, draws, rng), part, negative)
        point += paid
        drawn += paid_draws
        out[f"payout_{m}"] = paid
        info[m] = {
            "weight": w,
            "part": part,
            "direction": direction,
            "equal_split": equal,
            "source": sources[m],
        }
    # the parts add up to the budget but for rounding: put the rounding on the largest payout
    point[np.argmax(np.abs(point))] += budget - point.sum()
    low, high = np.quantile(drawn, [(1 - level) / 2, 1 - (1 - level) / 2], axis=0)
    if without:
        low = high = np.full(len(names), np.nan)
    out.insert(1, "payout", point)
    out.insert(2, "payout_low", low)
    out.insert(3, "payout_high", high)
    out.insert(4, "share", point / budget)
    order = np.argsort(-point, kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(1, len(names) + 1)
    out.insert(5, "rank", rank)
    meta = {
        "budget": budget,
        "negative": negative,
        "level": level,
        "draws": draws,
        "seed": seed,
        "metrics": info,
        "interval": (
            "no interval: no value intervals in " + ", ".join(without) if without else "drawn"
        ),
    }
    return out.sort_values("rank", kind="stable").reset_index(drop=True), meta


def payout_from_files(
    paths: list[str],
    budget: float,
    metrics: list[tuple[str, float | None, str | None]] | None = None,
    negative: str = "clip",
    draws: int = DEFAULT_DRAWS,
    level: float | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """`payout` on attribution tables read from `paths`; `metrics`: (name, weight, direction) as
    `parse_metric` gives them (weight None: 1), None or empty: every table with weight 1."""
    tables, sources = {}, {}
    for path in paths:
        name, table, meta = read_attribution(path)
        if name in tables:
            raise PayoutError(f"{path}: metric {name!r} is also in {sources[name]}")
        tables[name], sources[name] = (table, meta), path
    if not tables:
        raise PayoutError("no attribution tables given")
    weights = directions = None
    if metrics:
        weights = {name: 1.0 if w is None else w for name, w, _ in metrics}
        directions = {name: d for name, _, d in metrics if d is not None}
        for name, _, _ in metrics:
            if name not in tables:
                raise PayoutError(
                    f"metric {name!r}: none of the tables holds it (they hold: "
                    + ", ".join(f"{m} ({sources[m]})" for m in tables)
                    + ")"
                )
    return payout(tables, budget, weights, directions, negative, draws, level, seed, sources)
