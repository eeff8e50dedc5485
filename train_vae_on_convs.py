"""Stage 4 (film): a VAE from the CAE's conv features to a latent Z: a spatial map
(latent_channels at the features' size, by default) or the original's 256-d vector.

Reads data/film.h5, the CAE checkpoint (frozen) and, for the picture of the whole chain,
the deconvoluter checkpoint. Gaussian likelihood with a learned log-sigma (per channel,
or per dimension for the dense Z) floored at -10, as the original. Writes the checkpoint, a grid with rows: originals;
image -> features -> deconv; image -> features -> Z -> features -> deconv (the full
chain the LSTM works through), and the loss history as CSV and PNG.
"""
import os

import torch

from data.film import crop_batches, spread_frames
from models.film import FeatureConvVAE, FeatureVAE
from utils.errors import run_cli
from utils.images import save_grid
from utils.runtime import check_outputs, pick_device, seed_everything
from utils.settings import parse_settings
from models.checkpoints import check_lineage, load_checkpoint, load_model, record_inputs
from utils.training import fit

# -----------------------------------------------------------------------------
data_path = "data/film.h5"  # frames written by extract_pulp_frames.py
cae_checkpoint = "checkpoints/film_cae.pt"  # feature extractor written by train_cae.py
deconv_checkpoint = "checkpoints/film_deconv.pt"  # features -> image, written by train_deconv.py
checkpoint = "checkpoints/film_vae_on_convs.pt"  # checkpoint to write (and resume from)
out_dir = "samples"  # grid and loss curves go here
latent_channels = 8  # channels of a spatial Z map at the features' size; 0 = a dense Z of z_dim [0, inf)
z_dim = 256  # size of a dense Z (latent_channels=0; the original) [1, inf)
hidden = 64  # hidden channels of the conv VAE, or softplus units of the dense one (latent_channels=0) [1, inf)
log_sigma_floor = -10.0  # lower bound of the learned log-sigma of the features
latent_samples = 2  # z samples per frame in the loss (the original: L=2) [1, inf)
epochs = 15  # passes over the training frames [1, inf)
batch_size = 32  # frames per batch [1, inf)
lr = 1e-3  # Adam learning rate (the original: 1e-5, on a far longer film) (0, inf)
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
    deconv_ckpt = load_checkpoint(cfg.deconv_checkpoint, "train_deconv.py")
    check_lineage(deconv_ckpt, cfg.deconv_checkpoint, "cae_checkpoint", cfg.cae_checkpoint, "train_deconv.py")
    deconv = load_model(deconv_ckpt, dev)
    train_batches, val_batches, val = crop_batches(cfg.data_path, cae.args["image_size"],
                                                   cfg.batch_size, dev, cfg.seed,
                                                   cfg.max_frames)

    if cfg.latent_channels:
        model = FeatureConvVAE(feature_shape=cae.feature_shape, latent_channels=cfg.latent_channels,
                               hidden=cfg.hidden, log_sigma_floor=cfg.log_sigma_floor).to(dev)
    else:
        model = FeatureVAE(feature_shape=cae.feature_shape, z_dim=cfg.z_dim, hidden=cfg.hidden,
                           log_sigma_floor=cfg.log_sigma_floor).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    fit(model, optimizer, train_batches, val_batches,
        lambda m, x: m.loss(cae.features(x), cfg.latent_samples),
        epochs=cfg.epochs, lr=cfg.lr, grad_clip=cfg.grad_clip, resume=cfg.resume,
        checkpoint=cfg.checkpoint, made_by="train_vae_on_convs.py", out_dir=cfg.out_dir,
        settings=cfg, extra=record_inputs(cfg.checkpoint, data_path=cfg.data_path,
                                          cae_checkpoint=cfg.cae_checkpoint,
                                          deconv_checkpoint=cfg.deconv_checkpoint))

    model.eval()
    originals = spread_frames(val, dev)
    with torch.no_grad():
        features = cae.features(originals)
        direct = deconv(features)
        chain = deconv(model.decode(model.encode(features)[0]))
    grid_path = os.path.join(cfg.out_dir, "film_vae_on_convs_chain.png")
    save_grid(grid_path, (torch.stack([originals, direct, chain]) + 0.5).cpu())
    print(f"wrote {cfg.checkpoint} and {grid_path}")
    return model


if __name__ == "__main__":
    run_cli(main)
