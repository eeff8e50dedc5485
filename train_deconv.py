"""Stage 3 (film): the "deconvoluter", from the CAE's conv features back to the image.

Reads data/film.h5 and the CAE checkpoint (kept frozen); trains on random crops with an
MSE loss. Writes the checkpoint, a grid of originals (top) and images rebuilt from their
features (bottom), and the loss history as CSV and PNG.
"""
import os

import torch

from data.film import crop_batches, spread_frames
from models.film import Deconvolver, pixel_mse
from utils.errors import run_cli
from utils.images import save_grid
from utils.runtime import check_outputs, pick_device, seed_everything
from utils.settings import parse_settings
from models.checkpoints import load_checkpoint, load_model, record_inputs
from utils.training import fit

# -----------------------------------------------------------------------------
data_path = "data/film.h5"  # frames written by extract_pulp_frames.py
cae_checkpoint = "checkpoints/film_cae.pt"  # feature extractor written by train_cae.py
checkpoint = "checkpoints/film_deconv.pt"  # checkpoint to write (and resume from)
out_dir = "samples"  # grid and loss curves go here
epochs = 30  # passes over the training frames [1, inf)
batch_size = 32  # frames per batch (the original: 128, on a far longer film) [1, inf)
lr = 3e-3  # Adam learning rate (0, inf)
grad_clip = 10.0  # gradient-norm clipping; 0 = off [0, inf)
max_frames = 20000  # frames of a split held at once; a longer film is read in blocks, new ones each epoch; 0 = all [0, inf)
resume = False  # continue from the checkpoint if it exists
device = "auto"  # auto = cuda, then mps, else cpu
seed = 1337  # seeds the crops, the initial weights and the batch order
# -----------------------------------------------------------------------------


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv)
    check_outputs(files={"checkpoint": cfg.checkpoint}, folders={"out_dir": cfg.out_dir})
    seed_everything(cfg.seed)
    dev = pick_device(cfg.device)
    cae = load_model(load_checkpoint(cfg.cae_checkpoint, "train_cae.py"), dev).requires_grad_(False)
    crop = cae.args["image_size"]
    train_batches, val_batches, val = crop_batches(cfg.data_path, crop, cfg.batch_size, dev,
                                                   cfg.seed, cfg.max_frames)

    model = Deconvolver(channels=cae.args["channels"], widths=cae.args["widths"]).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    fit(model, optimizer, train_batches, val_batches, lambda m, x: pixel_mse(m(cae.features(x)), x),
        epochs=cfg.epochs, lr=cfg.lr, grad_clip=cfg.grad_clip, resume=cfg.resume,
        checkpoint=cfg.checkpoint, made_by="train_deconv.py", out_dir=cfg.out_dir, settings=cfg,
        extra=record_inputs(cfg.checkpoint, data_path=cfg.data_path, cae_checkpoint=cfg.cae_checkpoint))

    model.eval()
    originals = spread_frames(val, dev)
    with torch.no_grad():
        rebuilt = model(cae.features(originals))
    grid_path = os.path.join(cfg.out_dir, "film_deconv_reconstructions.png")
    save_grid(grid_path, (torch.stack([originals, rebuilt]) + 0.5).cpu())
    print(f"wrote {cfg.checkpoint} and {grid_path}")
    return model


if __name__ == "__main__":
    run_cli(main)
