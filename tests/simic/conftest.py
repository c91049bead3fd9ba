"""One intra-op thread for the Simic tests (small networks on two shared cores; FIELD-NOTES)."""

import torch

torch.set_num_threads(1)
