"""The append-only event log: WAL segments, recovery, reads, subscriptions, snapshots, backends."""
