"""Kasmina: the seed manager. It executes; it never decides, and it never breaks the host (SPEC §7).

Host side::

    class Host(nn.Module):
        def __init__(self):
            ...
            self.slot0 = SeedSlot(0, pb.SLOT_KIND_CONV2D, (16, 8, 8))  # one sample's shape
        def forward(self, x):
            x = self.slot0(self.conv(x))  # DORMANT: identity
            ...

Trainer side (Tolaria), per run::

    kasmina = Kasmina(run_id, host, source, verifier, KasminaConfig())  # host: the model, or its slots
    kasmina.attach_optimizer(optimizer)
    # at each epoch boundary, after validation:
    events = kasmina.end_epoch(epoch, EpochMeasurements(val_loss, val_acc, train_loss), evaluate)
    ...  # controller decides with kasmina.seed_states()
    events += kasmina.execute(signed_command_envelope, epoch)  # AdaptationCommandIssued
    # append `events` to the log; checkpoint with kasmina.state_dict()

- `evaluate()` is the trainer's validation pass (eval mode, no grad, no state change) returning an
  `Evaluation(loss, accuracy)`; Kasmina calls it inside `counterfactual(slot, alpha)` for the probes: a
  GERMINATED/TRAINING seed's loss at alpha 1 (admission, G1), and alpha 0 vs 1 in SHADOWING (G3) and at the
  end of the probation window and each boundary after it while G4's evidence is undecided (G4).
  `EpochMeasurements.validation_loss` is the host loss for G2.
- Commands: every envelope is verified once, by Kasmina's intake (`intake.py`)::

      received = kasmina.receive(envelope)  # decode + verify (signature, nonce, clock, run id)
      if received.command.command_type == pb.COMMAND_TYPE_ROLLBACK:
          ...  # the trainer's: granted from received.command if received.verified, else rejected with
          ...  # received.refusal, (code, reason); it never verifies the envelope again
      else:
          events += kasmina.apply(received, epoch)  # a refusal becomes a CommandRejected here

  `execute(envelope, epoch)` is `apply(receive(envelope), epoch)`. A command id already processed is
  `received.duplicate` (idempotency, also across restarts via the aggregate) and is neither verified again
  nor applied; bad, replayed, stale or unknown-key signatures are CommandRejected + counter. Before any
  artifact fetch, `apply` runs the pure pre-check `lifecycle.precheck(state, slot, operation, measured)`
  (embargo, a stage that cannot take the operation, an ADVANCE without measurements); decide() uses the
  same rules.
- GERMINATE fetches the module from the `ModuleSource` (Urza's SeedModuleSource in production) and runs
  G0 (artifact verified, shapes compatible). Quarantine-only (adversarial) blueprints are refused by
  the source itself unless it was built for a fault drill (`FactorySource(..., drill=True)`, or a wrapper
  calling Urza's `load_module(..., use=Use.DRILL)`): the drill path is explicit.
- Events go to `seed-<run_id>.<slot>` (a rejection naming no slot of this host: `command-<command_id>`);
  effects of a command carry correlation_id = command id and causation_id = the command envelope's
  event_id; automatic transitions carry the germinating command's id as correlation_id.
- Resume: build the host and optimizer, `attach_optimizer`, `kasmina.load_state_dict(saved)`, *then* the
  host's and the optimizer's own `load_state_dict` (they contain the seed entries).
  `rebuild_from_log(envelopes)` folds the run's logged seed events into the aggregate (replay).
- `teardown(epoch)` at run end: TERMINATED for every slot holding a seed, except FOSSILIZED ones.
- Forward per stage, gradient isolation (detached seed input; a straight-through gradient with a quadratic
  pull in TRAINING) and the isolation monitor are documented in `slot`.

Modules, pure (no torch): `lifecycle` (decide/evolve and the pre-check), `state` (the aggregate's state),
`gates` (measurements and gates G0–G5), `commands`. The shell: `manager` (Kasmina), `intake`
(decode, verify, translate), `effects` (modules, alphas, monitors, optimizer groups), `probes` (the G0 graft
probe and the gates' measurements), `slot` (SeedSlot, gradient isolation and the isolation monitor),
`source` (ModuleSource protocol), `config`, `metrics`. The stage tables and LifecycleConfig are Leyline's
(leyline/lifecycle.py).
"""

from domains.kasmina.config import KasminaConfig
from domains.kasmina.gates import Measurements
from domains.kasmina.intake import Received
from domains.kasmina.lifecycle import precheck
from domains.kasmina.manager import Kasmina
from domains.kasmina.probes import EpochMeasurements, Evaluation, Evaluator
from domains.kasmina.slot import SeedSlot, WideningSlot, find_slots, make_slot
from domains.kasmina.source import ArtifactUnavailable, FactorySource, ModuleSource
from domains.kasmina.state import KasminaState, SlotState
from leyline.lifecycle import LifecycleConfig

__all__ = [
    "ArtifactUnavailable",
    "EpochMeasurements",
    "Evaluation",
    "Evaluator",
    "FactorySource",
    "Kasmina",
    "KasminaConfig",
    "KasminaState",
    "LifecycleConfig",
    "Measurements",
    "ModuleSource",
    "Received",
    "SeedSlot",
    "SlotState",
    "WideningSlot",
    "find_slots",
    "make_slot",
    "precheck",
]
