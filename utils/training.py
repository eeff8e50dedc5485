"""Checkpoints, in-memory mini-batches and the one training loop every stage uses."""
import math
import os
import time

import torch
from tqdm import tqdm

from utils.errors import UserError
from utils.images import plot_history, write_history_csv
from utils.runtime import atomic_path, is_main_process, progress, rank_and_world


def save_checkpoint(path, state):
    """torch.save ``state`` to ``path`` through a temporary file."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path, made_by):
    """Load a checkpoint written by ``made_by`` (a script name), weights only, onto the CPU."""
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path}: run {made_by} first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a checkpoint, or holds arbitrary objects
        raise UserError(f"checkpoint {path} cannot be loaded ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}): run {made_by} again") from None


class Batches:
    """Mini-batches drawn from tensors held in memory.

    ``tensors`` share their first dimension; each batch is ``transform(*slices)`` of the
    rows picked, moved to ``device``. Shuffling is seeded by ``seed + epoch`` so a resumed
    run sees the same order it would have seen uninterrupted. Under torchrun each rank
    takes every world-th row of that order (shuffled sets are first cut to a multiple of
    the world size, so every rank runs the same number of steps).

    With ``refresh`` (a function epoch -> tensors) the tensors are replaced by
    ``refresh(epoch)`` once per epoch, before its first row is read: data drawn anew each
    epoch. ``tensors`` may then be None.
    """

    def __init__(self, tensors, batch_size, device, shuffle=False, seed=0, transform=None,
                 refresh=None):
        self.batch_size, self.device = batch_size, device
        self.shuffle, self.seed = shuffle, seed
        self.transform = transform or (lambda *xs: xs if len(xs) > 1 else xs[0])
        self.epoch = self.step = 0
        self.rank, self.world = rank_and_world()
        self.refresh, self.loaded_epoch = refresh, None
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
        order = self.rows()
        for b in range(len(self)):
            self.step = self.epoch * len(self) + b  # batches served before this one, over all epochs
            rows = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.shuffle:  # sorted rows read faster from memory and keep batches identical
                rows = rows.sort().values
            parts = [t[rows].to(self.device, non_blocking=True) for t in self.tensors]
            yield self.transform(*parts)


class LossStep(torch.nn.Module):
    """``loss_fn(model, batch)`` as a module, so DistributedDataParallel can wrap the whole
    step (the loss functions call model methods other than forward)."""

    def __init__(self, model, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


def all_ranks_sum(*values):
    """Sum floats over the torchrun ranks (identity in a single process)."""
    if rank_and_world()[1] == 1:
        return values
    import torch.distributed as dist
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return tuple(t.tolist())


def model_spec(model):
    """What rebuilds ``model``: its class name and constructor arguments."""
    return {"model_kind": type(model).__name__, "model_args": dict(model.args)}


def resume_state(path, model, optimizer, made_by):
    """Restore model and optimizer from ``path``; return (epochs done, history, checkpoint)."""
    ckpt = load_checkpoint(path, made_by)
    spec = model_spec(model)
    if ckpt.get("model_kind") != spec["model_kind"] or ckpt.get("model_args") != spec["model_args"]:
        raise UserError(f"cannot resume from {path}: it holds {ckpt.get('model_kind')} "
                        f"{ckpt.get('model_args')}, the settings build {spec['model_kind']} "
                        f"{spec['model_args']}; use the same settings or --resume=false")
    model.load_state_dict(ckpt["model_state"])
    optimizer.load_state_dict(ckpt["optimizer_state"])
    return ckpt["epoch"], ckpt["history"], ckpt


def autocast(where, precision):
    """A context that runs forward passes in ``precision``: float32 (no autocast) or
    bfloat16 (torch.autocast on the device ``where`` is, a model or a torch.device: matrix
    products and convolutions in bfloat16, reductions and the loss in float32)."""
    device = where if isinstance(where, torch.device) else next(where.parameters()).device
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def evaluate(model, batches, loss_fn, precision="float32"):
    """Mean of ``loss_fn`` over ``batches``, weighted by batch size, without gradients."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            with autocast(model, precision):
                loss = loss_fn(model, batch)
            n = (batch[0] if isinstance(batch, (tuple, list)) else batch).shape[0]
            total += loss.item() * n
            count += n
    total, count = all_ranks_sum(total, count)
    return total / max(count, 1)


def lr_factor(step, total, schedule):
    """The learning rate's multiplier at optimizer step ``step`` of ``total``: 1 for
    ``constant``; for ``cosine``, a linear warm-up from 1/25 over the first 10% of the
    steps, then a half cosine down to 0 at the last step."""
    if schedule == "constant":
        return 1.0
    warm = max(1, total // 10)
    if step < warm:
        return 0.04 + 0.96 * step / warm
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def fit(model, optimizer, train_batches, val_batches, loss_fn, cfg, checkpoint_path,
        made_by, out_dir, extra=None):
    """Train ``model`` for ``cfg.epochs`` epochs, checkpointing after each one.

    Args:
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``, the mean loss of a batch.
        cfg: Settings; uses ``epochs``, ``grad_clip`` (0 = off), ``resume``, ``lr`` and
            ``lr_schedule`` (see lr_factor; constant when absent; a function of the step
            alone, so a resumed run continues it), ``precision`` (see autocast; float32
            when absent) and all of it is stored in the checkpoint.
        checkpoint_path: where the checkpoint goes (and is resumed from).
        made_by: this script's name, for error messages.
        out_dir: folder for ``<checkpoint stem>_loss.csv`` and ``_loss.png``.
        extra: more entries for the checkpoint (e.g. which checkpoint fed this stage).
    Returns:
        the history dict {"epoch", "train_loss", "val_loss", "seconds" (whole epoch),
        "train_seconds" (its training part)}.
    """
    history = {"epoch": [], "train_loss": [], "val_loss": [], "seconds": [], "train_seconds": []}
    start = 0
    if cfg.resume and os.path.isfile(checkpoint_path):
        start, history, _ = resume_state(checkpoint_path, model, optimizer, made_by)
        print(f"resuming from {checkpoint_path} after epoch {start}")
    stem = os.path.splitext(os.path.basename(checkpoint_path))[0]
    params = [p for p in model.parameters() if p.requires_grad]
    step = LossStep(model, loss_fn)
    if rank_and_world()[1] > 1:  # under torchrun: gradients averaged over ranks
        from torch.nn.parallel import DistributedDataParallel
        device = next(model.parameters()).device
        step = DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None)
    schedule = cfg.get("lr_schedule", "constant")
    precision = cfg.get("precision", "float32")
    for epoch in range(start, cfg.epochs):
        train_batches.epoch = epoch
        model.train()
        began, total, count = time.time(), 0.0, 0
        bar = progress(train_batches, desc=f"{stem} epoch {epoch + 1}/{cfg.epochs}")
        for b, batch in enumerate(bar):
            if schedule != "constant":
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * lr_factor(epoch * len(train_batches) + b,
                                                     cfg.epochs * len(train_batches), schedule)
            with autocast(model, precision):
                loss = step(batch).float()
            if not torch.isfinite(loss):
                raise UserError(f"the training loss became {loss.item()} in epoch {epoch + 1}: "
                                "lower --lr or --grad_clip and run again")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            n = (batch[0] if isinstance(batch, (tuple, list)) else batch).shape[0]
            total += loss.item() * n
            count += n
            bar.set_postfix(loss=f"{total / count:.4g}")
        train_seconds = time.time() - began
        total, count = all_ranks_sum(total, count)
        val_loss = evaluate(model, val_batches, loss_fn, precision)
        seconds = time.time() - began
        for key, value in (("epoch", epoch + 1), ("train_loss", total / max(count, 1)),
                           ("val_loss", val_loss), ("seconds", round(seconds, 2)),
                           ("train_seconds", round(train_seconds, 3))):
            history[key].append(value)
        if is_main_process():
            tqdm.write(f"{stem} epoch {epoch + 1}/{cfg.epochs}: train {history['train_loss'][-1]:.5g}"
                       f"  val {val_loss:.5g}  ({seconds:.0f} s)")
        save_checkpoint(checkpoint_path, {
            **model_spec(model),
            "model_state": model.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "epoch": epoch + 1,
            "history": history,
            "best_val_loss": min(history["val_loss"]),
            "settings": dict(cfg),
            **(extra or {}),
        })
        write_history_csv(os.path.join(out_dir, f"{stem}_loss.csv"), history)
        plot_history(os.path.join(out_dir, f"{stem}_loss.png"), history, f"{stem}: loss per epoch")
    if rank_and_world()[1] > 1:  # nobody leaves before rank 0 has written the last checkpoint
        import torch.distributed as dist
        dist.barrier()
    return history
