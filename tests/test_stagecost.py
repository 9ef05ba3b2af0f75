"""Per-stage CPU accounting: innermost stage charged, stages add up, off by default."""

from __future__ import annotations

import time

from sisafs.stagecost import OTHER, measuring, stage


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_nested_stages_charge_the_innermost_and_add_up() -> None:
    start = time.process_time()
    with measuring() as costs:
        _spin(0.02)
        with stage("outer"):
            _spin(0.02)
            with stage("inner"):
                _spin(0.04)
            with stage("inner"):
                _spin(0.01)
    total = time.process_time() - start
    assert set(costs) == {OTHER, "outer", "inner"}
    assert costs["inner"] >= 0.05 and costs["outer"] >= 0.02 and costs[OTHER] >= 0.02
    assert costs["outer"] < 0.05  # the inner stages were not charged to it
    assert abs(sum(costs.values()) - total) < 0.01


def test_stages_outside_measuring_cost_nothing_and_record_nothing() -> None:
    with stage("x"):
        pass
    with measuring() as costs:
        pass
    assert set(costs) <= {OTHER}
