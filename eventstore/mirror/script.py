"""The Lua script that mirrors one batch atomically, its outcomes and the errors it reports."""

from __future__ import annotations

from dataclasses import dataclass

from eventstore.api import EventStoreError

# Checks the marker, XADDs the batch and moves the marker in one atomic step. An XADD that Redis rejects
# counts as already mirrored only if the stream really holds that entry id; otherwise another producer put
# a higher id on the stream (XADD with `*`), nothing more of the log could go there, and the script stops
# with 'foreign' before it moves the marker.
# KEYS[1] marker, KEYS[2..] streams. ARGV: log id, position Redis must hold, position after the batch,
# then per event: its streams as comma-separated indexes into KEYS, position, event type, stream, envelope.
MIRROR_BATCH_LUA = """
local marker = redis.call('HMGET', KEYS[1], 'log_id', 'position')
if marker[1] and marker[1] ~= ARGV[1] then
  return {'other_log', marker[1]}
end
local held = 0
if marker[2] then held = tonumber(marker[2]) end
if held ~= tonumber(ARGV[2]) then
  return {'moved', tostring(held)}
end
local rejected = 0
for i = 4, #ARGV, 5 do
  local id = ARGV[i + 1] .. '-0'
  for index in string.gmatch(ARGV[i], '%d+') do
    local reply = redis.pcall('XADD', KEYS[tonumber(index)], id,
      'event_type', ARGV[i + 2], 'stream', ARGV[i + 3], 'envelope', ARGV[i + 4])
    if type(reply) == 'table' and reply.err then
      if string.find(reply.err, 'equal or smaller', 1, true) then
        local key = KEYS[tonumber(index)]
        if #redis.call('XRANGE', key, id, id) == 0 then
          local info = redis.call('XINFO', 'STREAM', key)
          for field = 1, #info, 2 do
            if info[field] == 'last-generated-id' then
              return {'foreign', key, info[field + 1]}
            end
          end
          return {'foreign', key, '?'}
        end
        rejected = rejected + 1
      else
        return redis.error_reply(reply.err)
      end
    end
  end
end
redis.call('HSET', KEYS[1], 'log_id', ARGV[1], 'position', ARGV[3])
return {'ok', tostring(rejected)}
"""


class MirrorConflict(EventStoreError):
    """Redis already holds the mirror of another log under this prefix."""


class ForeignEntry(MirrorConflict):
    """A mirror stream holds an entry id above the log's positions that the mirror did not write: every
    later event of the log would be rejected there. The mirror refuses that stream instead of counting the
    rejections as already mirrored."""

    def __init__(self, key: str, found: str, position: int, marker: str) -> None:
        super().__init__(
            f"Redis stream {key} has reached entry id {found}, which the mirror did not write (another "
            f"producer adds to it, e.g. XADD with '*'), so the log's events from position {position} on "
            f"cannot be mirrored there; move that producer off the mirror's keys, delete {key} and set "
            f"'position' in {marker} to 0: the next mirror re-adds whatever Redis lacks"
        )
        self.key = key
        self.found = found
        self.position = position


@dataclass(frozen=True)
class BatchResult:
    events: int
    rejected: int
