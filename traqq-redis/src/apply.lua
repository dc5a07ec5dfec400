-- traqq: applies one coalesced batch (or, on a cluster, one hash slot's part of it) atomically.
--
-- ARGV[1] is how many seconds to remember this batch's id, or '' for a batch without one. With
-- an id, the last key is the id's key: a batch whose id key exists was applied before (its reply
-- was lost and it is sent again), and is not applied twice; the id key is set only once the
-- whole batch is applied.
-- KEYS[i] is the Redis key of part i. ARGV then holds, for each part in order: an op code, the
-- item count n, the EXPIREAT time ('' for none), the label cap (0 for none), then the items:
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
-- A capped part ('i', 'f', 'z' with a cap above 0; its items in byte order of the label) keeps the
-- key at no more than cap labels plus '(other)': a label the key does not hold yet, arriving when
-- it holds cap labels already, is counted under '(other)' (traqq_core::labels). A distribution's
-- fields are 'LABEL:BIN' (no other field holds a ':'): the cap counts their labels, and the
-- fields of a label past it go to '(other):BIN'. Its overflowed labels are counted once each, at
-- their one sum field 'LABEL:s'.
--
-- Returns 0 when everything was applied, or {'overflow', n} when n new labels went to '(other)'. Every key's type is checked before anything is
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
  a = a + 4 + tonumber(argv[a + 1]) * width[op]
end

local seen = nil
a = 2
for k = 1, parts do
  local op = argv[a]
  local n = tonumber(argv[a + 1])
  if op == 'c' then
    for j = 1, n do
      if redis.call('SISMEMBER', KEYS[k], argv[a + 3 + j]) == 1 then
        seen = seen or { 'seen' }
        seen[#seen + 1] = k
        seen[#seen + 1] = j
      end
    end
  end
  a = a + 4 + n * width[op]
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
local overflowed = 0
local OTHER = '(other)'
local ok, failure = pcall(function()
  local a = 2
  for i = 1, parts do
    k = i
    local key = KEYS[i]
    local op = argv[a]
    local n = tonumber(argv[a + 1])
    local at = argv[a + 2]
    local cap = tonumber(argv[a + 3])
    a = a + 4
    local held = 0
    local split = nil
    if cap > 0 then
      if op == 'z' then
        held = call('ZCARD', key)
        if call('ZSCORE', key, OTHER) then held = held - 1 end
      else
        held = call('HLEN', key)
        if call('HEXISTS', key, OTHER) == 1 then held = held - 1 end
      end
      -- Room for every item: no label can overflow, no check per item (a key holds at least
      -- as many fields as labels).
      if held + n <= cap then
        cap = 0
      elseif op ~= 'z' and n > 0 and string.find(argv[a], ':', 1, true) then
        split = {}
        held = 0
        for _, f in ipairs(call('HKEYS', key)) do
          local l = string.match(f, '^[^:]*')
          if l ~= OTHER and not split[l] then
            split[l] = true
            held = held + 1
          end
        end
      end
    end
    if split then
      local cmd = (op == 'i' and 'HINCRBY') or 'HINCRBYFLOAT'
      local last = a + 2 * n - 1
      for j = a, last, 2 do
        local field = argv[j]
        local colon = string.find(field, ':', 1, true) or (#field + 1)
        local label = string.sub(field, 1, colon - 1)
        if label ~= OTHER and not split[label] then
          if held >= cap then
            field = OTHER .. string.sub(field, colon)
            if string.sub(field, -2) == ':s' then overflowed = overflowed + 1 end
          else
            held = held + 1
            split[label] = true
          end
        end
        call(cmd, key, field, argv[j + 1])
      end
      a = last + 1
    elseif cap > 0 then
      local z = op == 'z'
      local cmd = (z and 'ZINCRBY') or (op == 'i' and 'HINCRBY') or 'HINCRBYFLOAT'
      local last = a + 2 * n - 1
      for j = a, last, 2 do
        local label = argv[j]
        if label ~= OTHER then
          local has
          if z then has = call('ZSCORE', key, label) else has = call('HEXISTS', key, label) == 1 end
          if not has then
            if held >= cap then
              label = OTHER
              overflowed = overflowed + 1
            else
              held = held + 1
            end
          end
        end
        if z then call(cmd, key, argv[j + 1], label) else call(cmd, key, label, argv[j + 1]) end
      end
      a = last + 1
    elseif op == 'i' or op == 'f' then
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
if overflowed > 0 then
  return { 'overflow', overflowed }
end
return 0
