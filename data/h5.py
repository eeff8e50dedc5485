"""Reading the HDF5 datasets the stages pass along.

Layout shared by every dataset file (see README, "Data layout"):
    /<split>/frames   uint8 (sequences, time, channels, height, width), split = train | test
plus attributes on the root recording how the file was made.
"""
import os

import h5py
import numpy as np

from utils.errors import UserError


def read_frames(path, split, made_by, max_sequences=0):
    """All (or the first ``max_sequences``) sequences of ``split`` as a uint8 array
    (N, T, C, H, W), read in one contiguous slice."""
    def frames(f):
        data = _checked(f, path, split, made_by)
        return data[:len(data) if max_sequences <= 0 else min(max_sequences, len(data))]
    return read_hdf5(path, made_by, frames)


def _checked(f, path, split, made_by):
    """The ``split``/frames dataset of the open file ``f``, checked for its layout."""
    data = f.get(f"{split}/frames")
    if not isinstance(data, h5py.Dataset):
        raise UserError(f"{path} has no {split}/frames dataset: it was not written by "
                        f"{made_by}; run {made_by} again")
    if data.dtype != np.uint8 or data.ndim != 5:
        raise UserError(f"{path}: {split}/frames is {data.dtype} {data.shape}; expected uint8 pixels "
                        f"(sequences, time, channels, height, width): run {made_by} again")
    if len(data) == 0 or 0 in data.shape:
        raise UserError(f"{path} has no {split} sequences: run {made_by} with more of them")
    return data


def read_attrs(path, made_by):
    """The root attributes of the dataset at ``path`` (how it was made) as a dict."""
    return read_hdf5(path, made_by, lambda f: dict(f.attrs))


def read_hdf5(path, made_by, what):
    """``what(f)`` of the HDF5 file at ``path`` open for reading; a missing or unreadable
    file is a UserError that says to run ``made_by``."""
    if not os.path.isfile(path):
        raise UserError(f"no dataset at {path}: run {made_by} first")
    try:
        with h5py.File(path, "r") as f:
            return what(f)
    except OSError as e:
        raise UserError(f"{path} is not a readable HDF5 file ({e}): run {made_by} again") from None


class FrameAppender:
    """Appends uint8 frames to a new chunked, gzip-compressed dataset ``name`` of ``group``.

    Each full chunk is deflated by zlib in a worker thread (zlib releases the GIL, so this
    overlaps the caller's decoding) and stored as is with ``write_direct_chunk``; the file
    is the same as with h5py's own gzip filter. At most ``max_pending`` chunks wait, so
    memory stays flat however many frames come. ``close()`` writes the last, partial chunk
    and returns the dataset.
    """

    def __init__(self, group, name, frame_shape, chunk=16, level=4, max_pending=1):
        import zlib
        from concurrent.futures import ThreadPoolExecutor
        self.dataset = group.create_dataset(name, (0,) + tuple(frame_shape), np.uint8,
                                            maxshape=(None,) + tuple(frame_shape),
                                            chunks=(chunk,) + tuple(frame_shape),
                                            compression="gzip", compression_opts=level)
        self.chunk, self.level, self.max_pending = chunk, level, max_pending
        self.compress = zlib.compress
        self.pool = ThreadPoolExecutor(1)
        self.buffer, self.pending, self.count = [], [], 0

    def append(self, frame):
        self.buffer.append(frame)
        if len(self.buffer) == self.chunk:
            block = np.ascontiguousarray(np.stack(self.buffer)).tobytes()
            self.buffer = []
            self.pending.append((self.count, self.pool.submit(self.compress, block, self.level)))
            self.count += self.chunk
            self._store(keep=self.max_pending)

    def _store(self, keep):
        """Write the compressed chunks in order as they are ready, waiting for them until
        at most ``keep`` are left pending."""
        while self.pending and (len(self.pending) > keep or self.pending[0][1].done()):
            start, job = self.pending.pop(0)
            if self.dataset.shape[0] < start + self.chunk:
                self.dataset.resize(start + self.chunk, axis=0)
            self.dataset.id.write_direct_chunk((start,) + (0,) * (self.dataset.ndim - 1), job.result())

    def close(self):
        self._store(keep=0)
        self.pool.shutdown()
        if self.buffer:
            self.dataset.resize(self.count + len(self.buffer), axis=0)
            self.dataset[self.count:] = np.stack(self.buffer)
            self.count += len(self.buffer)
            self.buffer = []
        return self.dataset
