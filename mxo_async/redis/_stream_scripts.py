"""The Lua of the stream workers: each outcome is recorded in the same atomic step as its ACK.

A script acts on an entry only when its ``XACK`` acknowledged it (returned 1): an entry settled
twice (a slow worker and the one that reclaimed it) is dead-lettered or recorded once.
"""

from __future__ import annotations

__all__ = ["ENQUEUE", "INGEST_SETTLE", "RETRY_FAILED", "SWEEP_SETTLE"]

# KEYS: stream, dead-letter stream. ARGV: group, n, then n IDs to acknowledge only, then
# (id, reason, record, error) per entry to dead-letter. Returns {acknowledged, dead-lettered}.
INGEST_SETTLE = """
local n = tonumber(ARGV[2])
local acked, dead = 0, 0
if n > 0 then acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3, 2 + n)) end
for i = 3 + n, #ARGV, 4 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    acked = acked + 1
    redis.call('XADD', KEYS[2], '*', 'record', ARGV[i + 2], 'reason', ARGV[i + 1],
               'error', ARGV[i + 3])
    dead = dead + 1
  end
end
return {acked, dead}
"""

# KEYS: queue, seen set, counts. ARGV: canonical customers. Returns how many were new.
ENQUEUE = """
local added = 0
for i = 1, #ARGV do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[1], '*', 'customer', ARGV[i])
    added = added + 1
  end
end
if added > 0 then redis.call('HINCRBY', KEYS[3], 'enqueued', added) end
return added
"""

# KEYS: queue, state (customer -> outcome), records (customer -> journal line), audit stream,
# counts. ARGV: group, then (id, customer, outcome, line) per entry. Returns how many recorded.
SWEEP_SETTLE = """
local recorded = 0
for i = 2, #ARGV, 4 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    local customer, outcome, line = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local old = redis.call('HGET', KEYS[2], customer)
    if old and old ~= 'retrying' then redis.call('HINCRBY', KEYS[5], old, -1) end
    redis.call('HSET', KEYS[2], customer, outcome)
    redis.call('HSET', KEYS[3], customer, line)
    redis.call('HINCRBY', KEYS[5], outcome, 1)
    redis.call('HINCRBY', KEYS[5], 'settled', 1)
    redis.call('XADD', KEYS[4], '*', 'record', line)
    recorded = recorded + 1
  end
end
return recorded
"""

# KEYS: queue, state, counts. ARGV: customers to queue again if they are still failed.
RETRY_FAILED = """
local queued = 0
for i = 1, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == 'failed' then
    redis.call('HSET', KEYS[2], ARGV[i], 'retrying')
    redis.call('HINCRBY', KEYS[3], 'failed', -1)
    redis.call('HINCRBY', KEYS[3], 'enqueued', 1)
    redis.call('XADD', KEYS[1], '*', 'customer', ARGV[i])
    queued = queued + 1
  end
end
return queued
"""
