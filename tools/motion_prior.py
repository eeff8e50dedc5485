"""How well the block-matched motion alone predicts film frames: the last context frame
moved on by a fraction of the motion between the last two context frames (see
models.lstm.block_motion, on Z's 16 x 16 grid as train_lstm.py's flow_prior uses it),
against copying the last frame, for several fractions. This is how the film branch's
flow_prior was chosen: on the training windows, so the test windows play no part.

    python -m tools.motion_prior                   # the training windows of data/film.h5
    python -m tools.motion_prior --split=test      # the windows sample_video.py scores
"""
import torch

from data.branches import BRANCHES
from data.sequences import windows
from models.lstm import block_motion, warp_rollout
from utils.errors import run_cli
from utils.metrics import frame_scores
from utils.settings import parse_settings

# -----------------------------------------------------------------------------
data_path = "data/film.h5"  # film frames from extract_pulp_frames.py
split = "train"  # train or test: whose windows are scored
context = 5  # true frames; the motion is measured between the last two [2, inf)
horizon = 5  # frames predicted [1, inf)
frame_skip = 3  # use every n-th frame [1, inf)
crops = 4  # crops of each frame, left to right [1, inf)
grid = 16  # the flow's grid (Z's: 16 x 16 for 64 x 64 crops) [1, inf)
fractions = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]  # fractions of the motion to try
batch = 250  # windows per batch [1, inf)
# -----------------------------------------------------------------------------


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv, choices={"split": ("train", "test")})
    clips = BRANCHES["film"].read_clips(cfg.data_path, cfg.split, n_crops=cfg.crops)
    index = windows(clips.lengths, clips.cuts, cfg.context + cfg.horizon, cfg.frame_skip)
    totals = {f: 0.0 for f in cfg.fractions}
    for s in range(0, len(index), cfg.batch):
        frames = torch.from_numpy(clips.frames[index[s:s + cfg.batch].numpy()]).float() / 255.0
        last, future = frames[:, cfg.context - 1], frames[:, cfg.context:]
        motion = block_motion(frames[:, cfg.context - 2], last, grid=(cfg.grid, cfg.grid))
        for f in cfg.fractions:
            moved = warp_rollout(last, (f * motion)[:, None].expand(-1, cfg.horizon, -1, -1, -1))
            totals[f] += float(frame_scores(moved, future)["mse"].mean(1).sum())
    copy = totals.get(0.0) if 0.0 in totals else None
    print(f"{len(index)} {cfg.split} windows of {cfg.data_path} ({cfg.context} in, {cfg.horizon} predicted, "
          f"frame skip {cfg.frame_skip}): mean MSE per frame")
    for f, total in totals.items():
        ratio = f" ({total / copy:.3f} of copy-last)" if copy else ""
        print(f"  {f:.2f} of the motion: {total / len(index):.1f}{ratio}{'  = copy last' if f == 0 else ''}")


if __name__ == "__main__":
    run_cli(main)
