"""Stage 3 (Moving MNIST) / 5 (film): train an LSTM to predict the next frame's latent code Z.

Reads the dataset and the trained encoder (the VAE for Moving MNIST; CAE + VAE on conv
features for the film); encodes every frame once, in large batches, to the mean and
log-variance of Z; trains the LSTM on windows of Z with an MSE loss on Z or a KL loss
between Gaussians. Film windows use a frame skip of 3, stay within one shot, and come
from several fixed crops of each frame (training) or the centre crop (validation).
Writes the checkpoint (recording which encoder it was trained on) and the loss history.
"""
import torch

from data.sequences import fill_branch_defaults, split_clips, windows
from models.codec import load_codec
from models.lstm import LatentLSTM, prediction_loss
from utils.errors import UserError, run_cli
from utils.runtime import pick_device, seed_everything
from utils.settings import parse_settings
from utils.training import Batches, fit

# -----------------------------------------------------------------------------
dataset = "mnist"  # which branch: mnist or film
data_path = ""  # "" = data/moving_mnist.h5 (mnist) or data/film.h5 (film)
vae_checkpoint = ""  # "" = checkpoints/mm_vcae.pt or checkpoints/film_vae_on_convs.pt
checkpoint = ""  # checkpoint to write; "" = checkpoints/mm_lstm.pt or checkpoints/film_lstm.pt
out_dir = "samples"  # loss curves go here
loss = "mse"  # mse (squared error on Z), kl (predicted Gaussian vs the encoder's) or mdn (mixture likelihood)
components = 5  # mdn: Gaussian components per Z dimension
diffs = False  # predict the change of Z between frames instead of Z itself
rollout = False  # after train_context true frames, feed the LSTM its own predictions (False: teacher forcing throughout, as the original; it scored better here)
train_context = 0  # true frames before the rollout; 0 = the sampling context (10 mnist, 5 film)
hidden = 512  # LSTM units per layer (the original: 1024; 512 trains 4x faster and scored better here)
layers = 2  # stacked LSTM layers
dropout = 0.3  # dropout before each LSTM layer
seq_len = 0  # frames per training window; 0 = 20 (mnist) or 10 (film)
frame_skip = 0  # use every n-th frame; 0 = 1 (mnist) or 3 (film)
film_crops = 3  # film: fixed crops per frame encoded for training (1 = centre only)
train_sequences = 0  # mnist: training sequences to use; 0 = all
epochs = 20  # passes over the training windows
batch_size = 0  # windows per batch; 0 = 128 (mnist) or 16 (film)
lr = 1e-3  # Adam learning rate (the original: 1e-4)
grad_clip = 10.0  # gradient-norm clipping; 0 = off
resume = False  # continue from the checkpoint if it exists
device = "auto"  # auto = cuda, then mps, else cpu
seed = 1337  # seeds the initial weights and the batch order
# -----------------------------------------------------------------------------


def encode_windows(codec, cfg, split, n_crops, limit=0):
    """Z of every frame of ``split`` (mean, logvar, each (F, z_dim)) and the training
    windows into them (W, seq_len)."""
    frames, lengths, cuts = split_clips(cfg.dataset, cfg.data_path, split, n_crops=n_crops, limit=limit)
    index = windows(lengths, cuts, cfg.seq_len, cfg.frame_skip)
    if len(index) == 0:
        raise UserError(f"no {split} window of {cfg.seq_len} frames {cfg.frame_skip} apart fits in "
                        f"{cfg.data_path} without crossing a cut: lower --seq_len or --frame_skip")
    mean, logvar = codec.encode(frames[None], desc=f"encoding {split} frames")
    return mean[0], logvar[0], index


def sequence_loss(model, batch, kind, context):
    """Loss of predicting Z[t+1] for every t of a window; batch = (mean, logvar), each (B, T, z).
    ``context`` true frames are fed before the LSTM runs on its own predictions."""
    mean, logvar = batch
    return prediction_loss(model.unroll(mean, context), mean[:, 1:], logvar[:, 1:], kind)


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv,
                         choices={"dataset": ("mnist", "film"), "loss": ("mse", "kl", "mdn")})
    fill_branch_defaults(cfg, {"checkpoint": "lstm_checkpoint", "train_context": "context"})
    if cfg.seq_len < 2 or cfg.frame_skip < 1 or cfg.epochs < 1 or cfg.batch_size < 1 or cfg.film_crops < 1:
        raise UserError("--seq_len must be at least 2; --frame_skip, --epochs, --batch_size "
                        "and --film_crops at least 1")
    seed_everything(cfg.seed)
    dev = pick_device(cfg.device)

    codec = load_codec(cfg.dataset, cfg.vae_checkpoint, dev)
    train_mean, train_logvar, train_index = encode_windows(
        codec, cfg, "train", cfg.film_crops if cfg.dataset == "film" else 1, cfg.train_sequences)
    val_mean, val_logvar, val_index = encode_windows(codec, cfg, "test", 1)
    print(f"{len(train_index)} training and {len(val_index)} validation windows of {cfg.seq_len} "
          f"latent codes (z_dim {codec.z_dim}, frame skip {cfg.frame_skip}) on {dev}")

    train_mean, train_logvar, val_mean, val_logvar = (
        t.to(dev) for t in (train_mean, train_logvar, val_mean, val_logvar))
    model = LatentLSTM(z_dim=codec.z_dim, hidden=cfg.hidden, layers=cfg.layers,
                       dropout=cfg.dropout, output={"mse": "mean", "kl": "gaussian", "mdn": "mdn"}[cfg.loss],
                       components=cfg.components, diffs=cfg.diffs).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    context = cfg.train_context if cfg.rollout else cfg.seq_len
    train_batches = Batches([train_index], cfg.batch_size, dev, shuffle=True, seed=cfg.seed,
                            transform=lambda i: (train_mean[i], train_logvar[i]))
    val_batches = Batches([val_index], cfg.batch_size, dev,
                          transform=lambda i: (val_mean[i], val_logvar[i]))

    fit(model, optimizer, train_batches, val_batches,
        lambda m, b: sequence_loss(m, b, cfg.loss, context), cfg, cfg.checkpoint, "train_lstm.py",
        cfg.out_dir, extra={"dataset": cfg.dataset, "data_path": cfg.data_path,
                            "vae_checkpoint": cfg.vae_checkpoint, "frame_skip": cfg.frame_skip})
    print(f"wrote {cfg.checkpoint}")
    return model


if __name__ == "__main__":
    run_cli(main)
