"""Projection runner, read models, rebuilds and audit queries."""
