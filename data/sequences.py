"""Frame sequences for the LSTM stages, the same way for both branches.

A split becomes a list of "clips" (runs of consecutive frames: one Moving MNIST sequence,
or one crop of one film file's block), stored as one frame array with the clip lengths
and the shot cuts inside each clip. Training and sampling take windows of ``seq_len``
frames ``frame_skip`` apart that stay inside one clip and cross no cut.
"""
import functools
from typing import NamedTuple

import numpy as np
import torch

from data.bouncing import generate, resize_digits
from data.film import read_clips, split_frames
from data.h5 import read_attrs, read_frames
from data.mnist_digits import load_digits
from utils.errors import UserError

MNIST_MADE_BY = "moving_mnist.py"


class Clips(NamedTuple):
    """Runs of consecutive frames stored end to end."""
    frames: np.ndarray  # uint8 (F, C, H, W): every clip's frames, one clip after another
    lengths: list  # frames per clip
    cuts: list  # per clip, the frames (relative to it) that start a new shot
    names: list  # per clip, where it came from (a source file and crop, or a sequence)


def mnist_clips(data_path, split, n_crops=1, limit=0, max_frames=0, rng=None):
    """Moving MNIST sequences of ``split`` (all, or the first ``limit``) as Clips.
    ``n_crops``, ``max_frames`` and ``rng`` are accepted for a common signature with
    film_clips; frames are not cropped."""
    return sequence_clips(read_frames(data_path, split, MNIST_MADE_BY, limit))


def film_clips(data_path, split, n_crops=1, limit=0, max_frames=0, rng=None, crop=64):
    """Film frames of ``split`` as clips, cropped to crop x crop: ``n_crops`` evenly spaced
    crops per file (1 = the centre crop), each its own clip, named after the file. A split
    of more than ``max_frames`` frames is read in part: blocks drawn by ``rng``, or evenly
    spaced without one (see data/film.py read_clips). ``limit`` is accepted for a common
    signature with mnist_clips."""
    frames, lengths, cuts, names = [], [], [], []
    for clip in read_clips(data_path, split, max_frames, rng):
        f = clip["frames"]
        if not len(f):
            continue
        h, w = f.shape[-2:]
        if min(h, w) < crop:
            raise UserError(f"{data_path} frames are {h}x{w}, smaller than the {crop} px crop")
        if n_crops == 1:
            places = [((h - crop) // 2, (w - crop) // 2)]
        else:
            places = zip(np.linspace(0, h - crop, n_crops).astype(int),
                         np.linspace(0, w - crop, n_crops).astype(int))
        for top, left in places:
            frames.append(f[..., top:top + crop, left:left + crop])
            lengths.append(len(f))
            cuts.append(clip["cuts"])
            names.append(str(clip["source"]))
    if not frames:
        raise UserError(f"{data_path} has no {split} frames")
    return Clips(np.concatenate(frames), lengths, cuts, names)


film_frame_count = split_frames


def sequence_clips(seqs):
    """Equal-length sequences (N, T, C, H, W) as clips: one per sequence, no cuts."""
    n, t = seqs.shape[:2]
    return Clips(seqs.reshape(n * t, *seqs.shape[2:]), [t] * n, [np.zeros(0, np.int64)] * n,
                 ["sequences"] * n)


@functools.lru_cache(maxsize=2)
def _train_digits(mnist_dir, digit_size, source):
    digits = load_digits(mnist_dir, download=False)
    if digits["source"] != source:
        raise UserError(f"the dataset's training digits came from {source}, but {mnist_dir} now "
                        f"gives {digits['source']}: make the dataset again with moving_mnist.py")
    return resize_digits(digits["train"], digit_size), digits["train_index"]


def new_mnist_sequences(data_path, n, seed):
    """``n`` new Moving MNIST training sequences, uint8 (n, T, 1, H, W), made the way the
    ones in ``data_path`` were (the dynamics, sizes and training-digit pool its attributes
    record) from the random stream ``seed`` (a list of ints; moving_mnist.py's own train
    and test streams are [seed, 0] and [seed, 1])."""
    made_by = MNIST_MADE_BY
    spec = read_attrs(data_path, made_by)
    if spec.get("made_by") != made_by or "digit_source" not in spec:
        raise UserError(f"{data_path} does not record how moving_mnist.py made it: make it again "
                        f"with moving_mnist.py to draw new training sequences")
    pool, pool_index = _train_digits(str(spec["mnist_dir"]), int(spec["digit_size"]),
                                     str(spec["digit_source"]))
    rng = np.random.default_rng(seed)
    return np.concatenate([frames for frames, _, _ in generate(rng, pool, pool_index, n, spec)])


def windows(lengths, cuts, seq_len, frame_skip):
    """Index windows (W, seq_len) into the concatenated clips: every start whose
    ``seq_len`` frames, ``frame_skip`` apart, lie in one clip and cross no cut. Ordered
    first window of each clip, then second windows, and so on."""
    span = (seq_len - 1) * frame_skip
    per_clip, offset = [], 0
    for length, clip_cuts in zip(lengths, cuts):
        starts = np.arange(max(0, length - span))
        if len(clip_cuts):  # a cut c (frame c starts a new shot) lies inside (s, s + span]
            crossing = ((clip_cuts[None, :] > starts[:, None]) &
                        (clip_cuts[None, :] <= starts[:, None] + span)).any(1)
            starts = starts[~crossing]
        per_clip.append(offset + starts)
        offset += length
    ranked = [(rank, c, s) for c, starts in enumerate(per_clip) for rank, s in enumerate(starts)]
    ranked.sort()
    first = np.array([s for _, _, s in ranked], np.int64)
    return torch.from_numpy(first[:, None] + frame_skip * np.arange(seq_len)[None, :])


def window_clips(lengths, index):
    """The clip (position in ``lengths``) each window of ``index`` (W, T) lies in, (W,) ndarray."""
    return np.searchsorted(np.cumsum(lengths), index[:, 0].numpy(), side="right")
