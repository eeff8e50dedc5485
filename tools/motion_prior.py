"""How predictable the film's motion is, and how much of it a model predicts.

Scores constant velocity (the last context frame moved on by ``fraction`` of the motion
block matching finds between the last two context frames, at every step; models/flow.py,
on Z's 16 x 16 grid, as train_lstm.py's flow_prior uses it) against copying the last
frame, for several fractions. Then, per predicted step, compares that context motion
with the oracle's (the motion block matching measures from the last context frame to
the true frame of that step): the least-squares slope and the correlation between them,
the mean end-point error of constant velocity's flow and of standing still, and the
oracle warp's MSE on the grid and per pixel; with ``lstm_checkpoint``, also the
end-point error of that film model's flows (with several motion hypotheses, their mean
under the blend's weights). Scores the validation windows by default:
the film branch's flow_prior is chosen there.

    python -m tools.motion_prior                   # the validation windows of data/film.h5
    python -m tools.motion_prior --split=train     # the training windows
    python -m tools.motion_prior --lstm_checkpoint=checkpoints/film_lstm.pt
"""
import torch
import torch.nn.functional as F

from data.branches import BRANCHES
from data.sequences import windows
from models.checkpoints import load_checkpoint, load_model, recorded_path
from models.flow import block_motion, constant_velocity, oracle_motion, warp
from models.predict import predict_flows
from utils.errors import UserError, run_cli
from utils.settings import parse_settings

# -----------------------------------------------------------------------------
data_path = "data/film.h5"  # film frames from extract_pulp_frames.py
split = "val"  # train or val: whose windows are scored
context = 5  # true frames; the motion is measured between the last two [2, inf)
horizon = 5  # frames predicted [1, inf)
frame_skip = 3  # use every n-th frame [1, inf)
crops = 4  # crops of each frame, left to right [1, inf)
grid = 16  # the flow's grid (Z's: 16 x 16 for 64 x 64 crops) [1, inf)
fractions = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # shares of the motion to try
share = 0.4  # constant velocity's share in the per-step comparison (the film's flow_prior) [0, inf)
lstm_checkpoint = ""  # a film model (train_lstm.py, warp) whose flows are compared too; empty = none
batch = 250  # windows per batch [1, inf)
# -----------------------------------------------------------------------------


def flow_error(flow, target):
    """Summed over windows: the mean over cells of the end-point error (B, T, 2, h, w) -> (T,)."""
    return (flow - target).pow(2).sum(2).sqrt().mean((-2, -1)).sum(0)


def step_statistics(frames, context, cells, share):
    """Per predicted step (T,), summed over the windows ``frames`` (B, K + T, C, H, W) in
    [0, 1]: the products behind the slope and correlation of the oracle's motion (last
    context frame to that step's true frame, averaged over ``cells``) and the context's
    motion (om, mm, oo), the mean end-point errors of standing still and of constant
    velocity at ``share`` against the oracle's motion, and the squared errors of the
    oracle warp on ``cells`` and per pixel. Returns them (a dict) and the oracle's motion
    (B, T, 2, h, w)."""
    last, future = frames[:, context - 1], frames[:, context:]
    b, t = future.shape[:2]
    # the context's motion (B, 1, 2, h, w) and the oracle's, per pixel then averaged over the cells
    motion = block_motion(frames[:, context - 2], last, grid=cells, subpixel=True).unsqueeze(1)
    repeated = last.repeat_interleave(t, 0)
    fine = oracle_motion(last, future).flatten(0, 1)
    oracle = F.adaptive_avg_pool2d(fine, cells).view(b, t, 2, *cells)
    steps = torch.arange(1, t + 1, dtype=frames.dtype).view(1, -1, 1, 1, 1)
    stats = {"om": (oracle * motion).sum((0, 2, 3, 4)), "mm": (motion * motion).sum().expand(t),
             "oo": (oracle * oracle).sum((0, 2, 3, 4)), "still": flow_error(torch.zeros_like(oracle), oracle),
             "cv": flow_error(share * steps * motion, oracle)}
    for key, moved in (("oracle", warp(repeated, oracle.flatten(0, 1))), ("pixel", warp(repeated, fine))):
        stats[key] = (moved.clamp(0, 1).view_as(future) - future).pow(2).flatten(2).sum(-1).sum(0)
    return stats, oracle


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv, choices={"split": ("train", "val")})
    model = codec = None
    if cfg.lstm_checkpoint:
        ckpt = load_checkpoint(cfg.lstm_checkpoint, "train_lstm.py")
        if not ckpt["model_args"].get("flow"):
            raise UserError(f"{cfg.lstm_checkpoint} predicts Z, not flows: pass a film model trained "
                            "with --warp")
        codec = BRANCHES["film"].load_codec(recorded_path(ckpt, cfg.lstm_checkpoint, "vae_checkpoint"), "cpu")
        model = load_model(ckpt)
    clips = BRANCHES["film"].read_clips(cfg.data_path, cfg.split, n_crops=cfg.crops)
    index = windows(clips.lengths, clips.cuts, cfg.context + cfg.horizon, cfg.frame_skip)
    totals, copy = {f: 0.0 for f in cfg.fractions}, 0.0
    cells = (cfg.grid, cfg.grid)
    zero = torch.zeros(cfg.horizon)
    stats = {k: zero.clone() for k in ("om", "mm", "oo", "still", "cv", "model", "oracle", "pixel", "copy")}
    for s in range(0, len(index), cfg.batch):
        frames = torch.from_numpy(clips.frames[index[s:s + cfg.batch].numpy()]).float() / 255.0
        prev, last, future = frames[:, cfg.context - 2], frames[:, cfg.context - 1], frames[:, cfg.context:]
        copy_error = (last.unsqueeze(1) - future).pow(2).flatten(2).sum(-1)
        copy += float(copy_error.mean(1).sum())
        stats["copy"] += copy_error.sum(0)
        for f in cfg.fractions:
            moved = constant_velocity(prev, last, cfg.horizon, f, cells)
            totals[f] += float((moved - future).pow(2).flatten(2).sum(-1).mean(1).sum())
        batch_stats, oracle = step_statistics(frames, cfg.context, cells, cfg.share)
        for key, value in batch_stats.items():
            stats[key] += value
        if model is not None:
            z, _ = codec.encode(torch.from_numpy(clips.frames[index[s:s + cfg.batch, :cfg.context].numpy()]))
            flows, logits = predict_flows(model, codec, z, frames[:, :cfg.context], cfg.horizon)
            totals_k = torch.stack([f.cumsum(1) for f in flows], 2)  # (B, T, K, 2, h, w)
            weights = torch.ones(1) if logits is None else torch.softmax(logits, 2).unsqueeze(3)
            stats["model"] += flow_error((weights * totals_k).sum(2), oracle)  # the blend's mean flow
    n = len(index)
    print(f"{n} {cfg.split} windows of {cfg.data_path} ({cfg.context} in, {cfg.horizon} predicted, "
          f"frame skip {cfg.frame_skip}): mean MSE per frame; copy last {copy / n:.1f}")
    for f in cfg.fractions:
        print(f"  fraction {f:.2f}: {totals[f] / n:.1f} ({totals[f] / copy:.3f} of copy-last)")
    best = min(cfg.fractions, key=totals.get)
    print(f"best: fraction {best}: {totals[best] / n:.1f} ({totals[best] / copy:.3f} of copy-last)")
    print(f"per step, against the oracle's motion (last context frame to that step's true frame, on the "
          f"{cfg.grid} x {cfg.grid} grid; end-point errors in pixels):")
    for k in range(cfg.horizon):
        slope = float(stats["om"][k] / stats["mm"][k].clamp_min(1e-12))
        corr = float(stats["om"][k] / (stats["mm"][k] * stats["oo"][k]).sqrt().clamp_min(1e-12))
        line = (f"  step {k + 1}: slope {slope:.2f}, correlation {corr:.2f} of the context's motion; "
                f"error still {stats['still'][k] / n:.3f}, "
                f"constant velocity at {cfg.share} {stats['cv'][k] / n:.3f}")
        if model is not None:
            line += f", model {stats['model'][k] / n:.3f}"
        print(line + f"; MSE copy last {stats['copy'][k] / n:.1f}, oracle warp {stats['oracle'][k] / n:.1f} "
                     f"(per pixel {stats['pixel'][k] / n:.1f})")


if __name__ == "__main__":
    run_cli(main)
