"""Reading the HDF5 datasets the stages pass along.

Layout shared by every dataset file (see README, "Data layout"):
    /<split>/frames   uint8 (sequences, time, channels, height, width), split = train | test
plus attributes on the root recording how the file was made.
"""
import os

import h5py

from utils.errors import UserError


def read_frames(path, split, made_by, max_sequences=0):
    """All (or the first ``max_sequences``) sequences of ``split`` as a uint8 array
    (N, T, C, H, W), read in one contiguous slice."""
    if not os.path.isfile(path):
        raise UserError(f"no dataset at {path}: run {made_by} first")
    try:
        with h5py.File(path, "r") as f:
            if f"{split}/frames" not in f:
                raise UserError(f"{path} has no {split}/frames dataset: it was not written by "
                                f"{made_by}; run {made_by} again")
            frames = f[f"{split}/frames"]
            n = len(frames) if max_sequences <= 0 else min(max_sequences, len(frames))
            return frames[:n]
    except OSError as e:
        raise UserError(f"{path} is not a readable HDF5 file ({e}): run {made_by} again") from None

