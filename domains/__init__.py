"""One package per subsystem: tolaria, kasmina, tamiyo, simic, karn, tezzeret, urza, oona, nissa."""
