"""The live monitor's text: the time left in words, not a clock."""

from __future__ import annotations

import pytest

from workbench.components.monitor import eta_text


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(8266, "about 2 h 18 min"), (7200, "about 2 h"), (2460, "about 41 min"), (41, "about 40 s"), (2, "about 5 s")],
)
def test_the_time_left_reads_as_hours_and_minutes_not_a_clock(seconds: float, shown: str) -> None:
    text = eta_text({"epoch": 12, "max_epochs": 60, "eta_seconds": seconds})
    assert text == f"epoch 12 / 60, at most {shown} left"


def test_no_time_left_is_shown_before_it_is_known() -> None:
    assert eta_text({"epoch": 0, "max_epochs": 60}) == "epoch 0 / 60"
