"""The report's statistics on cases checked by hand: a method that changed nothing, one clearly
better, two that cannot be told apart, and what the verdict says of each."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from samexp.report import stats, table
from samexp.report.collect import ZERO_SHOT

RNG = np.random.default_rng(0)
N = 30
BASE = RNG.uniform(0.2, 0.6, N)


def figures(methods: dict[str, list[np.ndarray]]) -> pd.DataFrame:
    """The long table collect.figures builds: methods[name][seed] = IoU per instance."""
    rows = [(m, s, f"img{i}#0", "object", float(v), float(v)) for m, seeds in methods.items()
            for s, values in enumerate(seeds) for i, v in enumerate(values)]  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "seed", "instance", "category", "iou", "dice"])


def costs(methods) -> pd.DataFrame:
    return pd.DataFrame({"trainable": dict.fromkeys(methods, 10.0)})


def test_the_mean_of_identical_values_has_a_zero_width_interval_and_one_value_none():
    assert stats.mean_ci([0.5] * 5) == stats.Estimate(0.5, 0.5, 0.5)
    one = stats.mean_ci([0.5])
    assert one.mean == 0.5 and math.isnan(one.lo) and math.isnan(one.hi)


def test_the_interval_covers_the_mean_and_shrinks_with_more_instances():
    few, many = stats.mean_ci(BASE[:8]), stats.mean_ci(np.tile(BASE, 4))
    assert few.lo < few.mean < few.hi and many.lo < many.mean < many.hi
    assert many.hi - many.lo < few.hi - few.lo


def test_a_method_identical_to_zero_shot_differs_by_zero_with_p_one():
    rows = table.rows(figures({ZERO_SHOT: [BASE, BASE], "same": [BASE, BASE]}), costs([ZERO_SHOT, "same"]))  # fmt: skip
    same = next(r for r in rows if r.method == "same")
    assert (same.vs_zero_shot.mean, same.vs_zero_shot.lo, same.vs_zero_shot.hi) == (0.0, 0.0, 0.0)
    assert same.vs_zero_shot.p == 1.0 and same.vs_zero_shot.n == N


def test_a_clearly_better_method_has_an_interval_above_zero_shot_and_a_small_p():
    better = [BASE + 0.2 + RNG.normal(0, 0.02, N) for _ in range(3)]
    rows = table.rows(figures({ZERO_SHOT: [BASE] * 3, "lora-r4": better}), costs([ZERO_SHOT, "lora-r4"]))  # fmt: skip
    best = rows[0]
    assert best.method == "lora-r4" and best.vs_best is None
    assert best.iou.lo > rows[1].iou.hi  # the intervals do not even overlap
    assert best.vs_zero_shot.lo > 0.15 and best.vs_zero_shot.p < 1e-5
    said = table.verdict(rows)
    assert said.startswith(f"lora-r4 is best (IoU {best.iou.mean:.3f} [")
    assert "zero-shot is worse" in said and "changes IoU by +0.2" in said


def test_two_methods_within_noise_of_each_other_cannot_be_told_apart():
    a = [BASE + 0.2 + RNG.normal(0, 0.05, N) for _ in range(3)]
    b = [BASE + 0.2 + RNG.normal(0, 0.05, N) for _ in range(3)]
    rows = table.rows(figures({ZERO_SHOT: [BASE] * 3, "lora-r4": a, "decoder": b}),
                      costs([ZERO_SHOT, "lora-r4", "decoder"]))  # fmt: skip
    second = rows[1]
    assert second.method in {"lora-r4", "decoder"} and second.vs_best.p >= stats.ALPHA
    assert f"{second.method} (p = {second.vs_best.p:.3g}) cannot be told apart from it" in table.verdict(rows)  # fmt: skip


def test_differences_pair_by_instance_and_seed_and_average_the_seeds():
    index = pd.MultiIndex.from_tuples([("a", 0), ("a", 1), ("b", 0), ("b", 1)], names=["instance", "seed"])  # fmt: skip
    a = pd.Series([0.5, 0.7, 0.2, 0.2], index=index)
    b = pd.Series([0.4, 0.4, 0.2, 0.3], index=index)
    d = stats.paired(a, b)
    assert d.n == 2 and d.mean == pytest.approx(((0.1 + 0.3) / 2 + (0.0 - 0.1) / 2) / 2)
    only_seed0 = stats.paired(a, b[b.index.get_level_values("seed") == 0])
    assert only_seed0.mean == pytest.approx((0.1 + 0.0) / 2)


def test_signed_rank_p_of_nothing_is_undefined_and_of_zeros_is_one():
    assert math.isnan(stats.signed_rank_p([]))
    assert stats.signed_rank_p([0.0, 0.0, 0.0]) == 1.0
    assert stats.signed_rank_p([0.1] * 10) < 0.01


def test_when_nothing_beats_zero_shot_the_verdict_says_zero_shot_is_best():
    worse = [BASE - 0.1 + RNG.normal(0, 0.01, N)]
    rows = table.rows(figures({ZERO_SHOT: [BASE], "full": worse}), costs([ZERO_SHOT, "full"]))
    assert rows[0].method == ZERO_SHOT
    assert table.verdict(rows).startswith("zero-shot is best") and "full is worse" in table.verdict(rows)  # fmt: skip


def test_with_too_few_test_instances_the_verdict_says_no_difference_can_be_significant():
    """Two test images (the ring data's split): the signed-rank test cannot go below p = 0.5,
    however much better a method is, and the verdict says so instead of implying a tie."""
    two = BASE[:2]
    rows = table.rows(figures({ZERO_SHOT: [two] * 3, "full": [two + 0.3] * 3}),
                      costs([ZERO_SHOT, "full"]))  # fmt: skip
    assert rows[0].vs_zero_shot.p == pytest.approx(0.5) == stats.smallest_p(2)
    said = table.verdict(rows)
    assert "With 2 test instances no paired test can reach p < 0.05" in said
    assert "smallest possible p is 0.5" in said
    big = table.rows(figures({ZERO_SHOT: [BASE] * 3, "full": [BASE + 0.3] * 3}),
                     costs([ZERO_SHOT, "full"]))  # fmt: skip
    assert "no paired test can reach" not in table.verdict(big)
