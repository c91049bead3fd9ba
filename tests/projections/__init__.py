"""Projection tests: runner, read models, rebuilds, audit queries, migrations."""
