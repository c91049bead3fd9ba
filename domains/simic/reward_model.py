"""The reward model of the doubly robust estimate (domains/simic/ope.py), fitted on the logged decisions.

Q̂(s, a) predicts the return still to come after decision t (the unshaped rewards of t and every later
decision of the episode, `reward.run_return`'s terms) from the observation's graph-level features `u`
(validation accuracy and loss, epoch, parameters, active seeds, ...: domains/tamiyo/gnn/graph.py) and the
action's operation (no-op, germinate, cull; the slot and blueprint are averaged into it):

    Q̂(s, a) = c + φ(s)·β + c_op(a) + φ(s)·β_op(a),    φ = u standardised over the fitted transitions,

a ridge regression (penalty RIDGE on all but the intercept c) whose per-operation terms shrink
towards the shared β, so an operation seldom or never taken falls back to the shared prediction.
V̂(s) = Σ_op π(op|s) Q̂(s, op) with the candidate's operation probabilities.

Cross-fitted: the episodes are split into FOLDS by their index; each fold's predictions come from a model
fitted on the others (one fold, the model of all, when there are too few episodes), so an episode's own
return never enters its Q̂. Float64, closed form: deterministic on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

RIDGE = 1.0
FOLDS = 2
OPERATIONS = 3


def _design(phi: torch.Tensor, operation: torch.Tensor) -> torch.Tensor:
    """[N, d + (1 + d)·OPERATIONS]: the shared features, then (1, φ) in the block of each row's operation
    (the 1: the operation's own offset)."""
    ones = torch.ones((phi.shape[0], 1), dtype=phi.dtype)
    own = torch.cat([ones, phi], dim=1)
    blocks = [phi] + [own * (operation == k).unsqueeze(1).to(phi.dtype) for k in range(OPERATIONS)]
    return torch.cat(blocks, dim=1)


class RidgeQ:
    def __init__(self, u: torch.Tensor, operation: torch.Tensor, target: torch.Tensor) -> None:
        u = u.double()
        self.mean = u.mean(dim=0)
        self.std = u.std(dim=0, unbiased=False).clamp(min=1e-6)
        x = _design(self._phi(u), operation)
        y = target.double()
        self.intercept = y.mean()
        x_mean = x.mean(dim=0)
        centred = x - x_mean
        gram = centred.T @ centred + RIDGE * torch.eye(x.shape[1], dtype=torch.float64)
        self.beta = torch.linalg.solve(gram, centred.T @ (y - self.intercept))
        self.x_mean = x_mean

    def _phi(self, u: torch.Tensor) -> torch.Tensor:
        return (u.double() - self.mean) / self.std

    def q_all(self, u: torch.Tensor) -> torch.Tensor:
        """[N, OPERATIONS]: Q̂ of every operation at each state."""
        phi = self._phi(u)
        columns = []
        for k in range(OPERATIONS):
            operation = torch.full((phi.shape[0],), k, dtype=torch.long)
            columns.append((_design(phi, operation) - self.x_mean) @ self.beta + self.intercept)
        return torch.stack(columns, dim=1)


def returns_to_go(rewards: Sequence[float]) -> list[float]:
    out, running = [], 0.0
    for reward in reversed(rewards):
        running += reward
        out.append(running)
    return out[::-1]


def cross_fitted(
    u: Sequence[torch.Tensor],
    operations: Sequence[torch.Tensor],
    rewards: Sequence[Sequence[float]],
    op_probs: Sequence[torch.Tensor],
) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """Per episode (its features [T, d], operations [T], unshaped rewards, the candidate's operation
    probabilities [T, OPERATIONS]): Q̂ of the logged actions and V̂ under the candidate, cross-fitted.
    No episodes, nothing to fit: none back (the estimate is then NaN, domains/simic/ope.py)."""
    n = len(u)
    if n == 0:
        return []
    folds = FOLDS if n >= 2 * FOLDS else 1
    targets = [torch.tensor(returns_to_go(r), dtype=torch.float64) for r in rewards]
    out: list[tuple[tuple[float, ...], tuple[float, ...]]] = [((), ())] * n
    for fold in range(folds):
        fitted = [i for i in range(n) if folds == 1 or i % folds != fold]
        model = RidgeQ(
            torch.cat([u[i] for i in fitted]),
            torch.cat([operations[i] for i in fitted]),
            torch.cat([targets[i] for i in fitted]),
        )
        for i in range(n):
            if folds > 1 and i % folds != fold:
                continue
            q = model.q_all(u[i])
            logged = q.gather(1, operations[i].unsqueeze(1)).squeeze(1)
            value = (q * op_probs[i].double()).sum(dim=1)
            out[i] = (tuple(float(v) for v in logged), tuple(float(v) for v in value))
    return out
