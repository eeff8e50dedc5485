"""Reading the film HDF5 file written by extract_pulp_frames.py.

Layout: /clips/<NNN>/frames uint8 (frames, 3, H, W), one group per source file, with
/clips/<NNN>/cuts (indices of frames that start a new shot) and the attributes
train_start, train_end, val_start, val_end, test_start, test_end (contiguous blocks of
frame indices, in that order).
"""
import h5py
import numpy as np
import torch

from data.h5 import read_hdf5
from utils.errors import UserError

MADE_BY = "extract_pulp_frames.py"


BLOCK = 256  # consecutive frames read together when a split is read in part


def read_clips(path, split, max_frames=0, rng=None):
    """The ``split`` block of every clip: a list of dicts with ``frames`` uint8 (n, 3, H, W),
    ``cuts`` (shot starts, relative to the block) and ``source``.

    A split of more than ``max_frames`` frames (0 = no limit) is read in part, so memory
    stays bounded however long the film: ``max_frames`` of its frames in runs of BLOCK
    consecutive ones, each run its own clip, drawn at random by ``rng`` (a NumPy
    Generator) or, without one, evenly spaced over the whole split. Only whole runs are
    drawn (a file's last frames, fewer than BLOCK, are left out), so a part holds
    max_frames // BLOCK runs of BLOCK frames, unless the split is too short for that."""
    def read(f):
        runs = [(g, start, min(start + BLOCK, end)) for g, start, end in _split_blocks(f, path, split)
                for start in range(start, end, BLOCK)]
        if 0 < max_frames < sum(b - a for _, a, b in runs):
            k = max(1, max_frames // BLOCK)
            whole = [r for r in runs if r[2] - r[1] == BLOCK]
            runs = whole if len(whole) >= k else runs  # files shorter than BLOCK: any runs
            k = min(k, len(runs))
            picks = (np.sort(rng.choice(len(runs), k, replace=False)) if rng is not None
                     else np.unique(np.linspace(0, len(runs) - 1, k).round().astype(int)))
            runs = [runs[i] for i in picks]
        else:  # the whole split: one clip per file, cut where the file's block is
            runs = _split_blocks(f, path, split)
        clips = []
        for g, start, end in runs:
            cuts = g["cuts"][:]
            clips.append({"frames": g["frames"][start:end], "source": g.attrs["source"],
                          "cuts": cuts[(cuts > start) & (cuts < end)] - start})
        return clips
    return read_hdf5(path, MADE_BY, read)


def split_frames(path, split):
    """How many frames the ``split`` blocks of all clips hold together."""
    return read_hdf5(path, MADE_BY,
                     lambda f: sum(end - start for _, start, end in _split_blocks(f, path, split)))


def _split_blocks(f, path, split):
    """(group, start, end) of each clip's ``split`` block, after checking its layout."""
    if "clips" not in f:
        raise UserError(f"{path} holds no clips/: it was not written by {MADE_BY}; run it again")
    blocks = []
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
        blocks.append((g, int(g.attrs[f"{split}_start"]), int(g.attrs[f"{split}_end"])))
    return blocks


def centre_crop(frames, height, width):
    """Crop the last two axes of ``frames`` to (height, width) around the centre."""
    h, w = frames.shape[-2:]
    top, left = (h - height) // 2, (w - width) // 2
    return frames[..., top:top + height, left:left + width]


def frame_tensor(path, split, crop_size=None, max_frames=0, rng=None):
    """Every frame of ``split`` from all clips (or ``max_frames`` of them, see read_clips),
    centre-cropped to the size they share (or to ``crop_size`` square), as one uint8
    tensor (N, 3, H, W), filled in place (no second copy)."""
    clips = [c for c in read_clips(path, split, max_frames, rng) if len(c["frames"])]
    if not clips:
        raise UserError(f"{path} has no {split} frames: extract more video, or a larger --{split}_fraction")
    height = min(c["frames"].shape[2] for c in clips)
    width = min(c["frames"].shape[3] for c in clips)
    if crop_size:
        height = width = crop_size
    out = torch.empty((sum(len(c["frames"]) for c in clips), 3, height, width), dtype=torch.uint8)
    done = 0
    while clips:
        frames = clips.pop(0)["frames"]  # each clip's frames are freed once copied
        out[done:done + len(frames)] = torch.from_numpy(centre_crop(frames, height, width))
        done += len(frames)
    return out


def random_crops(frames, size, generator):
    """A random size x size crop of each frame in a batch (B, C, H, W)."""
    b, _, h, w = frames.shape
    tops = torch.randint(0, h - size + 1, (b,), generator=generator).tolist()
    lefts = torch.randint(0, w - size + 1, (b,), generator=generator).tolist()
    return torch.stack([f[:, t:t + size, l:l + size] for f, t, l in zip(frames, tops, lefts)])


def to_centred_float(frames):
    """uint8 pixels -> float in [-0.5, 0.5], the film models' scale."""
    return frames.float().div_(255.0).sub_(0.5)


def crop_batches(path, crop, batch_size, device, seed, max_frames=0):
    """Training batches of random crops and validation batches of centre crops, as float
    in [-0.5, 0.5], plus the validation frames themselves (uint8, centre-cropped). A split
    longer than ``max_frames`` is held ``max_frames`` frames at a time (see read_clips):
    training draws new blocks of it every epoch, validation keeps evenly spaced ones."""
    from utils.batches import Batches
    val = frame_tensor(path, "val", crop, max_frames)
    generator = torch.Generator().manual_seed(seed)

    def load_train(epoch):
        rng = np.random.default_rng([seed, 3, epoch]) if partial else None
        train = frame_tensor(path, "train", max_frames=max_frames if partial else 0, rng=rng)
        if min(train.shape[-2:]) < crop:
            raise UserError(f"{path} frames are {tuple(train.shape[-2:])}, smaller than --crop={crop}")
        return [train]

    n_train = split_frames(path, "train")
    partial = 0 < max_frames < n_train
    train_batches = Batches(None if partial else load_train(0), batch_size, device, shuffle=True,
                            seed=seed, generator=generator, refresh=load_train if partial else None,
                            transform=lambda x: to_centred_float(random_crops(x, crop, generator)))
    val_batches = Batches([val], batch_size, device, transform=to_centred_float)
    drawn = f", {max_frames} of them drawn anew each epoch" if partial else ""
    print(f"{n_train} training frames (random {crop}x{crop} crops{drawn}), {len(val)} validation frames "
          f"(centre crops) on {device}")
    return train_batches, val_batches, val


def spread_frames(frames, device, n=10):
    """``n`` evenly spaced frames of uint8 (N, C, H, W), as float in [-0.5, 0.5] on ``device``:
    the originals of the film stages' picture grids."""
    return to_centred_float(frames[torch.linspace(0, len(frames) - 1, n).long()]).to(device)
