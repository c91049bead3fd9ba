"""Tolaria: the trainer — host models, data, the epoch loop, checkpoints, resume and rollback."""
