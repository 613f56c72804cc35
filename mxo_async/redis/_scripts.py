"""The Lua scripts behind the fleet's shared state. Each runs atomically on one Redis node.

Every key a script touches carries the same ``{namespace}`` hash tag, so on Redis Cluster they
all live in one slot. Time is Redis's own (``TIME``): processes on several machines agree on it
without trusting each other's clocks. Replies are integers (Lua numbers are truncated to integers
on the way out), so times go out in microseconds or milliseconds and rates in milli-requests/s.
Floats are stored with ``%.6f`` (times) and ``%.9g`` (rates): Lua's default ``%.14g`` would
round a Unix time to a tenth of a millisecond.
"""

from __future__ import annotations

__all__ = ["CACHE_GRANT", "PAUSE", "READ_GRANT", "SCRIPTS", "SYNC", "UNLOCK"]

# One round trip: report outcomes, maybe cut, grow the adaptive rate, read the pause, lease permits.
#
# KEYS[1] rate state (hash), KEYS[2] pause (string with PX expiry)
# ARGV: want, limit (fleet rate, 0: none), sent, ok, pressure (> 0: a cut is asked for),
#       tau (burst tolerance, s), cooldown (s between cuts), channel (cuts are published there),
#       restore (optional; -1: nothing, 0: no adaptive rate, > 0: at least this adaptive rate)
# Reply: {granted, start_us, interval_us, pause_ms, rate_milli (0: unlimited), cut (0/1)}
#
# The rate is a GCRA: ``tat`` is the theoretical arrival time of the next permit. A lease of n
# permits reserves the slots [start, start + n/rate): the process spends them one per 1/rate
# from ``start``, so the fleet's permits are spread evenly in time, never granted as a burst.
# The adaptive part follows the throttle's (botocore's adaptive mode): a cut sets the CUBIC
# ceiling to what the fleet sent (never below what it got accepted) and drops the rate by a
# factor that deepens with the share of 429s; the rate then regrows along the CUBIC curve, capped
# at twice the fleet's measured rate, and switches off after 5 s of demand far below it. A
# ``restore`` undoes a storm's cuts: a process's probe found its pushback did not fall with the
# rate (faults, not a capacity), so the adaptive rate from before the storm comes back.
SYNC = """
local rate_key, pause_key = KEYS[1], KEYS[2]
local want, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local sent, ok, pressure = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tau, cooldown, channel = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local restore = tonumber(ARGV[9]) or -1
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', rate_key, 'tat', 'arate', 'wmax', 'k', 'fail', 'cut', 'mb', 'mc',
  'mo', 'mr', 'mor', 'slack')
local tat = tonumber(s[1]) or now
local arate, wmax, k = tonumber(s[2]), tonumber(s[3]) or 0, tonumber(s[4]) or 0
local fail, cut = tonumber(s[5]) or now, tonumber(s[6]) or 0
local mb = tonumber(s[7]) or now
local mc, mo = (tonumber(s[8]) or 0) + sent, (tonumber(s[9]) or 0) + ok
local mr, mor, slack = tonumber(s[10]), tonumber(s[11]), tonumber(s[12])

-- The fleet's sending and accepted rates over 0.5 s buckets, smoothed.
local span = now - mb
if span >= 0.5 then
  local r, okr = mc / span, mo / span
  if mr then
    mr, mor = 0.8 * r + 0.2 * mr, 0.8 * okr + 0.2 * mor
  else
    mr, mor = r, okr
  end
  mb, mc, mo = now, 0, 0
  span = 0
end
local measured, ok_rate = mr, mor
if not measured then
  measured, ok_rate = mc / math.max(span, 0.05), mo / math.max(span, 0.05)
end

local did_cut = 0
if restore >= 0 then
  if restore == 0 then
    arate, slack = nil, nil
  elseif arate and arate < restore then
    arate, wmax, k, fail, slack = restore, restore, 0, now, nil
  end
elseif pressure > 0 and now - cut >= cooldown and measured > 0 then
  local current = measured
  if arate and arate < current then current = arate end
  if ok_rate > current then current = ok_rate end
  local factor = math.max(0.1, math.min(0.7, 1 - pressure))
  wmax, k, fail, cut, slack = current, (current * (1 - factor) / 0.4) ^ (1 / 3), now, now, nil
  arate = math.max(0.5, math.min(current * factor, 2 * measured))
  did_cut = 1
  redis.call('PUBLISH', channel, 'cut')
elseif arate and ok > 0 then
  local x = now - fail - k
  local target = 0.4 * x * x * x + wmax
  local ceiling = 2 * measured
  if target <= ceiling then
    slack = nil
  elseif not slack then
    slack = now
  elseif now - slack >= 5 then
    arate, slack = nil, nil
  end
  if arate then arate = math.max(0.5, math.min(target, ceiling)) end
end

local rate = nil
if limit > 0 then rate = limit end
if arate and (not rate or arate < rate) then rate = arate end

local pause = redis.call('PTTL', pause_key)
if pause < 0 then pause = 0 end
local granted, start, interval = 0, 0, 0
if pause == 0 and want > 0 then
  granted = want
  if rate then
    if tat < now then tat = now end
    start = math.max(now, tat - tau) - now
    interval = 1 / rate
    tat = tat + want * interval
  end
end

local function ts(x) return string.format('%.6f', x) end
local function num(x) return string.format('%.9g', x) end
redis.call('HSET', rate_key, 'tat', ts(tat), 'wmax', num(wmax), 'k', num(k), 'fail', ts(fail),
  'cut', ts(cut), 'mb', ts(mb), 'mc', mc, 'mo', mo)
local gone = {}
for _, pair in ipairs({{'arate', arate}, {'mr', mr}, {'mor', mor}, {'slack', slack}}) do
  if pair[2] then
    redis.call('HSET', rate_key, pair[1], num(pair[2]))
  else
    table.insert(gone, pair[1])
  end
end
if #gone > 0 then redis.call('HDEL', rate_key, unpack(gone)) end
redis.call('PEXPIRE', rate_key, 3600000)
return {granted, math.floor(start * 1000000), math.floor(interval * 1000000), pause,
  math.floor((rate or 0) * 1000), did_cut}
"""

# A Retry-After heard by one process: extend the fleet's pause and tell everyone at once.
# KEYS[1] pause; ARGV: milliseconds, channel. Reply: 1 when the pause was extended.
PAUSE = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) >= ms then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ms)
redis.call('PUBLISH', ARGV[2], 'pause:' .. ms)
return 1
"""

# The cached token, or the right to fetch one, in one atomic step (so no process can take the
# lock just after another cached a fresh token). KEYS[1] token, KEYS[2] lock;
# ARGV: token to avoid ('' for none), least lifetime left (ms), lock owner, lock ttl (ms).
# Reply: {1, token, ms left} | {0} (we hold the lock: fetch) | {-1} (another process fetches).
READ_GRANT = """
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then
  local left = redis.call('PTTL', KEYS[1])
  if left >= tonumber(ARGV[2]) then return {1, v, left} end
end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return {0} end
return {-1}
"""

# Cache a freshly fetched token and release the fetch lock if we still hold it.
# KEYS[1] token, KEYS[2] lock; ARGV: token, ttl ms, lock owner, channel.
CACHE_GRANT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], 'token')
return 1
"""

# Compare-and-delete: drop KEYS[1] only if it still holds ARGV[1] (a lock we own; the token a
# 401 rejected, not a newer one another process has cached since).
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

SCRIPTS = (SYNC, PAUSE, READ_GRANT, CACHE_GRANT, UNLOCK)
