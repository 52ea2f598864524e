"""The harness itself: a probe that saturates ingestd so /metrics times out is a finding (the
probe did not keep up), never a crash of the run. Fast; runs in smoke mode too."""

from __future__ import annotations

import pytest

from .harness import Probe, highest_rate, settle


class Readings:
    """/metrics answers in turn; None is a read that times out. Then timeouts for ever."""

    def __init__(self, answers: list[dict[str, float] | None]) -> None:
        self.answers = answers

    def __call__(self) -> dict[str, float]:
        answer = self.answers.pop(0) if self.answers else None
        if answer is None:
            raise TimeoutError("timed out")  # what urlopen raises on a busy event loop
        return answer


def test_a_metrics_timeout_is_no_progress_not_a_crash() -> None:
    half = {"ingestd_points_written_total": 50.0, "ingestd_buffer_lines": 10.0}
    metrics, unanswered = settle(Readings([half, None, None]), published=100, quiet_s=0.3)
    assert metrics == half  # the last good reading stands
    assert unanswered >= 2


def test_a_probe_with_unanswered_metrics_does_not_keep_up() -> None:
    probe = Probe(qos=0, offered_rate=100, published=100, received=100, stored=100)
    assert probe.keeps_up(grace_s=1, seconds=1)
    probe.metrics_unanswered = 1
    assert not probe.keeps_up(grace_s=1, seconds=1)


def test_settling_ends_when_everything_is_stored() -> None:
    done = {
        "ingestd_points_written_total": 90.0,
        'ingestd_messages_dropped_total{reason="x"}': 10.0,
    }
    metrics, unanswered = settle(lambda: {**done, "ingestd_buffer_lines": 0.0}, 100, quiet_s=5)
    assert unanswered == 0 and metrics["ingestd_points_written_total"] == 90


@pytest.mark.parametrize(
    ("start", "ceiling", "found", "tried"),
    [
        # up from 5,000: 7,500, 11,250 pass, 16,875 fails; bisection 14,100 ok, 15,500 fails
        (5_000, 15_000, 14_100, [5000, 7500, 11250, 16875, 14100, 15500]),
        # down from 40,000 (a reference slower than ingestd): 26,700 fails, 17,800 passes; 22,200 fails, 20,000 passes
        (40_000, 20_000, 20_000, [40000, 26700, 17800, 22200, 20000]),
    ],
)
def test_highest_rate_brackets_from_its_start_either_way(
    start: float, ceiling: float, found: float, tried: list[float]
) -> None:
    rates: list[float] = []

    def passes(rate: float) -> bool:
        rates.append(rate)
        return rate <= ceiling

    assert highest_rate(passes, start, smoke=False) == found
    assert [round(r) for r in rates] == tried


def test_highest_rate_is_zero_when_nothing_passes() -> None:
    assert highest_rate(lambda _rate: False, 5_000, smoke=False) == 0.0
