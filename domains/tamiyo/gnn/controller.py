"""Tamiyo's controller around the learned policy, with versioned policies hot-reloaded into a live run.

`GnnController` is Tamiyo's controller (timeout, safe no-op, signing, state, field reports) running a
`GnnPolicy`, plus:
- at the first decision of a run, PolicyActivated for the version it starts with;
- at each epoch boundary, one look for an operator's request (`domains.tamiyo.policy_control`: one stat
  while the control file is unchanged). An activation is verified on the process's policy worker
  (`domains.tamiyo.gnn.reload`: signature, sha256, schema, shapes, and one smoke decision of the
  candidate on the graph of the boundary that took the request: finite outputs), so training never
  waits for it; the next boundary swaps the verified network in (a pointer swap) before deciding:
  PolicyActivated.
  A candidate that fails anywhere is refused with PolicyRolledBack (version = the active one,
  previous_version = the refused one, reason = the failure). A rollback request swaps back to the
  previous good version at the boundary that sees it: PolicyRolledBack;
- a decision of the active version that fails (error, non-finite outputs, timeout) is Tamiyo's safe no-op
  and rolls back to the last good version, if there is one, with PolicyRolledBack.
The events go on `policy-<version>` of the version now active. The checkpointed state holds the signed
publications of the active and earlier good versions, a request under verification and the id of the
last request taken, so a resumed run continues with the same policy, activates a pending one at the same
boundary and never applies a request twice. A request's control file goes (on the worker) only after a
capture of that state that records the request as done: until then a crash leaves it for the resumed run.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.message import Message

from domains.tamiyo import metrics
from domains.tamiyo.controller import TamiyoController
from domains.tamiyo.gnn.policy import GnnPolicy
from domains.tamiyo.gnn.reload import WORKER, Verification, release, remove_request, smoke
from domains.tamiyo.observation import Observation
from domains.tamiyo.policy_control import ACTIVATE, ROLLBACK, PolicyRequest, Seen, poll
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
        self.good: list[VerifiedPolicy] = []
        self.active = initial
        self.announced = False
        self.verification: Verification | None = None
        self._failed = False
        self._taken = ""  # the request id last taken from the control file (checkpointed)
        self._seen: Seen | None = None  # the control file as last looked at
        self._settled: list[PolicyRequest] = []  # taken and done with: files to remove after a capture
        self._released: list[object] = []  # dropped policies: freed on the worker at the next hand-off
        self._resumed: tuple[str, str] | None = None  # (version, reason): checkpointed, refused on resume
        self._use(initial)
        WORKER.start()  # here, so that no epoch boundary pays for starting it

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
        after: list[pb.EventEnvelope] = []
        if self._failed and self.good:
            failed = self.active.version
            self._use(self.good.pop())
            after.append(
                self._event("PolicyRolledBack", self.active.version, failed, "decision failed", packet.epoch)
            )
        output.events = [*before, *output.events, *after]
        if request is not None and request.action == ACTIVATE:  # last: the worker starts as the boundary ends
            observation = self.gnn.last_observation
            inputs = None if observation is None else (observation, self.gnn.features)
            self.verification = Verification(
                request, self.keyring, self.library, inputs, self.gnn.config.seed
            )
            self._hand_off(self.verification.run)
        return output

    def state_dict(self) -> Mapping[str, Any]:
        """The state a checkpoint captures; the control files of requests it records as done are then
        removed on the worker."""
        pending = self.verification.request.to_dict() if self.verification is not None else None
        state = {
            **super().state_dict(),
            "gnn": {
                "active": _encode(self.active.envelope),
                "good": [_encode(policy.envelope) for policy in self.good],
                "announced": self.announced,
                "pending": pending,
                "taken": self._taken,
            },
        }
        self._hand_off(captured=True)
        return state

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
        self._taken = str(saved.get("taken", ""))
        self._seen = None
        self._settled = []
        if saved["pending"] is not None:
            request = PolicyRequest.from_dict(saved["pending"])
            self._taken = request.request_id
            self.verification = Verification(request, self.keyring, self.library, None, self.gnn.config.seed)
            WORKER.submit(self.verification.run)

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
        verification.wait()  # submitted a boundary ago: done long since, unless the disk is very slow
        self._settled.append(verification.request)
        event = self._activate(verification, packet, context)
        self._released.append(verification)  # a refused candidate's network is freed on the worker
        return [event]

    def _hand_off(self, *jobs: Callable[[], None], captured: bool = False) -> None:
        """One put to the worker, so one wake a boundary at most (on a machine whose cores are all busy a
        wake can cost the training thread its core): jobs, then, after a capture of the state, the removal
        of the control files of the requests it records as done, then the release of dropped policies."""
        work = list(jobs)
        if captured:
            if self.data_dir is not None:
                work.extend(remove_request(self.data_dir, request) for request in self._settled)
            self._settled = []
        if self._released:
            work.append(release(self._released))
            self._released = []
        WORKER.submit(*work)

    def _take_request(self) -> PolicyRequest | None:
        """A new request in the control file (one stat while it is unchanged), not one already taken; a
        file still holding a request already done with (found again after a resume) is removed later."""
        if self.data_dir is None:
            return None
        self._seen, request = poll(self.data_dir, self.run_id, self._seen)
        if request is None:
            return None
        if request.request_id == self._taken:
            if self.verification is None or self.verification.request.request_id != request.request_id:
                self._settled.append(request)
            return None
        self._taken = request.request_id
        return request

    def _rollback_request(self, request: PolicyRequest, epoch: int) -> list[pb.EventEnvelope]:
        self._settled.append(request)
        if not self.good:
            return []
        current = self.active.version
        self._use(self.good.pop())
        reason = f"operator rollback ({request.request_id})"
        return [self._event("PolicyRolledBack", self.active.version, current, reason, epoch)]

    def _activate(
        self, verification: Verification, packet: pb.SystemStatePacket, context: ControllerContext
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
        kept = [*self.good, previous]
        self.good = kept[-GOOD_VERSIONS_KEPT:]
        self._use(candidate)
        self._released.extend(kept[:-GOOD_VERSIONS_KEPT])
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
        """Swap the policy in (pointers only); one no longer kept is freed on the worker."""
        previous = self.active
        self.active = policy
        self.gnn.network = policy.network
        self.gnn.version = policy.version
        self.policy_version = policy.version
        if previous is not policy and all(previous is not kept for kept in self.good):
            self._released.append(previous)

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
