"""The training configuration, in one place (recorded with every training run)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from domains.simic.ppo import PPOConfig
from domains.simic.reward import RewardConfig
from domains.tamiyo.gnn.network import PolicyNetwork


@dataclass(frozen=True)
class ReplayConfig:
    max_transitions: int = 4096
    max_age: int = 4  # rounds


@dataclass(frozen=True)
class AdapterConfig:
    """LoRA settings (domains/simic/lora.py)."""

    rank: int = 4
    alpha: int = 8
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainingConfig:
    # the value phase: 50 passes of the value head alone after each update. Without it the value head got
    # ~16 clipped joint steps per round and explained variance stayed near 0 (-0.18 to 0.3 at the last of
    # 3 rounds); with it 0.85-0.9, measured on a logged 3 x 4-episode training replayed offline
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(value_epochs=50))
    reward: RewardConfig = field(default_factory=RewardConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    lora: bool = False  # train LoRA adapters (domains/simic/lora.py) over the frozen base policy
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trainable_network(network: PolicyNetwork, config: TrainingConfig) -> PolicyNetwork:
    """The network PPO updates: `network` itself, or with `lora: true` adapters over it, frozen."""
    if not config.lora:
        return network
    from domains.simic.lora import attach  # peft imports transformers: only when LoRA is on

    return attach(network, config.adapter)
