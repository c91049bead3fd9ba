"""Tamiyo's learned policy: a hetero-GNN over the host's graph (SPEC §10).

- `topology.host_topology(model, input_shape)`: the host's layers and slots (pb.HostTopology);
- `graph.policy_graph(observation)` / `graph.build_graph`: a PolicyObservation → the graph as tensors /
  as HeteroData (documented features and edges); `graph.decision_graph` / `graph.graph_from_decision`
  rebuild a logged decision's; `tensors.collate`: a batch of graphs as one disjoint union;
- `record.ObservationRecorder`: the PolicyObservation a decision records (the GNN's and the exploring
  heuristic's);
- `masking.legal_actions`: the legal factored actions, from Tamiyo's own eligibility rules;
- `layers`: GraphSAGE and GAT in plain torch; `network.PolicyNetwork`: encoders, GraphSAGE then GAT,
  heads for operation, slot, blueprint, risk, value;
- `sampling.sample` / `sampling.evaluate`: masked factored sampling and the log-probabilities PPO needs;
- `policy.GnnPolicy`: the policy Tamiyo's controller runs; `controller.GnnController`: hot reload;
- `build.gnn_controller`, `build.resolve_policy`: the wiring the composition root uses.
"""
