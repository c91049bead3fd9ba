"""Esper test suite."""
