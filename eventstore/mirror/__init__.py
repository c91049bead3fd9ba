"""The Redis Streams mirror of the log (SPEC §5, §11). Redis is a mirror, never the source of truth.

Every committed event is XADDed with the entry id `<global position>-0`, so Redis rejects a re-add and
re-mirroring is idempotent. A rejected XADD counts as already mirrored only when the stream holds that very
entry: an id another producer put above the log's positions (XADD with `*`) would swallow every later
event, and stops the mirror with ForeignEntry instead. Keys (`prefix` defaults to `esper`):

- `<prefix>:cat:<category>`: one stream per category (`run`, `seed`, …) holding every event of it;
- the bus queues a `Fanout` adds (Oona: `<prefix>:oona:<queue>`), same entry ids;
- `<prefix>:mirror`: a marker hash {log_id, position}: which log Redis mirrors (the event_id at position 1)
  and the last position it holds. It is written by the same Lua script as each batch, which first checks
  it, so a Redis that restarted and lost its data (marker gone) or came back from an older snapshot
  (marker behind) is detected before anything is written, and the mirror re-mirrors from what Redis holds.

The durable cursor in `<data-dir>/mirror/` keeps the last mirrored position and, per stream, where each
consumer group has passed (its oldest pending entry, else its last delivered one). After Redis lost its
data, groups are recreated at those positions, never at `$`. Streams are trimmed by MINID behind their
slowest group; a stream without groups is never trimmed.
"""

from eventstore.mirror.core import HealthListener, Mirror
from eventstore.mirror.cursor import MirrorCursor, cursor_path
from eventstore.mirror.fanout import Fanout, KeyState
from eventstore.mirror.redis_keys import (
    DEFAULT_BATCH,
    DEFAULT_PREFIX,
    REDIS_ERRORS,
    as_text,
    category_key,
    connect_redis,
    entry_id,
    marker_key,
    position_of,
    redacted,
)
from eventstore.mirror.script import BatchResult, ForeignEntry, MirrorConflict
from eventstore.mirror.thread import MirrorThread

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_PREFIX",
    "REDIS_ERRORS",
    "BatchResult",
    "Fanout",
    "ForeignEntry",
    "HealthListener",
    "KeyState",
    "Mirror",
    "MirrorConflict",
    "MirrorCursor",
    "MirrorThread",
    "as_text",
    "category_key",
    "connect_redis",
    "cursor_path",
    "entry_id",
    "marker_key",
    "position_of",
    "redacted",
]
