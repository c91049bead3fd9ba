"""Tamiyo's controller around the learned policy, with versioned policies hot-reloaded into a live run.

`GnnController` is Tamiyo's controller (timeout, safe no-op, signing, state, field reports) running a
`GnnPolicy`, plus:
- at the first decision of a run, PolicyActivated for the version it starts with;
- at each epoch boundary, one look for an operator's request (`domains.tamiyo.policy_control`). An
  activation is verified on a background thread (signature, sha256, schema, shapes, and one smoke
  decision of the candidate on the graph of the boundary that took the request: finite outputs), so
  training never waits for it; the next boundary swaps the network in before deciding: PolicyActivated.
  A candidate that fails anywhere is refused with PolicyRolledBack (version = the active one,
  previous_version = the refused one, reason = the failure). A rollback request swaps back to the
  previous good version at the boundary that sees it: PolicyRolledBack;
- a decision of the active version that fails (error, non-finite outputs, timeout) is Tamiyo's safe no-op
  and rolls back to the last good version, if there is one, with PolicyRolledBack.
The events go on `policy-<version>` of the version now active. The checkpointed state holds the signed
publications of the active and earlier good versions and a request under verification, so a resumed run
continues with the same policy and activates a pending one at the same boundary.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from typing import Any

import torch
from google.protobuf.message import Message

from domains.tamiyo import metrics
from domains.tamiyo.controller import TamiyoController
from domains.tamiyo.gnn.graph import policy_graph
from domains.tamiyo.gnn.network import PolicyNetwork
from domains.tamiyo.gnn.policy import GnnPolicy
from domains.tamiyo.gnn.sampling import sample
from domains.tamiyo.observation import Observation, tiebreak
from domains.tamiyo.policy_control import ACTIVATE, ROLLBACK, PolicyRequest, done, take
from domains.tamiyo.policy_store import (
    CATEGORY,
    GOOD_VERSIONS_KEPT,
    PolicyError,
    PolicyLibrary,
    VerifiedPolicy,
    update_of,
    verify,
)
from domains.tamiyo.risk import effective_level
from leyline import new_envelope, pb, stream_name
from leyline.controller import ControllerContext, ControllerOutput
from leyline.datadir import DataDir
from leyline.signing import Keyring

COST_LAYOUTS_KEPT = 64  # slot layouts (which slots are dormant) whose estimates stay cached
SmokeInput = tuple[pb.PolicyObservation, torch.Tensor]  # a decision's observation and blueprint features


def smoke(network: PolicyNetwork, inputs: SmokeInput, seed: int) -> None:
    """One decision of a network on a graph; raises on non-finite outputs."""
    observation, features = inputs
    generator = torch.Generator().manual_seed(tiebreak(seed, f"smoke:{observation.packet.packet_id}"))
    sample(network, policy_graph(observation, features), generator)


class _Verification:
    """A candidate verified off the training thread: signature, hash, schema, shapes and, given the graph
    of the boundary that took the request, the smoke decision."""

    def __init__(
        self,
        request: PolicyRequest,
        keyring: Keyring,
        library: PolicyLibrary,
        inputs: SmokeInput | None,
        seed: int,
    ) -> None:
        self.request = request
        self.result: VerifiedPolicy | None = None
        self.error: str = ""
        self.smoked = False
        self._thread = threading.Thread(
            target=self._run, args=(keyring, library, inputs, seed), name="tamiyo-policy-verify", daemon=True
        )
        self._thread.start()

    def _run(self, keyring: Keyring, library: PolicyLibrary, inputs: SmokeInput | None, seed: int) -> None:
        try:
            if self.request.published is None:
                raise PolicyError(f"activation of {self.request.version!r} carries no publication")
            self.result = verify(self.request.published, keyring, library)
        except PolicyError as exc:
            self.error = str(exc)
            return
        except Exception as exc:
            self.error = f"policy {self.request.version}: {type(exc).__name__}: {exc}"
            return
        if inputs is not None:
            try:
                smoke(self.result.network, inputs, seed)
            except Exception as exc:
                self.error = (
                    f"policy {self.result.version}: smoke decision failed: {type(exc).__name__}: {exc}"
                )
            self.smoked = True

    def wait(self) -> None:
        self._thread.join()


class GnnController(TamiyoController):
    def __init__(
        self,
        run_id: str,
        initial: VerifiedPolicy,
        policy: GnnPolicy,
        *,
        keyring: Keyring,
        library: PolicyLibrary,
        data_dir: DataDir | None = None,
        **options: Any,
    ) -> None:
        self._cost_cache: dict[object, dict[tuple[str, int], int]] = {}  # before Tamiyo warms it
        super().__init__(run_id, policy=policy, **options)
        self.gnn: GnnPolicy = policy
        self.keyring = keyring
        self.library = library
        self.data_dir = data_dir
        self.active = initial
        self.good: list[VerifiedPolicy] = []
        self.announced = False
        self.verification: _Verification | None = None
        self._failed = False
        self._taken = ""  # the request id last taken from the control file
        self._resumed: tuple[str, str] | None = None  # (version, reason): checkpointed, refused on resume
        self._use(initial)

    # ------------------------------------------------------------------ Controller protocol

    def decide(self, packet: pb.SystemStatePacket, context: ControllerContext) -> ControllerOutput:
        before: list[pb.EventEnvelope] = []
        if not self.announced:
            self.announced = True
            before.append(self._event("PolicyActivated", self.active.version, "", "run start", packet.epoch))
        if self._resumed is not None:
            refused, reason = self._resumed
            before.append(self._event("PolicyRolledBack", self.active.version, refused, reason, packet.epoch))
            self._resumed = None
        before.extend(self._activate_pending(packet, context))
        request = self._take_request()
        if request is not None and request.action == ROLLBACK:
            before.extend(self._rollback_request(request, packet.epoch))
        self._failed = False
        output = super().decide(packet, context)
        if request is not None and request.action == ACTIVATE:
            inputs = (
                None if self.gnn.last_observation is None else (self.gnn.last_observation, self.gnn.features)
            )
            self.verification = _Verification(
                request, self.keyring, self.library, inputs, self.gnn.config.seed
            )
        after: list[pb.EventEnvelope] = []
        if self._failed and self.good:
            failed = self.active.version
            self._use(self.good.pop())
            after.append(
                self._event("PolicyRolledBack", self.active.version, failed, "decision failed", packet.epoch)
            )
        output.events = [*before, *output.events, *after]
        return output

    def state_dict(self) -> Mapping[str, Any]:
        pending = self.verification.request.to_dict() if self.verification is not None else None
        return {
            **super().state_dict(),
            "gnn": {
                "active": _encode(self.active.envelope),
                "good": [_encode(policy.envelope) for policy in self.good],
                "announced": self.announced,
                "pending": pending,
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the checkpointed versions, each verified again; one that no longer verifies (its
        artifact gone or changed, its key retired) is left out, and an active one that fails leaves the
        run on the policy it was built with, with PolicyRolledBack at the next decision."""
        super().load_state_dict(state)
        saved = state["gnn"]
        self.good = []
        for item in saved["good"]:
            try:
                self.good.append(verify(_decode(item), self.keyring, self.library))
            except PolicyError:
                continue
        active = _decode(saved["active"])
        try:
            self._use(verify(active, self.keyring, self.library))
        except PolicyError as exc:
            self._resumed = (update_of(active).version, f"refused on resume: {exc}")
        self.announced = bool(saved["announced"])
        self.verification = None
        if saved["pending"] is not None:
            request = PolicyRequest.from_dict(saved["pending"])
            self._taken = request.request_id
            self.verification = _Verification(request, self.keyring, self.library, None, self.gnn.config.seed)

    # ------------------------------------------------------------------ hot reload

    def _run_policy(self, observation: Observation) -> tuple[list[Message], tuple[str, str] | None]:
        payloads, failure = super()._run_policy(observation)
        self._failed = failure is not None
        return payloads, failure

    def _blueprint_costs(
        self, seeds: tuple[pb.SeedState, ...], catalogue: tuple[pb.BlueprintDescriptor, ...]
    ) -> dict[tuple[str, int], int]:
        """Tamiyo's estimates, one mapping per (dormant slots, catalogue), kept: the same object comes back
        for the same slots, so the policy's cost matrix is built once per layout, not once per decision."""
        dormant = tuple(s.slot for s in seeds if s.stage == pb.SEED_STAGE_DORMANT)
        key = (dormant, tuple(d.blueprint_id for d in catalogue))
        costs = self._cost_cache.get(key)
        if costs is None:
            if len(self._cost_cache) >= COST_LAYOUTS_KEPT:
                self._cost_cache.pop(next(iter(self._cost_cache)))
            costs = self._cost_cache[key] = super()._blueprint_costs(seeds, catalogue)
        return costs

    def _activate_pending(
        self, packet: pb.SystemStatePacket, context: ControllerContext
    ) -> list[pb.EventEnvelope]:
        """The candidate verified since the last boundary, activated or refused (one event)."""
        if self.verification is None:
            return []
        verification, self.verification = self.verification, None
        verification.wait()  # started a boundary ago: done long since, unless the disk is very slow
        self._taken = verification.request.request_id
        if self.data_dir is not None:
            done(self.data_dir, verification.request)
        return [self._activate(verification, packet, context)]

    def _take_request(self) -> PolicyRequest | None:
        """A new request in the control file (one stat), not the one just acted on."""
        if self.data_dir is None:
            return None
        request = take(self.data_dir, self.run_id)
        if request is None or request.request_id == self._taken:
            return None
        self._taken = request.request_id
        return request

    def _rollback_request(self, request: PolicyRequest, epoch: int) -> list[pb.EventEnvelope]:
        assert self.data_dir is not None
        done(self.data_dir, request)
        if not self.good:
            return []
        current = self.active.version
        self._use(self.good.pop())
        reason = f"operator rollback ({request.request_id})"
        return [self._event("PolicyRolledBack", self.active.version, current, reason, epoch)]

    def _activate(
        self, verification: _Verification, packet: pb.SystemStatePacket, context: ControllerContext
    ) -> pb.EventEnvelope:
        request, candidate = verification.request, verification.result
        error = verification.error
        if candidate is not None and not error and not verification.smoked:
            try:
                self._smoke(candidate, packet, context)
            except Exception as exc:
                error = f"policy {candidate.version}: smoke decision failed: {type(exc).__name__}: {exc}"
        if candidate is None or error:
            reason = f"refused: {error}"
            return self._event("PolicyRolledBack", self.active.version, request.version, reason, packet.epoch)
        previous = self.active
        self._use(candidate)
        self.good = [*self.good, previous][-GOOD_VERSIONS_KEPT:]
        reason = f"operator activation ({request.request_id})"
        return self._event("PolicyActivated", candidate.version, previous.version, reason, packet.epoch)

    def _smoke(
        self, candidate: VerifiedPolicy, packet: pb.SystemStatePacket, context: ControllerContext
    ) -> None:
        """The smoke decision on this boundary's graph, for a candidate verified without one (a resume)."""
        observation = self.observe(packet, context)
        level = effective_level(self.state.raw_levels)
        record = self.gnn.graph_inputs(self.state, observation, level, self.state.conservative)
        smoke(candidate.network, (record, self.gnn.blueprint_features(observation)), self.gnn.config.seed)

    def _use(self, policy: VerifiedPolicy) -> None:
        self.active = policy
        self.gnn.network = policy.network
        self.gnn.version = policy.version
        self.policy_version = policy.version

    def _event(
        self, event_type: str, version: str, previous: str, reason: str, epoch: int
    ) -> pb.EventEnvelope:
        refused = reason.startswith("refused")
        outcome = "activated" if event_type == "PolicyActivated" else "refused" if refused else "rolled_back"
        metrics.POLICY_CHANGES.labels(outcome=outcome).inc()
        payload = pb.PolicyActivation(version=version, previous_version=previous, reason=reason, epoch=epoch)
        return new_envelope(
            event_type,
            stream_name(CATEGORY, version),
            payload,
            run_id=self.run_id,
            epoch=epoch,
            source="tamiyo",
            occurred_at_ns=self._clock_ns(),
        )


def _encode(envelope: pb.EventEnvelope) -> str:
    return base64.b64encode(envelope.SerializeToString()).decode()


def _decode(text: str) -> pb.EventEnvelope:
    return pb.EventEnvelope.FromString(base64.b64decode(text))
