"""How well the block-matched motion alone predicts film frames: constant velocity, the
last context frame moved on by ``fraction`` of the motion between the last two context
frames at every step (models/flow.py, on Z's 16 x 16 grid, as train_lstm.py's flow_prior
uses it), against copying the last frame, for several fractions. Scores the validation
windows by default: the film branch's flow_prior is chosen there.

    python -m tools.motion_prior                   # the validation windows of data/film.h5
    python -m tools.motion_prior --split=train     # the training windows
"""
import torch

from data.branches import BRANCHES
from data.sequences import windows
from models.flow import constant_velocity
from utils.errors import run_cli
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
batch = 250  # windows per batch [1, inf)
# -----------------------------------------------------------------------------


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv, choices={"split": ("train", "val")})
    clips = BRANCHES["film"].read_clips(cfg.data_path, cfg.split, n_crops=cfg.crops)
    index = windows(clips.lengths, clips.cuts, cfg.context + cfg.horizon, cfg.frame_skip)
    totals, copy = {f: 0.0 for f in cfg.fractions}, 0.0
    for s in range(0, len(index), cfg.batch):
        frames = torch.from_numpy(clips.frames[index[s:s + cfg.batch].numpy()]).float() / 255.0
        last, future = frames[:, cfg.context - 1], frames[:, cfg.context:]
        copy += float((last.unsqueeze(1) - future).pow(2).flatten(2).sum(-1).mean(1).sum())
        for f in cfg.fractions:
            moved = constant_velocity(frames[:, cfg.context - 2], last, cfg.horizon, f, (cfg.grid, cfg.grid))
            totals[f] += float((moved - future).pow(2).flatten(2).sum(-1).mean(1).sum())
    n = len(index)
    print(f"{n} {cfg.split} windows of {cfg.data_path} ({cfg.context} in, {cfg.horizon} predicted, "
          f"frame skip {cfg.frame_skip}): mean MSE per frame; copy last {copy / n:.1f}")
    for f in cfg.fractions:
        print(f"  fraction {f:.2f}: {totals[f] / n:.1f} ({totals[f] / copy:.3f} of copy-last)")
    best = min(cfg.fractions, key=totals.get)
    print(f"best: fraction {best}: {totals[best] / n:.1f} ({totals[best] / copy:.3f} of copy-last)")


if __name__ == "__main__":
    run_cli(main)
