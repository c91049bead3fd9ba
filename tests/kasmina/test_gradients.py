"""The gradient window: SeedGradientsMeasured for the first epochs after a germination, seed vs host."""

from __future__ import annotations

import math
from typing import Any

import torch

from domains.kasmina.gradients import per_parameter
from leyline import decode_payload, pb
from tests.kasmina.helpers import TinyCNN
from tests.kasmina.test_torch import boundary, host_parameters, to_training, train


def test_the_window_records_seed_and_host_gradient_norms_per_parameter_then_stops() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    kasmina, _, optimizer = to_training(host)  # germinated at epoch 1
    window = kasmina.config.gradient_window_epochs
    host_params = [p for _, p in host_parameters(host)]
    squares: list[float] = []

    def independent(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for p in host_params if p.grad is not None]
        squares.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) ** 2)

    optimizer.register_step_pre_hook(independent)
    records: list[pb.SeedGradientsMeasured] = []
    expected_host: list[float] = []
    for epoch in range(2, window + 4):
        events = boundary(kasmina, host, epoch)
        if epoch > 2:
            expected_host.append(math.sqrt(sum(squares) / len(squares)))
        squares.clear()
        for envelope in events:
            if envelope.event_type == "SeedGradientsMeasured":
                payload = decode_payload(envelope)
                assert isinstance(payload, pb.SeedGradientsMeasured)
                assert envelope.stream == f"seed-{kasmina.run_id}.0" and envelope.epoch == epoch
                records.append(payload)
        train(host, optimizer, steps=3)

    # TRAINING (monitor armed) from the boundary of epoch 2; then each boundary up to germination + window
    assert [r.epoch for r in records] == list(range(3, 2 + window))
    seed_size = sum(p.numel() for p in host.slot0.seed.parameters())  # type: ignore[union-attr]
    host_size = sum(p.numel() for p in host_params)
    for record, host_norm in zip(records, expected_host, strict=False):
        assert record.steps == 3 and record.epochs_since_germination == record.epoch - 1
        assert (record.seed_parameters, record.host_parameters) == (seed_size, host_size)
        assert math.isclose(record.host_gradient_norm, host_norm, rel_tol=1e-5)
        assert record.seed_gradient_norm > 0
        assert math.isclose(record.seed_norm_per_parameter, record.seed_gradient_norm / math.sqrt(seed_size))
        assert math.isclose(record.host_norm_per_parameter, per_parameter(host_norm, host_size), rel_tol=1e-5)
    assert host.slot0.monitor.host_sq is None and host.slot0.monitor.host_params == []  # window closed
