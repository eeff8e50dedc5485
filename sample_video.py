"""Stage 4: predict video. Prime the LSTM on real frames, then let it run on its own.

For each of n_sequences test sequences: encode the first `context` frames to Z, feed them
to the LSTM, then feed back its own predictions for `horizon` steps; decode every Z to a
frame. Writes a GIF per sequence (ground truth left, prediction right; green border while
the model sees real frames, red once it generates) and a PNG strip (truth row above the
prediction row).
"""
import os

import numpy as np
import torch

from data.h5 import read_frames
from models import load_model
from models.codec import VAECodec
from utils.errors import UserError, run_cli
from utils.images import prediction_panels, save_gif, save_grid
from utils.runtime import pick_device, seed_everything
from utils.settings import parse_settings
from utils.training import load_checkpoint

# -----------------------------------------------------------------------------
lstm_checkpoint = "checkpoints/mm_lstm.pt"  # LSTM written by train_lstm.py
data_path = ""  # dataset to draw test sequences from; "" = the one the LSTM was trained on
vae_checkpoint = ""  # VAE to decode with; "" = the one the LSTM was trained on
out_dir = "samples"  # GIFs and PNG strips go here
prefix = "mm_sample"  # file names: <prefix>_<n>.gif and .png
n_sequences = 8  # test sequences to predict
first_sequence = 0  # index of the first test sequence used
context = 10  # real frames fed to the LSTM before it generates
horizon = 10  # frames it generates from its own output
frames_per_second = 4  # GIF speed
gif_scale = 2  # GIF pixels per frame pixel
device = "auto"  # auto = cuda, then mps, else cpu
seed = 1337  # seeds anything random in sampling
# -----------------------------------------------------------------------------


def predict(model, codec, sequences, context, horizon):
    """Prime on ``context`` real frames of ``sequences`` uint8 (N, T, C, H, W), generate
    ``horizon`` more. Returns float frames (N, context + horizon, C, H, W): the VAE's
    reconstructions of the context frames followed by the decoded predictions."""
    mean, _ = codec.encode(sequences[:, :context])
    with torch.no_grad():
        future = model.rollout(mean.to(codec.device), horizon).cpu()
    return codec.decode(torch.cat([mean, future], dim=1))


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv)
    if cfg.context < 1 or cfg.horizon < 1 or cfg.n_sequences < 1:
        raise UserError("--context, --horizon and --n_sequences must be at least 1")
    seed_everything(cfg.seed)
    dev = pick_device(cfg.device)

    lstm_ckpt = load_checkpoint(cfg.lstm_checkpoint, "train_lstm.py")
    vae_path = cfg.vae_checkpoint or lstm_ckpt["vae_checkpoint"]
    codec = VAECodec(load_model(load_checkpoint(vae_path, "train_vcae.py"), dev), dev)
    model = load_model(lstm_ckpt, dev)
    data_path = cfg.data_path or lstm_ckpt["data_path"]
    skip = lstm_ckpt.get("frame_skip", 1)
    test = read_frames(data_path, "test", "moving_mnist.py", cfg.first_sequence + cfg.n_sequences)
    test = test[cfg.first_sequence:, ::skip]
    if len(test) == 0:
        raise UserError(f"{data_path} has no test sequence at index {cfg.first_sequence}")
    if test.shape[1] < cfg.context:
        raise UserError(f"test sequences have {test.shape[1]} frames, fewer than --context={cfg.context}")

    predicted = predict(model, codec, test, cfg.context, cfg.horizon)
    steps = cfg.context + cfg.horizon
    truth = torch.from_numpy(test[:, :steps]).float() / 255.0
    if truth.shape[1] < steps:  # generated beyond the data: grey where there is no truth
        pad = torch.full((len(truth), steps - truth.shape[1], *truth.shape[2:]), 0.5)
        truth = torch.cat([truth, pad], dim=1)

    for i in range(len(test)):
        name = os.path.join(cfg.out_dir, f"{cfg.prefix}_{cfg.first_sequence + i:03d}")
        save_gif(name + ".gif", prediction_panels(truth[i], predicted[i], cfg.context, cfg.gif_scale),
                 cfg.frames_per_second)
        save_grid(name + ".png", torch.stack([truth[i], predicted[i]]))
    print(f"wrote {len(test)} GIFs and PNG strips to {cfg.out_dir}/ ({cfg.prefix}_*.gif, *.png)")


if __name__ == "__main__":
    run_cli(main)
