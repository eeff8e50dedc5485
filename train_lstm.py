"""Stage 3: train an LSTM to predict the next frame's latent code Z.

Reads the dataset and the trained VAE checkpoint; encodes every training sequence to Z
(mean and log-sigma) once, in large batches; trains the LSTM on Z sequences with an MSE
loss on Z or a KL loss between Gaussians. Writes its checkpoint (recording which VAE it
was trained on) and the loss history as CSV and PNG.
"""
import torch

from data.h5 import read_frames
from models import load_model
from models.codec import VAECodec
from models.lstm import LatentLSTM, gaussian_kl, latent_mse
from utils.errors import UserError, run_cli
from utils.runtime import pick_device, seed_everything
from utils.settings import parse_settings
from utils.training import Batches, fit, load_checkpoint

# -----------------------------------------------------------------------------
dataset = "mnist"  # which branch: mnist
data_path = "data/moving_mnist.h5"  # dataset written by moving_mnist.py
vae_checkpoint = "checkpoints/mm_vcae.pt"  # VAE written by train_vcae.py
checkpoint = "checkpoints/mm_lstm.pt"  # checkpoint to write (and resume from)
out_dir = "samples"  # loss curves go here
loss = "mse"  # mse (squared error on Z) or kl (predicted Gaussian vs the encoder's)
diffs = False  # predict the change of Z between frames instead of Z itself
hidden = 1024  # LSTM units per layer (the original: 1024)
layers = 2  # stacked LSTM layers
dropout = 0.3  # dropout before each LSTM layer
seq_len = 20  # frames per training sequence (random windows when shorter than the data)
frame_skip = 1  # use every n-th frame (the film branch uses 3)
train_sequences = 0  # training sequences to use; 0 = all
epochs = 6  # passes over the training sequences
batch_size = 128  # sequences per batch
lr = 1e-3  # Adam learning rate (the original: 1e-4)
grad_clip = 10.0  # gradient-norm clipping; 0 = off
resume = False  # continue from the checkpoint if it exists
device = "auto"  # auto = cuda, then mps, else cpu
seed = 1337  # seeds the initial weights and the batch order
# -----------------------------------------------------------------------------


def encode_split(codec, cfg, split, limit=0):
    frames = read_frames(cfg.data_path, split, "moving_mnist.py", limit)[:, ::cfg.frame_skip]
    if frames.shape[1] < 2:
        raise UserError(f"{cfg.data_path} {split} sequences have {frames.shape[1]} frame(s) "
                        f"after --frame_skip={cfg.frame_skip}: at least 2 are needed")
    return codec.encode(frames, desc=f"encoding {split} frames")


def random_windows(length, generator):
    """A batch transform that crops each batch to a random window of ``length`` steps."""
    def crop(mean, logvar):
        if mean.shape[1] <= length:
            return mean, logvar
        start = int(torch.randint(0, mean.shape[1] - length + 1, (1,), generator=generator))
        return mean[:, start:start + length], logvar[:, start:start + length]
    return crop


def sequence_loss(model, batch, kind):
    """Teacher-forced loss of predicting Z[t+1] from Z[1..t]; batch = (mean, logvar) (B, T, z)."""
    mean, logvar = batch
    pred_mean, pred_log_sigma, _ = model(mean[:, :-1])
    if kind == "kl":
        return gaussian_kl(mean[:, 1:], logvar[:, 1:], pred_mean, pred_log_sigma)
    return latent_mse(pred_mean, mean[:, 1:])


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv,
                         choices={"dataset": ("mnist",), "loss": ("mse", "kl")})
    if cfg.seq_len < 2 or cfg.frame_skip < 1 or cfg.epochs < 1 or cfg.batch_size < 1:
        raise UserError("--seq_len must be at least 2; --frame_skip, --epochs and --batch_size at least 1")
    seed_everything(cfg.seed)
    dev = pick_device(cfg.device)

    vae_ckpt = load_checkpoint(cfg.vae_checkpoint, "train_vcae.py")
    codec = VAECodec(load_model(vae_ckpt, dev), dev)
    train = encode_split(codec, cfg, "train", cfg.train_sequences)
    val = encode_split(codec, cfg, "test")
    print(f"{len(train[0])} training and {len(val[0])} validation sequences of "
          f"{train[0].shape[1]} latent codes (z_dim {codec.z_dim}) on {dev}")

    model = LatentLSTM(z_dim=codec.z_dim, hidden=cfg.hidden, layers=cfg.layers,
                       dropout=cfg.dropout, predict_sigma=cfg.loss == "kl", diffs=cfg.diffs).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    windows = random_windows(cfg.seq_len, torch.Generator().manual_seed(cfg.seed))
    train_batches = Batches(train, cfg.batch_size, dev, shuffle=True, seed=cfg.seed, transform=windows)
    val_batches = Batches(val, cfg.batch_size, dev)

    fit(model, optimizer, train_batches, val_batches,
        lambda m, b: sequence_loss(m, b, cfg.loss), cfg, cfg.checkpoint, "train_lstm.py",
        cfg.out_dir, extra={"dataset": cfg.dataset, "data_path": cfg.data_path,
                            "vae_checkpoint": cfg.vae_checkpoint, "frame_skip": cfg.frame_skip})
    print(f"wrote {cfg.checkpoint}")
    return model


if __name__ == "__main__":
    run_cli(main)
