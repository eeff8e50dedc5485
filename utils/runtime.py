"""Device choice, seeding and atomic file writing."""
import contextlib
import os
import random
import tempfile

import numpy as np
import torch

from utils.errors import UserError


def pick_device(name="auto"):
    """``auto``: cuda, then mps, else cpu. Any other name is used as given."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device={name!r} is not a device: use auto, cpu, cuda, cuda:1 or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device=cuda but no CUDA GPU is visible: use --device=auto or cpu")
    return device


def seed_everything(seed):
    """Seed Python, NumPy and PyTorch; return a NumPy Generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    A failure (or Ctrl-C) part-way leaves no half-written file behind.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; outputs are not
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def require_file(path, made_by):
    """Stop with a message naming the script to run when an input file is missing."""
    if not os.path.isfile(path):
        raise UserError(f"no file at {path}: run {made_by} first (or point the setting at it)")
    return path


def progress(iterable=None, **kwargs):
    """A tqdm bar that clears itself when done and stays silent when stderr is not a terminal."""
    from tqdm import tqdm
    return tqdm(iterable, leave=False, dynamic_ncols=True, disable=None, **kwargs)
