"""Reading the film HDF5 file written by extract_pulp_frames.py.

Layout: /clips/<NNN>/frames uint8 (frames, 3, H, W), one group per source file, with
/clips/<NNN>/cuts (indices of frames that start a new shot) and the attributes
train_start, train_end, test_start, test_end (contiguous blocks of frame indices).
"""
import os

import h5py
import numpy as np
import torch

from utils.errors import UserError

MADE_BY = "extract_pulp_frames.py"


def read_clips(path, split):
    """The ``split`` block of every clip: a list of dicts with ``frames`` uint8 (n, 3, H, W),
    ``cuts`` (shot starts, relative to the block) and ``source``."""
    if not os.path.isfile(path):
        raise UserError(f"no dataset at {path}: run {MADE_BY} first")
    clips = []
    try:
        with h5py.File(path, "r") as f:
            if "clips" not in f:
                raise UserError(f"{path} holds no clips/: it was not written by {MADE_BY}; run it again")
            for name in sorted(f["clips"]):
                g = f["clips"][name]
                missing = [k for k in (f"{split}_start", f"{split}_end", "source") if k not in g.attrs]
                missing += [k for k in ("frames", "cuts") if not isinstance(g.get(k), h5py.Dataset)]
                if missing:
                    raise UserError(f"{path}: clips/{name} lacks {', '.join(missing)}: it was not "
                                    f"written by {MADE_BY}; run it again")
                if g["frames"].dtype != np.uint8 or g["frames"].ndim != 4 or g["frames"].shape[1] != 3:
                    raise UserError(f"{path}: clips/{name}/frames is {g['frames'].dtype} "
                                    f"{g['frames'].shape}; expected uint8 (frames, 3, H, W): run {MADE_BY} again")
                start, end = int(g.attrs[f"{split}_start"]), int(g.attrs[f"{split}_end"])
                cuts = g["cuts"][:]
                clips.append({"frames": g["frames"][start:end], "source": g.attrs["source"],
                              "cuts": cuts[(cuts > start) & (cuts < end)] - start})
    except OSError as e:
        raise UserError(f"{path} is not a readable HDF5 file ({e}): run {MADE_BY} again") from None
    return clips


def centre_crop(frames, height, width):
    """Crop the last two axes of ``frames`` to (height, width) around the centre."""
    h, w = frames.shape[-2:]
    top, left = (h - height) // 2, (w - width) // 2
    return frames[..., top:top + height, left:left + width]


def frame_tensor(path, split, crop_size=None):
    """Every frame of ``split`` from all clips, centre-cropped to the size they share
    (or to ``crop_size`` square), as one uint8 tensor (N, 3, H, W)."""
    clips = [c for c in read_clips(path, split) if len(c["frames"])]
    if not clips:
        raise UserError(f"{path} has no {split} frames: extract more video, or a larger --test_fraction")
    height = min(c["frames"].shape[2] for c in clips)
    width = min(c["frames"].shape[3] for c in clips)
    if crop_size:
        height = width = crop_size
    return torch.from_numpy(np.concatenate([centre_crop(c["frames"], height, width) for c in clips]))


def random_crops(frames, size, generator):
    """A random size x size crop of each frame in a batch (B, C, H, W)."""
    b, _, h, w = frames.shape
    tops = torch.randint(0, h - size + 1, (b,), generator=generator).tolist()
    lefts = torch.randint(0, w - size + 1, (b,), generator=generator).tolist()
    return torch.stack([f[:, t:t + size, l:l + size] for f, t, l in zip(frames, tops, lefts)])


def to_centred_float(frames):
    """uint8 pixels -> float in [-0.5, 0.5], the film models' scale."""
    return frames.float().div_(255.0).sub_(0.5)


def crop_batches(path, crop, batch_size, device, seed):
    """Training batches of random crops and validation batches of centre crops, as float
    in [-0.5, 0.5], plus the validation frames themselves (uint8, centre-cropped)."""
    from utils.batches import Batches
    train = frame_tensor(path, "train")
    val = frame_tensor(path, "test", crop)
    if min(train.shape[-2:]) < crop:
        raise UserError(f"{path} frames are {tuple(train.shape[-2:])}, smaller than --crop={crop}")
    generator = torch.Generator().manual_seed(seed)
    train_batches = Batches([train], batch_size, device, shuffle=True, seed=seed, generator=generator,
                            transform=lambda x: to_centred_float(random_crops(x, crop, generator)))
    val_batches = Batches([val], batch_size, device, transform=to_centred_float)
    print(f"{len(train)} training frames of {tuple(train.shape[1:])} (random {crop}x{crop} crops), "
          f"{len(val)} test frames (centre crops) on {device}")
    return train_batches, val_batches, val


def spread_frames(frames, device, n=10):
    """``n`` evenly spaced frames of uint8 (N, C, H, W), as float in [-0.5, 0.5] on ``device``:
    the originals of the film stages' picture grids."""
    return to_centred_float(frames[torch.linspace(0, len(frames) - 1, n).long()]).to(device)
