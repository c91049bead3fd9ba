"""Karn: the blueprint catalogue (SPEC §9): 50 templates in three tiers, parameter validation, selection."""
