"""A free TCP port on the loopback interface, for the servers and ranks that Esper starts on this machine
(a private redis-server, torch.distributed's rendezvous, a test's metrics or PostgreSQL server)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the kernel just handed out and released: free now, though another process may take it
    before the caller binds it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
