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
-- A capped part ('i', 'f', 'z' with a cap above 0; its items in any order) keeps the key at no
-- more than cap labels plus '(other)': a label the key does not hold yet, arriving when it holds
-- cap labels already, is counted under '(other)' (traqq_core::labels). When a part brings more
-- new labels than there is room for, they are admitted in byte order of the label (the script
-- sorts them: only then does order matter, so the client sends items unsorted). A distribution's
-- fields are 'LABEL:BIN' (no other field holds a ':'): the cap counts their labels, and the
-- fields of a label past it go to '(other):BIN'.
--
-- Returns 0 when everything was applied, or {'overflow', n} when n new labels went to '(other)'.
-- Every key's type is checked before anything is written, so a key of the wrong type fails the
-- batch with nothing applied: {i, 'WRONGTYPE ...', 0}.
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
local OTHER = '(other)'

-- Byte order of two strings, whatever the server's locale (Lua's `<` on strings follows
-- strcoll, and Redis sets LC_COLLATE from the environment).
local function before(x, y)
  local byte = string.byte
  for i = 1, math.min(#x, #y) do
    local p, q = byte(x, i), byte(y, i)
    if p ~= q then return p < q end
  end
  return #x < #y
end

-- The new labels of a capped part (op `op`, n items from argv[a]) that do not fit in a key
-- holding `held` labels of at most `cap`: their set, and whether the part's fields are a
-- distribution's 'LABEL:BIN' (whose label is the text before ':'). New labels are admitted in
-- byte order (traqq_core::labels), whatever order the items come in.
local function overflowing(key, op, a, n, cap, held)
  local split = op ~= 'z' and n > 0 and string.find(argv[a], ':', 1, true) ~= nil
  local known = nil
  if split then
    known = {}
    held = 0
    for _, f in ipairs(call('HKEYS', key)) do
      local l = string.match(f, '^[^:]*')
      if l ~= OTHER and not known[l] then
        known[l] = true
        held = held + 1
      end
    end
  end
  local new, seen = {}, {}
  for j = a, a + 2 * n - 1, 2 do
    local label = argv[j]
    if split then label = string.match(label, '^[^:]*') end
    if label ~= OTHER and not seen[label] then
      seen[label] = true
      local has
      if split then
        has = known[label]
      elseif op == 'z' then
        has = call('ZSCORE', key, label)
      else
        has = call('HEXISTS', key, label) == 1
      end
      if not has then new[#new + 1] = label end
    end
  end
  local room = cap - held
  if room < 0 then room = 0 end
  local over = {}
  if #new <= room then return over, split end
  if room > 0 then table.sort(new, before) end
  for i = room + 1, #new do
    over[new[i]] = true
  end
  return over, split
end

-- One protected call around all writes rather than redis.pcall and a check per command: the
-- check alone cost ~4% of Redis's CPU per batch. `k` says which part a refusal was about.
local k = 0
local overflowed = 0
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
    -- A capped part whose items may not all fit: `over` holds the new labels to count under
    -- '(other)'.
    local over, split = nil, false
    if cap > 0 then
      local held
      if op == 'z' then
        held = call('ZCARD', key)
        if call('ZSCORE', key, OTHER) then held = held - 1 end
      else
        held = call('HLEN', key)
        if call('HEXISTS', key, OTHER) == 1 then held = held - 1 end
      end
      -- Room for every item: no label can overflow, no check per item (a key holds at least
      -- as many fields as labels).
      if held + n > cap then
        over, split = overflowing(key, op, a, n, cap, held)
      end
    end
    if over then
      local z = op == 'z'
      local cmd = (z and 'ZINCRBY') or (op == 'i' and 'HINCRBY') or 'HINCRBYFLOAT'
      local last = a + 2 * n - 1
      for j = a, last, 2 do
        local field = argv[j]
        if split then
          local colon = string.find(field, ':', 1, true) or (#field + 1)
          if over[string.sub(field, 1, colon - 1)] then
            field = OTHER .. string.sub(field, colon)
            -- A distribution's overflowed label counts once, at its one sum field 'LABEL:s'.
            if string.sub(field, -2) == ':s' then overflowed = overflowed + 1 end
          end
        elseif over[field] then
          field = OTHER
          overflowed = overflowed + 1
        end
        if z then call(cmd, key, argv[j + 1], field) else call(cmd, key, field, argv[j + 1]) end
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
