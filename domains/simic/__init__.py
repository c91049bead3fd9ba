"""Simic: the controller learns from the log.

- `ppo`: PPO in one module (GAE, clipped ratio, value loss, entropy per head, KL early stop, diagnostics),
  generic over `ppo.ActorCritic`;
- `cartpole`: the correctness check of `ppo` on gymnasium's CartPole-v1 (tests and benchmarks only);
- `reward`: the episode reward, in one place;
- `experience`: trajectories rebuilt from the log alone, and the replay buffer;
- `gnn`: Tamiyo's GNN policy as a `ppo.ActorCritic` and `learn`; `lora`: peft adapters over a frozen base
  policy; `config`: TrainingConfig; `metrics`: Prometheus metrics of the updates.
"""
