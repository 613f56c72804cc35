"""Rate estimation and the CUBIC rate curve behind the adaptive throttle.

After botocore's ``RateClocker`` and ``CubicCalculator`` (``botocore/retries/throttling.py``,
Apache-2.0), and RFC 8312.
"""

from __future__ import annotations

import math

__all__ = ["BETA", "Cubic", "PushbackMeter", "RateMeter"]

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

    def overloaded(self, rate: float, now: float, factor: float = BETA) -> float:
        """Remember ``rate`` as the new ceiling and return it reduced by ``factor``."""
        self._w_max = rate
        self._k = (rate * (1 - factor) / _SCALE) ** (1 / 3)
        self._last_fail = now
        return rate * factor

    def succeeded(self, now: float) -> float:
        return _SCALE * (now - self._last_fail - self._k) ** 3 + self._w_max


class PushbackMeter:
    """Share of overloads among the last ``size`` responses.

    A server over its capacity pushes back on a large share of requests; a few scattered 429s
    (or injected faults) do not. Counting responses rather than seconds makes the estimate equally
    steady at 10 and at 10,000 requests per second.
    """

    __slots__ = ("_count", "_next", "_overloads", "_ring")

    def __init__(self, size: int = 64) -> None:
        self._ring = bytearray(size)
        self._next = 0
        self._count = 0
        self._overloads = 0

    def record(self, overloaded: bool) -> None:
        """Count one response."""
        if not overloaded and not self._overloads:
            # The ring holds no overload, so where the next slot is does not matter: only the
            # count changes, and only until the ring is full. (The common case, kept cheap.)
            if self._count < len(self._ring):
                self._count += 1
            return
        ring, index = self._ring, self._next
        self._overloads += overloaded - ring[index]
        ring[index] = overloaded
        self._next = (index + 1) % len(ring)
        if self._count < len(ring):
            self._count += 1

    def share(self) -> float:
        """The overload share; 0 until the ring is full (too few responses say nothing)."""
        return self._overloads / self._count if self._count == len(self._ring) else 0.0

    def reset(self) -> None:
        """Forget everything (after a cut, only what follows it counts)."""
        self._ring = bytearray(len(self._ring))
        self._next = self._count = self._overloads = 0
