"""Tezzeret: compiles blueprints into artifacts as jobs whose state lives in the event log (SPEC §9)."""
