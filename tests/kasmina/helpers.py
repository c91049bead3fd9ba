"""Hosts, seed modules, a module source and signed commands for Kasmina's tests."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from domains.karn import building, catalog
from domains.karn.blueprint import Use
from domains.kasmina import Evaluation, FactorySource, Kasmina, KasminaConfig, LifecycleConfig, SeedSlot
from leyline import new_envelope, pb
from leyline.signing import Keyring, Signer, Verifier

RUN = "r-test"


class TinyCNN(nn.Module):
    """8×8 single-channel images, one slot on [4, 8, 8] feature maps, 10 classes."""

    def __init__(self, slots: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.slot0 = SeedSlot(0, pb.SLOT_KIND_CONV2D, (4, 8, 8))
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.slot1 = SeedSlot(1, pb.SLOT_KIND_CONV2D, (4, 8, 8)) if slots > 1 else nn.Identity()
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.slot0(torch.relu(self.conv1(x)))
        x = self.slot1(torch.relu(self.conv2(x)))
        return self.head(x.flatten(1))


class TinyTransformer(nn.Module):
    """Token sequences of length 6 over a 16-word vocabulary, one slot on [6, 8], 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.position = nn.Parameter(torch.randn(6, 8) * 0.1)
        self.encoder = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.slot0 = SeedSlot(0, pb.SLOT_KIND_SEQUENCE, (6, 8))
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.slot0(self.encoder(self.embed(x) + self.position))
        return self.head(h.mean(1))


class Residual(nn.Module):
    """x + f(x) on the feature axis: a `kernel`×`kernel` conv for feature maps (1×1 unless said), a linear
    layer for sequences."""

    def __init__(self, kind: int, shape: tuple[int, ...], kernel: int = 1) -> None:
        super().__init__()
        self.kind = kind
        features = shape[0] if kind == pb.SLOT_KIND_CONV2D else shape[-1]
        self.f = (
            nn.Conv2d(features, features, kernel, padding=kernel // 2)
            if kind == pb.SLOT_KIND_CONV2D
            else nn.Linear(features, features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


class Leaky(Residual):
    """Breaks isolation: reads a host parameter it was handed (a seed closing over host state)."""

    def __init__(self, kind: int, shape: tuple[int, ...], host_parameter: nn.Parameter) -> None:
        super().__init__(kind, shape)
        # behind a function: neither registered as the seed's own nor copied with the module
        self.host_parameter = lambda: host_parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.host_parameter().sum() * 0.01


class NanOutput(Residual):
    """Every output is NaN: the fault of the nan_injection blueprint at period 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * math.nan


class WrongShape(nn.Module):
    def __init__(self, kind: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


def source(leak_into: nn.Parameter | None = None, drill: bool = False) -> FactorySource:
    factories = {
        "BP_RES": lambda kind, shape, params: Residual(kind, shape),
        "BP_RES3": lambda kind, shape, params: Residual(kind, shape, kernel=3),
        "BP_NAN": lambda kind, shape, params: NanOutput(kind, shape),
        "BP_SHAPE": lambda kind, shape, params: WrongShape(kind, shape),
    }
    if leak_into is not None:
        factories["BP_LEAK"] = lambda kind, shape, params: Leaky(kind, shape, leak_into)
    return FactorySource(factories, quarantined={"BP_NAN"}, drill=drill)


class Commander:
    """Tamiyo's side: signs AdaptationCommandIssued envelopes."""

    def __init__(self, keyring: Keyring, run_id: str = RUN) -> None:
        self.signer = Signer(keyring)
        self.run_id = run_id

    def command(
        self,
        operation: int,
        slot: int = 0,
        blueprint_id: str = "BP_RES",
        command_id: str | None = None,
        parameters: Mapping[str, float] | None = None,
        alpha_ramp_epochs: int = 0,
    ) -> pb.EventEnvelope:
        command_id = command_id or uuid.uuid4().hex
        command = pb.AdaptationCommand(
            command_id=command_id,
            command_type=pb.COMMAND_TYPE_SEED,
            target_slot=slot,
            seed_operation=pb.SeedOperationCommand(
                operation=operation,  # type: ignore[arg-type]
                blueprint_id=blueprint_id,
                parameters=dict(parameters or {}),
                alpha_ramp_epochs=alpha_ramp_epochs,
            ),
            issued_by="test",
        )
        envelope = new_envelope(
            "AdaptationCommandIssued",
            f"command-{command_id}",
            pb.AdaptationCommandIssued(command=command),
            run_id=self.run_id,
            source="tamiyo",
        )
        return self.signer.sign(envelope)


def manager(
    host: nn.Module,
    lifecycle: LifecycleConfig | None = None,
    leak_into: nn.Parameter | None = None,
    drill: bool = False,
    warmup_epochs: int | None = None,
    **changes: Any,
) -> tuple[Kasmina, Commander]:
    """A Kasmina on host; `changes` replace KasminaConfig fields (lr_schedule, run_epochs, ...)."""
    keyring = Keyring.generate()
    config = dataclasses.replace(KasminaConfig(lifecycle=lifecycle or LifecycleConfig()), **changes)
    if warmup_epochs is not None:
        config = dataclasses.replace(config, warmup_epochs=warmup_epochs)
    kasmina = Kasmina(RUN, host, source(leak_into, drill), Verifier(keyring), config)
    return kasmina, Commander(keyring)


def evaluator(host: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Evaluation:
    was_training = host.training
    host.eval()
    with torch.no_grad():
        logits = host(x)
        losses = nn.functional.cross_entropy(logits, y, reduction="none")
        accuracy = float((logits.argmax(1) == y).float().mean())
    host.train(was_training)
    return Evaluation(float(losses.mean()), accuracy, losses)


def karn(drill: bool) -> FactorySource:
    def factory_for(blueprint_id: str):  # type: ignore[no-untyped-def]
        def factory(kind: int, shape: tuple[int, ...], parameters: Mapping[str, float]) -> nn.Module:
            return building.build(blueprint_id, parameters, kind, shape, use=Use.DRILL if drill else Use.LIVE)

        return factory

    quarantined = {b.blueprint_id for b in catalog.CATALOGUE if b.quarantine_only}
    factories = {b.blueprint_id: factory_for(b.blueprint_id) for b in catalog.CATALOGUE}
    return FactorySource(factories, quarantined=quarantined, drill=drill)
