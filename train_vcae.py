"""Stage 2 (Moving MNIST): train a convolutional VAE from frames to a latent code Z
(by default a 16 x 8 x 8 map; --latent_channels=0 gives the original's dense vector).

Reads data_path (from moving_mnist.py); writes the checkpoint, a PNG grid of originals
(top row) and reconstructions (bottom row), and the loss history as CSV and PNG.
"""
import os

import numpy as np
import torch

from data.h5 import read_frames
from models.vcae import ConvVAE, bernoulli_elbo_loss
from utils.errors import UserError, run_cli
from utils.images import save_grid
from utils.runtime import pick_device, seed_everything
from utils.settings import parse_settings
from utils.training import Batches, fit

# -----------------------------------------------------------------------------
data_path = "data/moving_mnist.h5"  # dataset written by moving_mnist.py
checkpoint = "checkpoints/mm_vcae.pt"  # checkpoint to write (and resume from)
out_dir = "samples"  # reconstruction grid and loss curves go here
latent_channels = 16  # a spatial Z: channels of its map (8x8 for 64x64 frames and n_down=3); 0 = a dense Z of z_dim numbers (the original)
z_dim = 32  # size of a dense Z (latent_channels=0)
n_down = 3  # stride-2 convolutions (the dense Z was measured with 4)
base_width = 32  # channels of the first conv layer; each later one doubles
input_dropout = 0.0  # dropout on input pixels (the original: 0.3)
latent_samples = 1  # z samples per frame in the loss (the original: L=2)
train_frames = 40000  # frames drawn (once, seeded) from the training sequences; 0 = all
val_frames = 2000  # frames drawn from the test sequences for validation; 0 = all
epochs = 4  # passes over the train_frames
batch_size = 128  # frames per batch
lr = 1e-3  # Adam learning rate (the original's dense model used 3e-5)
kl_warmup = 1.0  # epochs over which the KL term's weight rises from 0 to 1, so Z is in use before it is squeezed (without it a spatial Z can collapse to the mean frame); 0 = full weight from the start
grad_clip = 0.0  # gradient-norm clipping; 0 = off
precision = "float32"  # float32, or bfloat16 (autocast: about twice as fast on CPUs with AMX or AVX512-BF16, and on recent GPUs)
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


def vae_loss(model, x, samples, kl_weight=1.0):
    logits, mean, logvar = model(x, samples)
    return bernoulli_elbo_loss(logits, x, mean, logvar, kl_weight)


def kl_weight(batches, warmup_epochs):
    """The KL weight at the batch ``batches`` is serving: linear from 0 to 1 over the first
    ``warmup_epochs`` epochs (a function of the step, so a resumed run continues it)."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, batches.step / (warmup_epochs * len(batches)))


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv, choices={"precision": ("float32", "bfloat16")})
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.latent_samples < 1:
        raise UserError("--epochs, --batch_size and --latent_samples must be at least 1")
    rng = seed_everything(cfg.seed)
    dev = pick_device(cfg.device)

    train = sample_frames(read_frames(cfg.data_path, "train", "moving_mnist.py"), cfg.train_frames, rng)
    val = sample_frames(read_frames(cfg.data_path, "test", "moving_mnist.py"), cfg.val_frames, rng)
    print(f"{len(train)} training and {len(val)} validation frames of {tuple(train.shape[1:])} on {dev}")

    if cfg.latent_channels < 0 or cfg.n_down < 1 or train.shape[-1] % 2 ** cfg.n_down:
        raise UserError(f"--latent_channels must be 0 or more, and --n_down at least 1 with "
                        f"2**n_down dividing the frame size {train.shape[-1]}")
    model = ConvVAE(z_dim=cfg.z_dim, channels=train.shape[1], image_size=train.shape[-1],
                    base_width=cfg.base_width, n_down=cfg.n_down, input_dropout=cfg.input_dropout,
                    latent_channels=cfg.latent_channels).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    train_batches = Batches([train], cfg.batch_size, dev, shuffle=True, seed=cfg.seed, transform=to_float)
    val_batches = Batches([val], cfg.batch_size, dev, transform=to_float)

    fit(model, optimizer, train_batches, val_batches,
        # validation always reports the true negative ELBO (weight 1)
        lambda m, x: vae_loss(m, x, cfg.latent_samples,
                              kl_weight(train_batches, cfg.kl_warmup) if m.training else 1.0),
        cfg, cfg.checkpoint,
        "train_vcae.py", cfg.out_dir, extra={"data_path": cfg.data_path})

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
