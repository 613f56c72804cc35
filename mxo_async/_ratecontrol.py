"""Rate estimation and the CUBIC rate curve behind the adaptive throttle.

After botocore's ``RateClocker`` and ``CubicCalculator`` (``botocore/retries/throttling.py``,
Apache-2.0), and RFC 8312.
"""

from __future__ import annotations

import math

__all__ = ["BETA", "Cubic", "RateMeter"]

BETA = 0.7  # multiplicative decrease of the sending rate on overload
_SCALE = 0.4  # CUBIC scale constant C
_METER_BUCKET = 0.5  # s; the sending rate is measured over buckets this wide...
_METER_SMOOTHING = 0.8  # ...and smoothed: weight of the newest bucket


class RateMeter:
    """Smoothed rate of events over fixed-width time buckets (after botocore's RateClocker)."""

    __slots__ = ("_count", "_first", "_index", "_next", "_rate", "_warm")

    def __init__(self) -> None:
        self._index = 0  # current bucket number: floor(time / _METER_BUCKET)
        self._next = -math.inf  # when the current bucket ends; -inf until the first event
        self._first = 0.0
        self._count = 0
        self._rate = 0.0
        self._warm = False

    def record(self, now: float) -> None:
        """Count one event at ``now``; cheap unless a bucket boundary was crossed."""
        if now >= self._next:
            self._roll(now)
        self._count += 1

    def _roll(self, now: float) -> None:
        index = math.floor(now / _METER_BUCKET)
        if self._next == -math.inf:
            self._first = now
        else:
            index = max(index, self._index + 1)
            current = self._count / ((index - self._index) * _METER_BUCKET)
            self._rate = (
                _METER_SMOOTHING * current + (1 - _METER_SMOOTHING) * self._rate
                if self._warm
                else current
            )
            self._warm, self._count = True, 0
        self._index, self._next = index, (index + 1) * _METER_BUCKET

    def rate(self, now: float) -> float:
        if self._warm or self._count == 0:
            return self._rate
        # No full bucket yet: estimate from what we saw, so a 429 in the first half second does
        # not cut the rate to the floor (botocore's measured rate starts at 0).
        return self._count / max(now - self._first, _METER_BUCKET / 10)


class Cubic:
    """CUBIC rate curve: ``rate(t) = C·(t - t_fail - K)³ + W_max`` (after botocore's calculator)."""

    __slots__ = ("_k", "_last_fail", "_w_max")

    def __init__(self, now: float) -> None:
        self._w_max = 0.0
        self._k = 0.0
        self._last_fail = now

    def overloaded(self, rate: float, now: float) -> float:
        """Remember ``rate`` as the new ceiling and return the reduced rate."""
        self._w_max = rate
        self._k = (rate * (1 - BETA) / _SCALE) ** (1 / 3)
        self._last_fail = now
        return rate * BETA

    def succeeded(self, now: float) -> float:
        return _SCALE * (now - self._last_fail - self._k) ** 3 + self._w_max
