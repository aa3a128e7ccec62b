"""A Grad-CAM caption's probability and threshold are shown to as many decimals as tell them
apart, so a "false negative" never reads as a probability equal to its threshold."""

from __future__ import annotations

from pipeline.selection.figures import _apart


def test_three_decimals_unless_they_would_read_alike():
    assert _apart(0.25, 0.5) == ("0.250", "0.500")
    assert _apart(0.53101, 0.53149) == ("0.5310", "0.5315")
    value, threshold = _apart(0.5310001, 0.5310004)
    assert float(value) < float(threshold)
