"""Keys of `SeedState.metrics` that Kasmina and Tolaria write and controllers read.

The map is open-ended on the wire; these names are the contract between the subsystem that writes a key
and the ones that read it, so a rename cannot silently starve a reader.
"""

# gradient leaks into the host seen by the isolation monitor; written only when non-zero (absent reads as 0),
# which keeps a SystemStatePacket of four slots under its 280-byte budget (SPEC §2)
ISOLATION_METRIC = "isolation_violations"
STAGE_EPOCHS_METRIC = "stage_epochs"  # epochs the seed has spent in its current stage
CONTRIBUTION_METRIC = "contribution"  # loss without the seed minus loss with it (the G3/G4 probes)
HEADROOM_METRIC = "headroom"  # a dormant slot's measured headroom (Tolaria, domains/tolaria/headroom.py)
