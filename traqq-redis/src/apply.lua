-- traqq: applies one coalesced batch (or, on a cluster, one hash slot's part of it) atomically.
--
-- ARGV[1] is how many seconds to remember this batch's id, or '' for a batch without one. With
-- an id, the last key is the id's key: a batch whose id key exists was applied before (its reply
-- was lost and it is sent again), and is not applied twice; the id key is set only once the
-- whole batch is applied.
-- KEYS[i] is the Redis key of part i. ARGV then holds, for each part in order: an op code, the
-- item count n, the EXPIREAT time ('' for none), then the items:
--   i: n (field, integer)  pairs  -> HINCRBY       (a hash)
--   f: n (field, float)    pairs  -> HINCRBYFLOAT  (a hash)
--   z: n (member, score)   pairs  -> ZINCRBY       (a sorted set)
--   p: n values                   -> PFADD, variadic (a HyperLogLog: a string)
--   s: n members                  -> SADD, variadic  (a set)
--   c: n event ids (16 bytes each) -> SADD, variadic  (a set: a day's claimed event ids)
-- A key may appear in two parts (a hash with integer and float fields).
--
-- Claims ('c' parts) are checked first: when any of their ids is already in its set, nothing
-- is written and the answer is {'seen', k1, j1, k2, j2, ...} (part k, item j, 1-based) naming
-- every such id; otherwise the ids are added with the rest of the batch, in the same call.
--
-- Returns 0 when everything was applied. Every key's type is checked before anything is
-- written, so a key of the wrong type fails the batch with nothing applied: {i, 'WRONGTYPE ...', 0}.
-- A command refused later (a corrupt HyperLogLog, an integer overflow) stops the script there
-- and returns {i, error, 1}: what came before was applied (Redis has no rollback).
local expected = { i = 'hash', f = 'hash', z = 'zset', p = 'string', s = 'set', c = 'set' }
local width = { i = 2, f = 2, z = 2, p = 1, s = 1, c = 1 }
local argv = ARGV
local remember = argv[1]
local parts = #KEYS
if remember ~= '' then
  parts = parts - 1
  if redis.call('EXISTS', KEYS[parts + 1]) == 1 then
    return 0
  end
end

local a = 2
for k = 1, parts do
  local op = argv[a]
  local want = expected[op]
  if want == nil then
    return { k, 'ERR unknown traqq op ' .. tostring(op), 0 }
  end
  local found = redis.call('TYPE', KEYS[k]).ok
  if found ~= 'none' and found ~= want then
    return { k, 'WRONGTYPE the key holds a ' .. found .. ', not a ' .. want, 0 }
  end
  a = a + 3 + tonumber(argv[a + 1]) * width[op]
end

local seen = nil
a = 2
for k = 1, parts do
  local op = argv[a]
  local n = tonumber(argv[a + 1])
  if op == 'c' then
    for j = 1, n do
      if redis.call('SISMEMBER', KEYS[k], argv[a + 2 + j]) == 1 then
        seen = seen or { 'seen' }
        seen[#seen + 1] = k
        seen[#seen + 1] = j
      end
    end
  end
  a = a + 3 + n * width[op]
end
if seen then
  return seen
end

-- Variadic commands get at most this many values per call (Lua's C stack limit).
local chunk = 4000
local min = math.min
local call = redis.call

-- One protected call around all writes rather than redis.pcall and a check per command: the
-- check alone cost ~4% of Redis's CPU per batch. `k` says which part a refusal was about.
local k = 0
local ok, failure = pcall(function()
  local a = 2
  for i = 1, parts do
    k = i
    local key = KEYS[i]
    local op = argv[a]
    local n = tonumber(argv[a + 1])
    local at = argv[a + 2]
    a = a + 3
    if op == 'i' or op == 'f' then
      local cmd = (op == 'i' and 'HINCRBY') or 'HINCRBYFLOAT'
      local last = a + 2 * n - 1
      for j = a, last, 2 do
        call(cmd, key, argv[j], argv[j + 1])
      end
      a = last + 1
    elseif op == 'z' then
      local last = a + 2 * n - 1
      for j = a, last, 2 do
        call('ZINCRBY', key, argv[j + 1], argv[j])
      end
      a = last + 1
    else
      local cmd = (op == 'p' and 'PFADD') or 'SADD'
      local last = a + n - 1
      for j = a, last, chunk do
        call(cmd, key, unpack(argv, j, min(j + chunk - 1, last)))
      end
      a = last + 1
    end
    if at ~= '' then
      call('EXPIREAT', key, at)
    end
  end
end)
if not ok then
  if type(failure) == 'table' then
    failure = failure.err or 'ERR refused'
  end
  return { k, tostring(failure), 1 }
end
if remember ~= '' then
  redis.call('SET', KEYS[parts + 1], '1', 'EX', remember)
end
return 0
