"""Tamiyo's learned policy: a hetero-GNN over the host's graph (SPEC §10).

- `topology.host_topology(model, input_shape)`: the host's layers and slots (pb.HostTopology);
- `graph.build_graph(observation)`: a PolicyObservation → HeteroData (documented features and edges);
  `graph.graph_from_decision` rebuilds a logged decision's graph;
- `masking.legal_actions`: the legal factored actions, from Tamiyo's own eligibility rules;
- `network.PolicyNetwork`: encoders, GraphSAGE then GAT, heads for operation, slot, blueprint, risk, value;
- `sampling.sample` / `sampling.evaluate`: masked factored sampling and the log-probabilities PPO needs;
- `policy.GnnPolicy`: the policy Tamiyo's controller runs; `controller.GnnController`: hot reload;
- `build.gnn_controller`, `build.resolve_policy`: the wiring the composition root uses.
"""
