"""Last stage, both branches: predict video. Prime the LSTM on real frames, then let it
run on its own output.

For n_sequences test windows: encode the first `context` frames to Z, feed them to the
LSTM, then feed back its own predictions for `horizon` steps; decode every Z to a frame.
Writes a GIF per window (ground truth left, prediction right; green border while the model
sees real frames, red once it generates) and a PNG strip (truth row above prediction row).
Everything it needs comes from the LSTM checkpoint: dataset, encoder, frame skip.
"""
import os

import numpy as np
import torch

from data.branches import BRANCHES
from data.sequences import windows
from models.checkpoints import load_checkpoint, load_model
from utils.errors import UserError, run_cli
from utils.images import prediction_panels, save_gif, save_grid
from utils.metrics import StepAverages, write_report
from utils.runtime import pick_device, seed_everything
from utils.settings import parse_settings

# -----------------------------------------------------------------------------
dataset = "mnist"  # which branch: mnist or film (the settings marked * in --help follow it)
lstm_checkpoint = "checkpoints/mm_lstm.pt"  # LSTM from train_lstm.py (film: checkpoints/film_lstm.pt)
data_path = ""  # dataset to draw test windows from; empty = the one the LSTM was trained on
vae_checkpoint = ""  # encoder/decoder; empty = the one the LSTM was trained on
out_dir = "samples"  # GIFs, PNG strips and the metrics report go here
prefix = "mm_sample"  # file names <prefix>_<n>.gif/.png (film: film_sample)
n_sequences = 8  # test windows to predict [1, inf)
first_sequence = 0  # skip this many test windows [0, inf)
context = 10  # real frames fed before generating (film: 5) [1, inf)
horizon = 10  # frames generated from the LSTM's own output (film: 5) [1, inf)
temperature = 0.0  # 0 = feed back the predicted mean; > 0 = sample (kl, mdn) at this temperature [0, inf)
n_eval = 1000  # test windows scored for the metrics report; 0 = none [0, inf)
eval_batch = 250  # windows per batch while scoring [1, inf)
frames_per_second = 4  # GIF speed (0, inf)
gif_scale = 2  # GIF pixels per frame pixel [1, inf)
device = "auto"  # auto = cuda, then mps, else cpu
seed = 1337  # seeds anything random in sampling
# -----------------------------------------------------------------------------


def predict(model, codec, sequences, context, horizon, temperature=0.0):
    """Prime on ``context`` real frames of ``sequences`` uint8 (N, T, C, H, W), generate
    ``horizon`` more. Returns float frames (N, context + horizon, C, H, W): the codec's
    reconstructions of the context frames followed by the decoded predictions."""
    mean, _ = codec.encode(sequences[:, :context])
    with torch.no_grad():
        future = model.rollout(mean.to(codec.device), horizon, temperature).cpu()
    return codec.decode(torch.cat([mean, future], dim=1))


def mean_training_frame(branch, data_path):
    """Pixel-wise mean of (up to 1000 sequences of) the training frames, float (C, H, W) in [0, 1]."""
    frames = branch.read_clips(data_path, "train", limit=1000)[0]
    total = torch.zeros(frames.shape[1:], dtype=torch.float64)
    for s in range(0, len(frames), 4096):
        total += torch.from_numpy(frames[s:s + 4096]).double().sum(0)
    return (total / len(frames) / 255.0).float()


def score(model, codec, frames, context, horizon, mean_frame, batch_size, temperature=0.0):
    """Per-step metrics of the model and the baselines on uint8 windows (N, context + horizon, ...).

    Baselines: copy_last (the last context frame, repeated), mean_frame (the mean training
    frame) and autoencoder (the true future frames through encode -> decode: the ceiling
    the LSTM cannot beat, separating the autoencoder's error from the LSTM's)."""
    methods = {name: StepAverages() for name in ("model", "copy_last", "mean_frame", "autoencoder")}
    for s in range(0, len(frames), batch_size):
        window = frames[s:s + batch_size]
        truth = torch.from_numpy(window[:, context:]).float() / 255.0
        last = torch.from_numpy(window[:, context - 1:context]).float() / 255.0
        methods["model"].add(predict(model, codec, window, context, horizon, temperature)[:, context:], truth)
        methods["copy_last"].add(last.expand_as(truth), truth)
        methods["mean_frame"].add(mean_frame.expand_as(truth), truth)
        methods["autoencoder"].add(codec.decode(codec.encode(window[:, context:])[0]), truth)
    return {name: acc.result() for name, acc in methods.items()}


def held_out_windows(branch, data_path, steps, frame_skip, first, count):
    """uint8 (count, steps, C, H, W): test windows of ``steps`` frames ``frame_skip`` apart."""
    frames, lengths, cuts = branch.read_clips(data_path, "test")
    index = windows(lengths, cuts, steps, frame_skip)[first:first + count]
    if len(index) == 0:
        raise UserError(f"no test window of {steps} frames {frame_skip} apart (after skipping "
                        f"{first}) in {data_path}: lower --context or --horizon")
    return frames[index.numpy()]


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv, choices={"dataset": tuple(BRANCHES)},
                         derived=lambda c: BRANCHES[c.dataset].sample_defaults())
    seed_everything(cfg.seed)
    dev = pick_device(cfg.device)

    lstm_ckpt = load_checkpoint(cfg.lstm_checkpoint, "train_lstm.py")
    if lstm_ckpt.get("dataset") != cfg.dataset:
        raise UserError(f"{cfg.lstm_checkpoint} was trained on {lstm_ckpt.get('dataset')!r}, not "
                        f"{cfg.dataset!r}: pass --dataset={lstm_ckpt.get('dataset')} (or its preset)")
    branch = BRANCHES[cfg.dataset]
    context, horizon, prefix = cfg.context, cfg.horizon, cfg.prefix
    data_path = cfg.data_path or lstm_ckpt["data_path"]
    codec = branch.load_codec(cfg.vae_checkpoint or lstm_ckpt["vae_checkpoint"], dev)
    model = load_model(lstm_ckpt, dev)
    test = held_out_windows(branch, data_path, context + horizon, lstm_ckpt["frame_skip"],
                            cfg.first_sequence, cfg.n_sequences)

    if cfg.n_eval > 0:
        frames = held_out_windows(branch, data_path, context + horizon, lstm_ckpt["frame_skip"], 0,
                                  cfg.n_eval)
        scores = score(model, codec, frames, context, horizon,
                       mean_training_frame(branch, data_path), cfg.eval_batch, cfg.temperature)
        report = {"context": context, "horizon": horizon, "n_sequences": len(frames),
                  "model": scores.pop("model"), "baselines": scores, "dataset": cfg.dataset,
                  "lstm_checkpoint": cfg.lstm_checkpoint, "frame_skip": lstm_ckpt["frame_skip"]}
        path = write_report(cfg.out_dir, branch.metrics_name, report)
        print(f"scored {len(frames)} test windows ({context} in, {horizon} predicted): mean MSE per "
              f"frame {np.mean(report['model']['mse']):.1f} (copy last "
              f"{np.mean(scores['copy_last']['mse']):.1f}, mean frame {np.mean(scores['mean_frame']['mse']):.1f}, "
              f"autoencoder {np.mean(scores['autoencoder']['mse']):.1f}); SSIM "
              f"{np.mean(report['model']['ssim']):.3f}; wrote {path}")

    predicted = predict(model, codec, test, context, horizon, cfg.temperature)
    truth = torch.from_numpy(test).float() / 255.0
    for i in range(len(test)):
        name = os.path.join(cfg.out_dir, f"{prefix}_{cfg.first_sequence + i:03d}")
        save_gif(name + ".gif", prediction_panels(truth[i], predicted[i], context, cfg.gif_scale),
                 cfg.frames_per_second)
        save_grid(name + ".png", torch.stack([truth[i], predicted[i]]))
    print(f"wrote {len(test)} GIFs and PNG strips to {cfg.out_dir}/ ({prefix}_*.gif, *.png)")


if __name__ == "__main__":
    run_cli(main)
