"""Stage 2 (film): a convolutional autoencoder whose conv layers become the feature extractor.

Reads data/film.h5 (from extract_pulp_frames.py); trains on random 64x64 crops with an MSE
loss, validates on centre crops of the test block. Writes the checkpoint, a grid of
originals (top) and reconstructions (bottom), and the loss history as CSV and PNG.
"""
import os

import torch

from data.film import crop_batches, spread_frames
from models.checkpoints import record_inputs
from models.film import ConvAutoencoder, pixel_mse
from utils.errors import UserError, run_cli
from utils.images import save_grid
from utils.runtime import check_outputs, pick_device, seed_everything
from utils.settings import parse_settings
from utils.training import fit

# -----------------------------------------------------------------------------
data_path = "data/film.h5"  # frames written by extract_pulp_frames.py
checkpoint = "checkpoints/film_cae.pt"  # checkpoint to write (and resume from)
out_dir = "samples"  # reconstruction grid and loss curves go here
crop = 64  # square crop size fed to the network [8, inf)
widths = [32, 64]  # channels of the conv layers, one halving each (the original: 16, 32, 32) [1, inf)
bottleneck = 0  # dense code between encoder and decoder (the original: 512); 0 = none [0, inf)
input_dropout = 0.2  # dropout on input pixels [0, 1)
epochs = 10  # passes over the training frames [1, inf)
batch_size = 8  # frames per batch [1, inf)
lr = 1e-3  # Adam learning rate (0, inf)
grad_clip = 10.0  # gradient-norm clipping; 0 = off [0, inf)
max_frames = 20000  # frames of a split held at once; a longer film is read in blocks, new ones each epoch; 0 = all [0, inf)
resume = False  # continue from the checkpoint if it exists
device = "auto"  # auto = cuda, then mps, else cpu
seed = 1337  # seeds the crops, the initial weights and the batch order
# -----------------------------------------------------------------------------


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv)
    if cfg.crop % 2 ** len(cfg.widths):
        raise UserError(f"--crop={cfg.crop} must be divisible by 2**{len(cfg.widths)} (one halving per width)")
    check_outputs(files={"checkpoint": cfg.checkpoint}, folders={"out_dir": cfg.out_dir})
    seed_everything(cfg.seed)
    dev = pick_device(cfg.device)
    train_batches, val_batches, val = crop_batches(cfg.data_path, cfg.crop, cfg.batch_size, dev,
                                                   cfg.seed, cfg.max_frames)

    model = ConvAutoencoder(channels=val.shape[1], image_size=cfg.crop, widths=cfg.widths,
                            bottleneck=cfg.bottleneck, input_dropout=cfg.input_dropout).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    fit(model, optimizer, train_batches, val_batches, lambda m, x: pixel_mse(m(x), x),
        epochs=cfg.epochs, lr=cfg.lr, grad_clip=cfg.grad_clip, resume=cfg.resume,
        checkpoint=cfg.checkpoint, made_by="train_cae.py", out_dir=cfg.out_dir, settings=cfg,
        extra=record_inputs(cfg.checkpoint, data_path=cfg.data_path))

    model.eval()
    originals = spread_frames(val, dev)
    with torch.no_grad():
        reconstructions = model(originals)
    grid_path = os.path.join(cfg.out_dir, "film_cae_reconstructions.png")
    save_grid(grid_path, (torch.stack([originals, reconstructions]) + 0.5).cpu())
    print(f"wrote {cfg.checkpoint} and {grid_path}")
    return model


if __name__ == "__main__":
    run_cli(main)
