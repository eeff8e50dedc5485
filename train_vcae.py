"""Stage 2 (Moving MNIST): train a convolutional VAE from frames to a latent code Z
(by default a 16 x 8 x 8 map; --latent_channels=0 gives the original's dense vector).

Reads data_path (from moving_mnist.py); writes the checkpoint, a PNG grid of originals
(top row) and reconstructions (bottom row), and the loss history as CSV and PNG.
"""
import os

import numpy as np
import torch

from data.h5 import read_frames
from models.checkpoints import record_inputs
from models.vcae import ConvVAE, kl_weight, vae_loss
from utils.batches import Batches
from utils.errors import UserError, run_cli
from utils.images import save_grid
from utils.runtime import PRECISIONS, check_outputs, pick_device, pick_precision, seed_everything
from utils.settings import parse_settings
from utils.training import fit

# -----------------------------------------------------------------------------
data_path = "data/moving_mnist.h5"  # dataset written by moving_mnist.py
checkpoint = "checkpoints/mm_vcae.pt"  # checkpoint to write (and resume from)
out_dir = "samples"  # reconstruction grid and loss curves go here
latent_channels = 16  # channels of a spatial Z map (8x8 at n_down=3); 0 = a dense Z of z_dim numbers [0, inf)
z_dim = 32  # size of a dense Z (latent_channels=0) [1, inf)
n_down = 3  # stride-2 convolutions (the dense Z was measured with 4) [1, inf)
base_width = 32  # channels of the first conv layer; each later one doubles [1, inf)
input_dropout = 0.0  # dropout on input pixels (the original: 0.3) [0, 1)
latent_samples = 1  # z samples per frame in the loss (the original: L=2) [1, inf)
train_frames = 40000  # frames drawn (once, seeded) from the training sequences; 0 = all [0, inf)
val_frames = 2000  # frames drawn from the val sequences for validation; 0 = all [0, inf)
epochs = 3  # passes over the train_frames [1, inf)
batch_size = 128  # frames per batch [1, inf)
lr = 1e-3  # Adam learning rate (the original's dense model used 3e-5) (0, inf)
kl_warmup = 1.0  # epochs over which the KL weight rises from 0 to 1; 0 = full weight at once [0, inf)
grad_clip = 0.0  # gradient-norm clipping; 0 = off [0, inf)
precision = "auto"  # auto (bfloat16 where the hardware runs it natively, else float32), float32, or bfloat16 autocast
channels_last = True  # convolutions in channels-last memory order (faster on CPUs, the results equal to rounding)
resume = False  # continue from the checkpoint if it exists
device = "auto"  # auto = cuda, then mps, else cpu
seed = 1337  # seeds the frame draw, the initial weights and the batch order
# -----------------------------------------------------------------------------


def sample_frames(sequences, n, rng):
    """Flatten (N, T, C, H, W) to frames and keep n of them (all when n <= 0), as a tensor."""
    frames = sequences.reshape(-1, *sequences.shape[2:])
    if 0 < n < len(frames):
        frames = frames[np.sort(rng.choice(len(frames), n, replace=False))]
    return torch.from_numpy(np.ascontiguousarray(frames))


def to_float(frames):
    return frames.float().div_(255.0)


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv, choices={"precision": PRECISIONS})
    check_outputs(files={"checkpoint": cfg.checkpoint}, folders={"out_dir": cfg.out_dir})
    rng = seed_everything(cfg.seed)
    dev = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, dev)

    train = sample_frames(read_frames(cfg.data_path, "train", "moving_mnist.py"), cfg.train_frames, rng)
    val = sample_frames(read_frames(cfg.data_path, "val", "moving_mnist.py"), cfg.val_frames, rng)
    print(f"{len(train)} training and {len(val)} validation frames of {tuple(train.shape[1:])} on {dev}")

    if train.shape[-1] % 2 ** cfg.n_down:
        raise UserError(f"2**n_down must divide the frame size {train.shape[-1]}: lower --n_down")
    model = ConvVAE(z_dim=cfg.z_dim, channels=train.shape[1], image_size=train.shape[-1],
                    base_width=cfg.base_width, n_down=cfg.n_down, input_dropout=cfg.input_dropout,
                    latent_channels=cfg.latent_channels).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    train_batches = Batches([train], cfg.batch_size, dev, shuffle=True, seed=cfg.seed, transform=to_float)
    val_batches = Batches([val], cfg.batch_size, dev, transform=to_float)

    fit(model, optimizer, train_batches, val_batches,
        # validation always reports the true negative ELBO (weight 1)
        lambda m, x: vae_loss(m, x, cfg.latent_samples, kl_weight(
            train_batches.step, len(train_batches), cfg.kl_warmup) if m.training else 1.0),
        epochs=cfg.epochs, lr=cfg.lr, grad_clip=cfg.grad_clip, precision=precision, channels_last=cfg.channels_last,
        resume=cfg.resume, checkpoint=cfg.checkpoint, made_by="train_vcae.py",
        out_dir=cfg.out_dir, settings=cfg, extra={"precision": precision, **record_inputs(cfg.checkpoint, data_path=cfg.data_path)})

    model.eval()
    originals = to_float(val[:10]).to(dev)
    with torch.no_grad():
        reconstructions = torch.sigmoid(model.decode(model.encode(originals)[0]))
    grid_path = os.path.join(cfg.out_dir, "mm_vcae_reconstructions.png")
    save_grid(grid_path, torch.stack([originals, reconstructions]).cpu())
    print(f"wrote {cfg.checkpoint} and {grid_path}")
    return model


if __name__ == "__main__":
    run_cli(main)
