"""One intra-op thread for the GNN tests: with more on two shared cores, tiny graph kernels spend
milliseconds each waiting for busy workers (FIELD-NOTES: two threads made the tail worse)."""

import torch

torch.set_num_threads(1)
