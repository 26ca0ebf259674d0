/**
 * Every script starts here. `deadline` (an ARGV, Redis server time in ms, or ''
 * for none) is the last moment the script may run: a margin before the daemon
 * stops waiting for the reply and answers by its failure policy instead
 * (fail_open lets the request through uncounted). A command run after that (it
 * waited in a socket buffer during a partition, or ioredis resent it after a
 * reconnect) must change nothing, or a request let through as "not counted"
 * would be counted later: it replies {-1, time} and writes nothing. Every
 * reply's second element is Redis's time, from which the daemon learns how far
 * Redis's clock is from its own.
 */
const DEADLINE_CHECK = (deadline: string) => `
local server_time = redis.call('TIME')
local real_now = tonumber(server_time[1]) * 1000 + math.floor(tonumber(server_time[2]) / 1000)
if ${deadline} ~= '' and real_now > tonumber(${deadline}) then return { -1, real_now } end
`;

/**
 * The Lua of RedisRateLimiter. It mirrors window.ts (`tally`, then `decide`)
 * line by line; change both together.
 *
 * KEYS: the N prefixed keys. ARGV[1]: now in ms, or '' to use Redis server time
 * (so every daemon shares one clock). ARGV[2]: B. ARGV[3]: the deadline ('' for
 * none; see DEADLINE_CHECK). Then per key: limit, windowMs, cost. Each key is a
 * HASH: field = bucket index, value = units; field 's' = the bucket layout
 * ("windowMs/B"); a key stored with another layout counts as empty.
 *
 * Reply: [allowed (0/1), Redis time, now, then per key: allowed, remaining,
 * resetMs, retryAfterMs], or [-1, Redis time] past the deadline.
 * `allowed` is all-or-nothing: when any key lacks room, nothing is written.
 */
function script(take: boolean): string {
  return `${DEADLINE_CHECK('ARGV[3]')}
local take = ${take ? 'true' : 'false'}
local now = real_now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) end
local B0 = tonumber(ARGV[2])

local function bucket_index(t, W, B) return math.floor(t * B / W) end
local function leaves_at(i, W, B) return math.ceil((i + 1) * W / B) + W - 1 end

local tallies = {}
local all = true
for k = 1, #KEYS do
  local base = 4 + (k - 1) * 3
  local limit = tonumber(ARGV[base])
  local W = tonumber(ARGV[base + 1])
  local cost = tonumber(ARGV[base + 2])
  local B = math.min(B0, W)
  local shape = ARGV[base + 1] .. '/' .. string.format('%d', B)
  local oldest = bucket_index(now - W + 1, W, B)
  local current = bucket_index(now, W, B)
  local raw = redis.call('HGETALL', KEYS[k])
  local same = true
  for i = 1, #raw, 2 do
    if raw[i] == 's' and raw[i + 1] ~= shape then same = false end
  end
  local live, stale, sum = {}, {}, 0
  if same then
    for i = 1, #raw, 2 do
      if raw[i] ~= 's' then
        local index = tonumber(raw[i])
        local count = tonumber(raw[i + 1])
        if index < oldest then
          stale[#stale + 1] = raw[i]
        elseif index <= current and count > 0 then
          live[#live + 1] = { index, count }
          sum = sum + count
        end
      end
    end
    table.sort(live, function(x, y) return x[1] < y[1] end)
  end
  if sum + cost > limit then all = false end
  tallies[k] = { limit = limit, W = W, B = B, cost = cost, shape = shape, same = same,
                 live = live, stale = stale, sum = sum, current = current }
end

local taken = take and all
local out = { all and 1 or 0, real_now, now }
for k = 1, #KEYS do
  local t = tallies[k]
  local allowed = t.sum + t.cost <= t.limit
  local sum = t.sum
  local newest = nil
  if #t.live > 0 then newest = t.live[#t.live][1] end
  if taken then
    if not t.same then
      redis.call('DEL', KEYS[k])
    elseif #t.stale > 0 then
      redis.call('HDEL', KEYS[k], unpack(t.stale))
    end
    redis.call('HINCRBY', KEYS[k], string.format('%.0f', t.current), t.cost)
    redis.call('HSET', KEYS[k], 's', t.shape)
    sum = sum + t.cost
    newest = t.current
  end
  local remaining = math.max(0, t.limit - sum)
  local reset = 0
  if newest ~= nil then reset = leaves_at(newest, t.W, t.B) - now end
  -- The key lives exactly as long as its newest bucket counts: no longer (memory),
  -- no shorter (the decisions must match the in-process backend's).
  if taken then redis.call('PEXPIRE', KEYS[k], reset) end
  local retry = 0
  if not allowed then
    if t.cost > t.limit then
      retry = t.W
    else
      local freed = 0
      for j = 1, #t.live do
        freed = freed + t.live[j][2]
        if t.sum - freed + t.cost <= t.limit then
          retry = leaves_at(t.live[j][1], t.W, t.B) - now
          break
        end
      end
    end
    if retry < 1 then retry = 1 end
  end
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end
return out
`;
}

/** Checks every key, and charges them all only if every one has room. */
export const CONSUME_SCRIPT = script(true);
/** The same check, never writing. */
export const PEEK_SCRIPT = script(false);

/**
 * Gives back up to ARGV[1] units, newest bucket first, never below zero.
 * KEYS[1]: the prefixed key; ARGV[2]: the deadline. Reply: [units given back,
 * Redis time], or [-1, Redis time] past the deadline.
 */
export const REFUND_SCRIPT = `${DEADLINE_CHECK('ARGV[2]')}
local left = tonumber(ARGV[1])
local raw = redis.call('HGETALL', KEYS[1])
local idx = {}
for i = 1, #raw, 2 do
  if raw[i] ~= 's' then table.insert(idx, tonumber(raw[i])) end
end
table.sort(idx, function(a, b) return a > b end)
local given = 0
for _, i in ipairs(idx) do
  if left <= 0 then break end
  local field = string.format('%d', i)
  local units = tonumber(redis.call('HGET', KEYS[1], field))
  local back = math.min(units, left)
  left = left - back
  given = given + back
  if units - back > 0 then redis.call('HSET', KEYS[1], field, units - back) else redis.call('HDEL', KEYS[1], field) end
end
return { given, real_now }
`;

/** Deletes KEYS[1] (a reset). ARGV[1]: the deadline. Reply: [1, Redis time], or [-1, Redis time] past the deadline. */
export const RESET_SCRIPT = `${DEADLINE_CHECK('ARGV[1]')}
redis.call('DEL', KEYS[1])
return { 1, real_now }
`;
