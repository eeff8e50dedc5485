"""The one training loop every stage uses, its learning-rate schedule and evaluation."""
import math
import os
import time

import torch
from tqdm import tqdm

from models.checkpoints import model_spec, resume_state, save_checkpoint
from utils.errors import UserError
from utils.images import plot_history, write_history_csv
from utils.runtime import (all_ranks_sum, autocast, is_main_process, progress, random_state, rank_and_world,
                           set_random_state, to_channels_last)


class LossStep(torch.nn.Module):
    """``loss_fn(model, batch)`` as a module, so DistributedDataParallel can wrap the whole
    step (the loss functions call model methods other than forward)."""

    def __init__(self, model, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


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


def fit(model, optimizer, train_batches, val_batches, loss_fn, *, epochs, lr, checkpoint,
        made_by, out_dir, settings, lr_schedule="constant", grad_clip=0.0, precision="float32",
        channels_last=False, resume=False, extra=None):
    """Train ``model`` for ``epochs`` epochs, checkpointing after each one; the checkpoint
    also keeps the weights of the epoch with the lowest validation loss (``best_state``),
    which ``model`` holds when this returns.

    Args:
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``, the mean loss of a batch.
        epochs: the total number of epochs (a resumed run trains the ones left).
        lr, lr_schedule: Adam's peak learning rate and its schedule (see lr_factor; a
            function of the step alone, so a resumed run continues it); an optimizer
            parameter group's ``lr_scale`` (1 where absent) scales it for that group.
        checkpoint: where the checkpoint goes (and, with ``resume``, is resumed from).
        made_by: this script's name, for error messages.
        out_dir: folder for ``<checkpoint stem>_loss.csv`` and ``_loss.png``.
        settings: the run's Settings, stored in the checkpoint (with its presets).
        grad_clip: gradient-norm clipping (0 = off); precision: see autocast.
        channels_last: convolution weights in channels-last memory order (faster convolutions
            on CPUs; results equal to rounding). The checkpoint records it for load_model.
        extra: more entries for the checkpoint (e.g. which checkpoint fed this stage).
    Returns:
        the history dict {"epoch", "train_loss", "val_loss", "seconds" (whole epoch),
        "train_seconds" (its training part)}.
    """
    history = {"epoch": [], "train_loss": [], "val_loss": [], "seconds": [], "train_seconds": [], "lr": []}
    if channels_last:
        to_channels_last(model)
    start, best, earlier_seconds = 0, None, 0.0
    if resume and os.path.isfile(checkpoint):
        start, saved, ckpt = resume_state(checkpoint, model, optimizer, made_by)
        earlier_seconds = ckpt.get("stage_seconds", 0.0)
        history.update({key: saved.get(key, [""] * start) for key in history})  # older ones lack a column
        if start >= epochs:
            print(f"{checkpoint} is already trained for {start} epochs (--epochs={epochs}): "
                  "nothing to do; raise --epochs to train on")
        else:
            print(f"resuming from {checkpoint} after epoch {start}")
        if "random_state" in ckpt:
            set_random_state(ckpt["random_state"])
        if "best_state" in ckpt:
            best, best_epoch = ckpt["best_state"], ckpt["best_epoch"]
    stem = os.path.splitext(os.path.basename(checkpoint))[0]
    params = [p for p in model.parameters() if p.requires_grad]
    step = LossStep(model, loss_fn)
    if rank_and_world()[1] > 1:  # under torchrun: gradients averaged over ranks
        from torch.nn.parallel import DistributedDataParallel
        device = next(model.parameters()).device
        step = DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None)
    for epoch in range(start, epochs):
        train_batches.epoch = epoch
        model.train()
        began, total, count = time.time(), 0.0, 0
        bar = progress(train_batches, desc=f"{stem} epoch {epoch + 1}/{epochs}")
        for b, batch in enumerate(bar):
            if lr_schedule != "constant":
                for group in optimizer.param_groups:
                    group["lr"] = group.get("lr_scale", 1.0) * lr * lr_factor(epoch * len(train_batches) + b,
                                                 epochs * len(train_batches), lr_schedule)
            with autocast(model, precision):
                loss = step(batch).float()
            if not torch.isfinite(loss):
                raise UserError(f"the training loss became {loss.item()} in epoch {epoch + 1}: "
                                "lower --lr or --grad_clip and run again")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
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
                           ("train_seconds", round(train_seconds, 3)),
                           ("lr", optimizer.param_groups[0]["lr"])):
            history[key].append(value)
        if is_main_process():
            tqdm.write(f"{stem} epoch {epoch + 1}/{epochs}: train {history['train_loss'][-1]:.5g}"
                       f"  val {val_loss:.5g}  ({seconds:.0f} s)")
        best_epoch = 1 + min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__)
        if best_epoch == epoch + 1:
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        save_checkpoint(checkpoint, {
            **model_spec(model),
            "model_state": model.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "epoch": epoch + 1,
            "history": history,
            "best_val_loss": min(history["val_loss"]),
            "best_epoch": best_epoch,
            "best_state": best,
            "settings": dict(settings),
            "random_state": random_state(),
            "presets": list(getattr(settings, "presets", ())),
            "channels_last": channels_last,
            # the stage's time so far, from its settings being read, over every run resumed
            "stage_seconds": round(earlier_seconds + time.time() - getattr(settings, "started", time.time()), 2),
            **(extra or {}),
        })
        write_history_csv(os.path.join(out_dir, f"{stem}_loss.csv"), history)
        plot_history(os.path.join(out_dir, f"{stem}_loss.png"), history, f"{stem}: loss per epoch")
    if rank_and_world()[1] > 1:  # nobody leaves before rank 0 has written the last checkpoint
        import torch.distributed as dist
        dist.barrier()
    if best is not None:
        model.load_state_dict(best)
        if is_main_process() and len(history["val_loss"]) > 1:
            print(f"kept the weights of epoch {best_epoch} (validation loss {min(history['val_loss']):.5g})")
    return history
