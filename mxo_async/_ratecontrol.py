"""Rate estimation and the CUBIC rate curve behind the adaptive throttle.

After botocore's ``RateClocker`` and ``CubicCalculator`` (``botocore/retries/throttling.py``,
Apache-2.0), and RFC 8312.
"""

from __future__ import annotations

import math

__all__ = ["BETA", "PROBE_SECONDS", "Cubic", "PushbackGate", "PushbackMeter", "RateMeter", "Undo"]

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

    def restore(self, rate: float, now: float) -> None:
        """Take back the last cut: the curve grows again from ``rate``, as if at its plateau."""
        self._w_max, self._k, self._last_fail = rate, 0.0, now


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


# A probe lasts at least this long (and ``size`` responses), and the rates it compares with are
# counted over as long before the cut: a server counting requests per window (a second,
# typically) answers 429 until its window rolls over, whatever the rate, so its capacity shows
# only over whole windows.
PROBE_SECONDS = 2.0
_PROBE_BUCKET = PROBE_SECONDS / 2  # responses are counted in buckets this wide
# Below this accepted share (before or during a probe) the server is over its capacity or down:
# the probe concludes nothing and the cut stands.
_PROBE_MIN_ACCEPTED = 0.25
_PROBE_MARGIN = 0.02  # slack on "the same accepted share", besides two standard errors
# A probe concludes only when the sending rate fell at least this much: else it tells nothing.
_PROBE_MIN_FALL = 0.9
# Weight of the goodput ratio's standard error in favour of "a capacity": half of one, since the
# accepted share has already been found unchanged (which a capacity would not leave it).
_NOISE_WEIGHT = 0.5
# A probe also waits for this many acceptances (for at most _PROBE_MAX_SECONDS): at a few
# requests a second, PROBE_SECONDS of counts are mostly noise.
_PROBE_MIN_ACCEPTANCES = 100
_PROBE_MAX_SECONDS = 5.0
_AVERAGE_SMOOTHING = 0.2  # weight of the newest window in the average pushback share
# What a cut took, for :meth:`PushbackGate.record` to hand back: the throttle's concurrency limit
# and adaptive rate (None: the rate limiter was off) before it.
Undo = tuple[int, float | None]


class PushbackGate:
    """Decides when overloads are a capacity signal, and takes back cuts that were not.

    Against a capacity limit, cutting the sending rate lowers the share of overloads and leaves
    the accepted rate (goodput) about where it was; against pushback that does not depend on the
    rate (injected faults, a flaky backend refusing a fixed share) the share stays and the goodput
    falls with the rate. So:

    * The share of overloads is tracked over the last ``size`` responses (a ring) and as an
      average over consecutive windows of ``size`` responses; responses and overloads are also
      counted per :data:`PROBE_SECONDS` / 2.
    * A cut needs the ring's share to reach ``baseline + threshold``; ``baseline`` is the
      rate-independent share found so far (0 at first). Once it is above 0 the average must reach
      it too, so the noise of a 64-response ring cannot trigger cuts in a steady storm.
    * A cut is probed, unless the pushback before it was heavy (most answers overloads: a server
      over its capacity or down) or came in a burst (the :data:`PROBE_SECONDS` before the cut had
      far less of it than the ring: a window running out, not faults spread evenly over time).
      The probe counts the responses to requests sent after the cut (``stale`` ones, in flight at
      the cut, are left out) for at least :data:`PROBE_SECONDS` and ``size`` responses. No cut is
      taken during a probe, and the throttle does not regrow its rate.
    * The verdict: when the accepted share is the same as before the cut, the rate fell, and the
      goodput fell with it (by more than the geometric mean of "not at all" and "as much",
      compared with the time before the storm's first probed cut), the pushback does not follow
      the rate. :meth:`record` then hands back what the throttle had before the storm (the
      ``undo`` value of the first cut since the average share was last below half the threshold:
      the storm's earlier cuts were no better founded) and that share becomes the baseline.
      Otherwise the cut stands.
    * The baseline follows the average down (never up), and a probe that finds the pushback
      falling with the rate lowers it to the share left after the cut, so once such faults stop,
      or a capacity shows under them, cuts follow the capacity as before.
    """

    __slots__ = (
        "_average",
        "_baseline",
        "_before",
        "_bucket_count",
        "_bucket_end",
        "_bucket_overloads",
        "_earlier",
        "_meter",
        "_probe_accepted",
        "_probe_count",
        "_probe_start",
        "_probing",
        "_size",
        "_storm_before",
        "_threshold",
        "_undo",
        "_verified",
        "_window_count",
        "_window_overloads",
    )

    def __init__(self, threshold: float, size: int = 64) -> None:
        self._threshold = threshold
        # threshold 0 (every overload cuts): one response is a full window, and no probe runs.
        self._size = size if threshold > 0 else 1
        self._meter = PushbackMeter(self._size)
        self._average = -1.0  # no window yet
        self._baseline = self._verified = 0.0
        self._window_count = self._window_overloads = 0
        # Responses and overloads of the current bucket, and (responses, overloads) of the two
        # before it, None until measured.
        self._bucket_count = self._bucket_overloads = 0
        self._earlier: tuple[tuple[int, int] | None, tuple[int, int] | None] = (None, None)
        self._bucket_end = -math.inf
        self._probing = False
        self._before = (0, 0)  # responses and acceptances in the two buckets before the cut
        self._storm_before: tuple[int, int] | None = None  # the same, before the storm's first
        self._probe_start = 0.0
        self._probe_count = self._probe_accepted = 0
        self._undo: Undo | None = None

    @property
    def probing(self) -> bool:
        """True while a cut is being probed."""
        return self._probing

    @property
    def baseline(self) -> float:
        """The share of overloads found not to depend on the sending rate."""
        return self._baseline

    def record(self, overloaded: bool, stale: bool, now: float) -> Undo | None:
        """Count one response; when a probe finds the storm's cuts useless, return what the
        throttle had before the storm."""
        self._meter.record(overloaded)
        if now >= self._bucket_end:
            self._roll(now)
        self._bucket_count += 1
        self._window_count += 1
        if overloaded:
            self._bucket_overloads += 1
            self._window_overloads += 1
        if self._window_count == self._size:
            self._close_window()
        if not self._probing or stale:
            return None
        self._probe_count += 1
        self._probe_accepted += not overloaded
        span = now - self._probe_start
        if self._probe_count < self._size or span < PROBE_SECONDS:
            return None
        if self._probe_accepted < _PROBE_MIN_ACCEPTANCES and span < _PROBE_MAX_SECONDS:
            return None
        return self._verdict(span)

    def _roll(self, now: float) -> None:
        if self._bucket_end != -math.inf:
            ended = (self._bucket_count, self._bucket_overloads)
            skipped = (now - self._bucket_end) // _PROBE_BUCKET  # buckets without responses
            if skipped == 0:
                self._earlier = (self._earlier[1], ended)
            else:
                self._earlier = (ended, (0, 0)) if skipped == 1 else ((0, 0), (0, 0))
        self._bucket_count = self._bucket_overloads = 0
        self._bucket_end = (math.floor(now / _PROBE_BUCKET) + 1) * _PROBE_BUCKET

    def _close_window(self) -> None:
        share = self._window_overloads / self._size
        self._window_count = self._window_overloads = 0
        if self._average < 0:
            self._average = share
        else:
            self._average += _AVERAGE_SMOOTHING * (share - self._average)
        if self._baseline > 0:
            self._baseline = min(self._verified, self._average)
        if self._average < self._threshold / 2:
            self._undo = self._storm_before = None  # calm: the next cut starts a new storm

    def _verdict(self, span: float) -> Undo | None:
        self._probing = False
        count, accepted = self._probe_count, self._probe_accepted
        share = accepted / count
        if share < _PROBE_MIN_ACCEPTED:
            return None
        if not _same_share(self._before, (count, accepted)):
            # The pushback moved: it fell with the rate (a capacity: what is left of it is the
            # most that can be rate-independent), or rose though the rate fell (the capacity
            # fell, or a window ran out). Either way the cut stands.
            if share > self._before[1] / self._before[0]:
                self._lower_baseline(1 - share)
            return None
        # Compared with the time before the storm's first probed cut: over several cuts the rate
        # has fallen further, which sharpens the comparison.
        count_before, accepted_before = self._storm_before or self._before
        rate_ratio = count / span / (count_before / PROBE_SECONDS)
        if rate_ratio > _PROBE_MIN_FALL:
            return None
        # Acceptances are about Poisson: the standard error of the ratio of the goodputs.
        noise = math.sqrt(1 / accepted + 1 / accepted_before)
        goodput_ratio = accepted / span / (accepted_before / PROBE_SECONDS)
        if goodput_ratio + _NOISE_WEIGHT * noise >= math.sqrt(rate_ratio):
            self._lower_baseline(1 - share)  # the goodput held while the rate fell: a capacity
            return None
        self._baseline = self._verified = 1 - share
        undo, self._undo, self._storm_before = self._undo, None, None
        return undo

    def _lower_baseline(self, share: float) -> None:
        self._verified = min(self._verified, share)
        self._baseline = min(self._baseline, share)

    def pressure(self) -> float | None:
        """The overload share when it calls for a cut, else None (also while probing)."""
        if self._probing:
            return None
        share = self._meter.share()
        if self._baseline > 0:
            share = min(share, self._average)
        if share > 0 and share >= self._baseline + self._threshold:
            return share
        return None

    def reset(self) -> None:
        """Forget the last responses without probing (a cut made elsewhere: a fleet's rate)."""
        self._meter.reset()

    def cut(self, pressure: float, now: float, undo: Undo) -> None:
        """A cut was taken at ``pressure``: probe it; ``undo`` is what the throttle had before."""
        self._meter.reset()
        if self._undo is None:
            self._undo = undo
        first, second = self._earlier
        if self._threshold <= 0 or pressure > 1.0 - _PROBE_MIN_ACCEPTED or not first or not second:
            return
        count, overloads = first[0] + second[0], first[1] + second[1]
        if count == overloads or overloads < count * self._threshold / 2:
            return  # no goodput to compare with, or a burst (class docstring)
        self._probing = True
        self._before = before = (count, count - overloads)
        storm = self._storm_before
        if storm is None or not _same_share(storm, before):
            self._storm_before = before  # a new storm, or not the same one any more
        self._probe_start = now
        self._probe_count = self._probe_accepted = 0


def _same_share(first: tuple[int, int], second: tuple[int, int]) -> bool:
    """True when two (responses, acceptances) counts show the same accepted share, within two
    standard errors and :data:`_PROBE_MARGIN`."""
    a, b = first[1] / first[0], second[1] / second[0]
    spread = math.sqrt(a * (1 - a) / first[0] + b * (1 - b) / second[0])
    return abs(a - b) <= 2 * spread + _PROBE_MARGIN
