"""readiness.LastAnswer with values (a fake clock): an answered check decides at once; one
that only timed out keeps the last good answer for the grace, then reports not ready."""

from __future__ import annotations

from roomgate_gateway.readiness import LastAnswer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_timeout_before_any_good_answer_is_not_ready() -> None:
    assert LastAnswer(grace=10, clock=Clock()).timed_out() is False


def test_a_timeout_keeps_the_last_good_answer_for_the_grace() -> None:
    clock = Clock()
    answers = LastAnswer(grace=10, clock=clock)
    assert answers.answered(True) is True
    clock.now += 10
    assert answers.timed_out() is True  # the grace's last instant still counts
    clock.now += 0.001
    assert answers.timed_out() is False


def test_a_good_answer_restarts_the_grace() -> None:
    clock = Clock()
    answers = LastAnswer(grace=10, clock=clock)
    answers.answered(True)
    clock.now += 9
    answers.answered(True)
    clock.now += 9
    assert answers.timed_out() is True


def test_a_bad_answer_decides_at_once_and_forgets_the_good_one() -> None:
    clock = Clock()
    answers = LastAnswer(grace=10, clock=clock)
    answers.answered(True)
    assert answers.answered(False) is False
    assert answers.timed_out() is False  # a refusal is not outlived by a later timeout


def test_no_grace_means_a_timeout_is_never_ready() -> None:
    clock = Clock()
    answers = LastAnswer(grace=0, clock=clock)
    answers.answered(True)
    clock.now += 0.001
    assert answers.timed_out() is False
