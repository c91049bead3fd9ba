"""Urza: the content-addressed artifact library (SPEC §9): sha256-verified loads and an in-process cache."""
