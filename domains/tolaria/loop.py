"""One epoch of training and evaluation, written top to bottom.

    order = epoch_order(seed, epoch, len(train))            # the batch order: a function of (seed, epoch)
    loss_sum, correct, grad_norm, steps = train_epoch(...)  # forward, loss, backward, step per batch
    val_loss, val_correct = evaluate(model, loss_fn, validation)
    measured = measure(epoch, sums, sizes, wall_ms)         # one host/device transfer per epoch

On a GPU the sums accumulate on the device and are read once, by `measure`: no per-batch host/device
synchronisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from domains.tolaria.data import Split, batches, eval_batches

EVAL_BATCH = 512
# logits kept before their predicted classes are taken in one kernel: fewer kernels per epoch, memory bounded
PREDICTION_BATCHES = 32


@dataclass
class EpochMeasurements:
    epoch: int
    training_loss: float
    training_accuracy: float
    validation_loss: float
    validation_accuracy: float
    grad_norm: float
    test_accuracy: float
    wall_ms: float


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    split: Split,
    order: torch.Tensor,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Sum of losses, correct predictions, the last step's gradient norm and the number of steps.

    Per batch the loop only keeps the detached loss and logits (no kernel beyond what a plain loop runs);
    the predicted classes are taken every PREDICTION_BATCHES batches, the sums once, after the last step."""
    model.train()
    device = split.inputs.device
    losses: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    predictions: list[torch.Tensor] = []
    for batch in batches(split, order, batch_size):
        optimizer.zero_grad(set_to_none=True)
        logits = model(batch.inputs)
        loss = loss_fn(logits, batch.targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        outputs.append(logits.detach())
        if len(outputs) == PREDICTION_BATCHES:
            predictions.append(torch.cat(outputs).argmax(dim=1))
            outputs.clear()
    if outputs:
        predictions.append(torch.cat(outputs).argmax(dim=1))
    steps = len(losses)
    if not steps:
        zero = torch.zeros((), device=device)
        return zero, torch.zeros((), dtype=torch.long, device=device), zero, 0
    sizes = torch.full((steps,), batch_size, dtype=torch.float64, device=device)
    sizes[-1] = len(order) - batch_size * (steps - 1)
    loss_sum = torch.dot(torch.stack(losses).to(torch.float64), sizes)
    targets = split.targets[order.to(device)]
    correct = (torch.cat(predictions) == targets).sum()
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    grad_norm = (
        torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if grads
        else torch.zeros((), device=device)
    )
    return loss_sum, correct, grad_norm, steps


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of losses and correct predictions over a split, in eval mode."""
    model.eval()
    device = split.inputs.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for batch in eval_batches(split, EVAL_BATCH):
        logits = model(batch.inputs)
        loss_sum += loss_fn(logits, batch.targets) * len(batch)
        correct += (logits.argmax(dim=1) == batch.targets).sum()
    return loss_sum, correct


@torch.no_grad()
def example_losses(model: nn.Module, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Each example's cross-entropy loss (the trainer's loss, unreduced) and the number of correct
    predictions over a split, in eval mode: the evidence of Kasmina's paired gates."""
    model.eval()
    losses = []
    correct = torch.zeros((), dtype=torch.long, device=split.inputs.device)
    for batch in eval_batches(split, EVAL_BATCH):
        logits = model(batch.inputs)
        losses.append(nn.functional.cross_entropy(logits, batch.targets, reduction="none"))
        correct += (logits.argmax(dim=1) == batch.targets).sum()
    return torch.cat(losses), correct


def measure(
    epoch: int, sums: list[torch.Tensor], sizes: tuple[int, int, int], tested: bool, wall_ms: float
) -> EpochMeasurements:
    """The epoch's measurements from its device-side sums (train loss and correct, validation loss and
    correct, gradient norm, test correct) and the train/validation/test sizes, in one transfer."""
    values = torch.stack([t.to(torch.float64) for t in sums]).tolist()
    n_train, n_val, n_test = sizes
    return EpochMeasurements(
        epoch=epoch,
        training_loss=values[0] / n_train,
        training_accuracy=values[1] / n_train,
        validation_loss=values[2] / n_val,
        validation_accuracy=values[3] / n_val,
        grad_norm=values[4],
        test_accuracy=values[5] / n_test if tested else 0.0,
        wall_ms=wall_ms,
    )
