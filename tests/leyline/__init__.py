"""Leyline contract tests."""
