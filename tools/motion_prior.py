"""How well the block-matched motion alone predicts film frames: the last context frame
moved on by the motion between the last two context frames (see
models.lstm.block_motion, on Z's 16 x 16 grid as train_lstm.py's flow_prior uses it),
``fraction`` of it at the first predicted step and ``decay`` times the step before's
share at each later one, against copying the last frame, for several of each. The film
branch's flow_prior was narrowed down with it on the training windows, where the test
windows play no part (docs/results.md says how, and why flow_decay stays 1).

    python -m tools.motion_prior                   # the training windows of data/film.h5
    python -m tools.motion_prior --split=test      # the windows sample_video.py scores
"""
import torch

from data.branches import BRANCHES
from data.sequences import windows
from models.lstm import block_motion, prior_flows, warp_rollout
from utils.errors import UserError, run_cli
from utils.settings import parse_settings

# -----------------------------------------------------------------------------
data_path = "data/film.h5"  # film frames from extract_pulp_frames.py
split = "val"  # train or val: whose windows are scored
context = 5  # true frames; the motion is measured between the last two [2, inf)
horizon = 5  # frames predicted [1, inf)
frame_skip = 3  # use every n-th frame [1, inf)
crops = 4  # crops of each frame, left to right [1, inf)
subpixel = True  # refine the motion to fractions of a pixel, as train_lstm.py's subpixel_motion does
grid = 16  # the flow's grid (Z's: 16 x 16 for 64 x 64 crops) [1, inf)
fractions = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # shares of the motion at the first step to try
decays = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # factors from one step's share to the next to try
batch = 250  # windows per batch [1, inf)
# -----------------------------------------------------------------------------


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv, choices={"split": ("train", "val")})
    if any(not 0.0 <= d <= 1.0 for d in cfg.decays):
        raise UserError(f"--decays must lie in [0, 1], got {cfg.decays}")
    clips = BRANCHES["film"].read_clips(cfg.data_path, cfg.split, n_crops=cfg.crops)
    index = windows(clips.lengths, clips.cuts, cfg.context + cfg.horizon, cfg.frame_skip)
    pairs = [(f, d) for f in cfg.fractions for d in cfg.decays]
    totals, copy = {p: 0.0 for p in pairs}, 0.0
    for s in range(0, len(index), cfg.batch):
        frames = torch.from_numpy(clips.frames[index[s:s + cfg.batch].numpy()]).float() / 255.0
        last, future = frames[:, cfg.context - 1], frames[:, cfg.context:]
        copy += float((last.unsqueeze(1) - future).pow(2).flatten(2).sum(-1).mean(1).sum())
        motion = block_motion(frames[:, cfg.context - 2], last, grid=(cfg.grid, cfg.grid), subpixel=cfg.subpixel)
        for f, d in pairs:
            moved = warp_rollout(last, prior_flows(motion, f, d, cfg.horizon)).clamp(0.0, 1.0)
            totals[f, d] += float((moved - future).pow(2).flatten(2).sum(-1).mean(1).sum())
    n = len(index)
    print(f"{n} {cfg.split} windows of {cfg.data_path} ({cfg.context} in, {cfg.horizon} predicted, "
          f"frame skip {cfg.frame_skip}, {'sub-pixel' if cfg.subpixel else 'whole-pixel'} motion): "
          f"mean MSE per frame; copy last {copy / n:.1f}")
    print("fraction \\ decay " + "".join(f"{d:>8.2f}" for d in cfg.decays))
    for f in cfg.fractions:
        print(f"{f:>17.2f} " + "".join(f"{totals[f, d] / n:>8.1f}" for d in cfg.decays))
    f, d = min(pairs, key=totals.get)
    print(f"best: fraction {f}, decay {d}: {totals[f, d] / n:.1f} ({totals[f, d] / copy:.3f} of copy-last)")


if __name__ == "__main__":
    run_cli(main)
