"""Training GoogLeNet in PyTorch: a ``DataLoader`` over a ``Dataset``, an optimizer, the standard loop.

Runs unchanged under ``torchrun --nproc_per_node N``: with ``WORLD_SIZE > 1`` the model is wrapped
in ``DistributedDataParallel`` (gloo on the CPU, NCCL on GPUs), a ``DistributedSampler`` gives each
process its share of every batch, and only rank 0 evaluates and writes logs and checkpoints.
"""

from __future__ import annotations

import datetime
import os

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

import impl_torch

from shared_spec.contract import ContractError
from shared_spec.protocol import EpochStats


class Images(Dataset):
    """uint8 NCHW images and their labels; one example at a time, as torch datasets do."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def collate(preprocess, resize: int):
    """Stack a batch and preprocess it the suite's way (``preprocess``, the driver's ``data.preprocess``:
    float32 in [0, 1], resized)."""
    def batch(items):
        images, labels = zip(*items)
        x = preprocess(np.stack(images), resize=resize)  # N x C x resize x resize
        return torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64)
    return batch


def train_epoch(model, loader, optimizer, aux_weights, device, desc=None) -> tuple[float, int, int, int]:
    """One pass over ``loader``. Returns (sum of losses, correct, examples, steps)."""
    model.train()
    loss_sum, correct, n, steps = 0.0, 0, 0, 0
    for x, y in tqdm(loader, desc=desc, disable=desc is None, unit="batch"):  # a progress bar per epoch
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        out = model(x)  # N x classes; in training mode with aux heads on: (main, aux1, aux2)
        main, *aux = out if isinstance(out, tuple) else (out,)
        loss = F.cross_entropy(main, y)
        for weight, logits in zip(aux_weights, aux, strict=True):
            loss = loss + weight * F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(y)
        correct += (main.argmax(dim=1) == y).sum().item()
        n += len(y)
        steps += 1
    return loss_sum, correct, n, steps


class Trainer:
    """The recipe's model, optimizer and loader, for the epoch driver in ``train.py``."""

    def __init__(self, spec, recipe, *, preprocess):
        self.recipe, self.spec, self.preprocess = recipe, spec, preprocess
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.started_group = False
        if self.world > 1 and not dist.is_initialized():
            if recipe.batch % self.world:
                raise ContractError(f"--batch {recipe.batch} must be divisible by the {self.world} processes")
            if torch.cuda.is_available() and recipe.device != "cpu":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if torch.cuda.is_available() and recipe.device != "cpu" else "gloo")
            self.started_group = True
        self.rank = dist.get_rank() if self.world > 1 else 0
        self.is_main = self.rank == 0
        torch.manual_seed(recipe.seed)  # dropout masks (the weights' own seed is build's)
        self.model = impl_torch.build(spec, device=recipe.device, seed=recipe.seed)  # same seed: same init everywhere
        self.device = next(self.model.parameters()).device
        self.net = DistributedDataParallel(self.model) if self.world > 1 else self.model
        if recipe.optimizer == "sgd":  # d2l's plain SGD: no momentum, no weight decay, no state
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=recipe.lr)
            self.optimizer_suffix = None
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=recipe.lr)
            self.optimizer_suffix = ".pt"  # its moments and step counts, torch.save'd
        self.aux_weights = [head.loss_weight for head in spec.aux_heads]

    def loader(self, ds, order) -> DataLoader:
        dataset = Subset(Images(ds.x_train, ds.y_train), order)  # this epoch's order, from data.batches
        # Several processes: rank r takes order[r::world], so the ranks' batches k together are the
        # single-process batch k (DistributedSampler pads the last one with repeats to divide evenly).
        sampler = DistributedSampler(dataset, shuffle=False) if self.world > 1 else None
        return DataLoader(dataset, batch_size=self.recipe.batch // self.world, sampler=sampler,
                          collate_fn=collate(self.preprocess, self.recipe.resize))

    def train_epoch(self, ds, order, epoch, *, progress=True) -> EpochStats:
        desc = f"epoch {epoch}/{self.recipe.epochs}" if progress and self.is_main else None
        loss_sum, correct, n, steps = train_epoch(self.net, self.loader(ds, order), self.optimizer,
                                                  self.aux_weights, self.device, desc)
        if self.world > 1:  # every process's sums, so rank 0 logs the whole epoch
            totals = torch.tensor([loss_sum, correct, n], dtype=torch.float64)
            dist.all_reduce(totals)
            loss_sum, correct, n = totals.tolist()
        return EpochStats(loss=loss_sum / n, accuracy=correct / n, examples=int(n), steps=steps)

    def save_optimizer(self, path: str) -> None:
        torch.save(self.optimizer.state_dict(), path)

    def load_optimizer(self, path: str | None, *, steps: int) -> None:
        if path is not None:
            self.optimizer.load_state_dict(torch.load(path, weights_only=True))  # weights_only: no code runs

    def close(self) -> None:
        if self.started_group:
            # every rank here before any tears down: rank 0 still evaluates and writes checkpoints after the last
            # epoch, and a gloo peer destroyed meanwhile can abort the other process at exit. Bounded: a rank that
            # failed never arrives, and its own error is the one to report
            try:
                if dist.get_backend() == "gloo":
                    dist.monitored_barrier(timeout=datetime.timedelta(seconds=120))
                else:
                    dist.barrier()
            except RuntimeError:
                pass
            dist.destroy_process_group()
