"""Redis fixtures: the shared server under a unique prefix, or a private server for tests that kill it."""

from tests.mirror.redis_support import prefix, private_redis, shared_redis, store

__all__ = ["prefix", "private_redis", "shared_redis", "store"]
