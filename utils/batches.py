"""Mini-batches drawn from tensors held in memory, sharded over torchrun ranks."""
import math

import torch

from utils.runtime import rank_and_world


class Batches:
    """Mini-batches drawn from tensors held in memory.

    ``tensors`` share their first dimension; each batch is ``transform(*slices)`` of the
    rows picked, moved to ``device``. Shuffling is seeded by ``seed + epoch`` so a resumed
    run sees the same order it would have seen uninterrupted. Under torchrun each rank
    takes every world-th row of that order (shuffled sets are first cut to a multiple of
    the world size, so every rank runs the same number of steps).

    ``generator`` (a torch.Generator the transform draws from) is reseeded from ``seed``
    and the epoch at the start of each epoch.

    With ``refresh`` (a function epoch -> tensors) the tensors are replaced by
    ``refresh(epoch)`` once per epoch, before its first row is read: data drawn anew each
    epoch. ``tensors`` may then be None.
    """

    def __init__(self, tensors, batch_size, device, shuffle=False, seed=0, transform=None,
                 refresh=None, generator=None):
        self.batch_size, self.device = batch_size, device
        self.shuffle, self.seed = shuffle, seed
        self.transform = transform or (lambda *xs: xs if len(xs) > 1 else xs[0])
        self.epoch = self.step = 0
        self.rank, self.world = rank_and_world()
        self.refresh, self.loaded_epoch = refresh, None
        self.generator = generator
        if tensors is not None:
            self._hold(tensors)

    def _hold(self, tensors):
        self.tensors = tuple(tensors)
        n = len(self.tensors[0])
        self.n = n - n % self.world if self.shuffle else n

    def _current(self):
        if self.refresh is not None and self.loaded_epoch != self.epoch:
            self._hold(self.refresh(self.epoch))
            self.loaded_epoch = self.epoch

    def rows(self):
        """Indices this rank reads this epoch, in order."""
        self._current()
        if self.shuffle:
            order = torch.randperm(len(self.tensors[0]),
                                   generator=torch.Generator().manual_seed(self.seed + self.epoch))[:self.n]
        else:
            order = torch.arange(self.n)
        return order[self.rank::self.world]

    def __len__(self):
        self._current()
        return math.ceil(len(range(self.rank, self.n, self.world)) / self.batch_size)

    def __iter__(self):
        if self.generator is not None:  # per-epoch draws (random crops): the same after a resume
            self.generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        order = self.rows()
        for b in range(len(self)):
            self.step = self.epoch * len(self) + b  # batches served before this one, over all epochs
            rows = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.shuffle:  # sorted rows read faster from memory and keep batches identical
                rows = rows.sort().values
            parts = [t[rows].to(self.device, non_blocking=True) for t in self.tensors]
            yield self.transform(*parts)
