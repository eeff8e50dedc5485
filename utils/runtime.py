"""Device choice (and the process group under torchrun), seeding and atomic file writing."""
import contextlib
import errno
import glob
import hashlib
import os
import random
import shutil
import tempfile

import numpy as np
import torch

from utils.errors import UserError, stop_requested


def rank_and_world():
    """(rank, world size) from torchrun's environment; (0, 1) for a plain ``python script.py``."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main_process():
    return rank_and_world()[0] == 0


def _choose_device(name):
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


def pick_device(name="auto"):
    """``auto``: cuda, then mps, else cpu. Any other name is used as given.

    Under torchrun (WORLD_SIZE > 1) this also joins the process group: nccl with one GPU
    per process (cuda:LOCAL_RANK) when on CUDA, gloo otherwise.
    """
    device = _choose_device(name)
    _, world = rank_and_world()
    if world > 1:
        import torch.distributed as dist
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def random_state():
    """The generators' states (Python, NumPy, PyTorch on the CPU and CUDA) in types that
    ``torch.load(weights_only=True)`` reads back, so a resumed run draws what an
    uninterrupted one would."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, next_gauss = random.getstate()
    state = {"python": [version, list(words), next_gauss], "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state):
    """Restore what random_state() saved."""
    version, words, next_gauss = state["python"]
    random.setstate((version, tuple(words), next_gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed):
    """Seed Python, NumPy and PyTorch; return a NumPy Generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    A failure, Ctrl-C or SIGTERM part-way leaves no half-written file behind; temporaries
    that a killed run (kill -9) left for the same output are removed first, with a note. A
    full disk is one clear error. Under torchrun only rank 0 writes: other ranks' files are
    discarded, so every output has one author.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    if is_main_process():
        stale = glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(stem)}.*.tmp{ext}"))
        for old in stale:
            os.remove(old)
        if stale:
            print(f"removed {len(stale)} temporary file(s) of {path} left by an interrupted run")
    # other ranks' copies are discarded: they go elsewhere, out of rank 0's cleanup of stale ones
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{ext}",
                               dir=folder if is_main_process() else None)
    os.close(fd)
    try:
        try:
            yield tmp
        except (OSError, RuntimeError) as e:
            if isinstance(e, OSError) and e.errno != errno.ENOSPC and "unexpected pos" not in str(e):
                raise
            if isinstance(e, RuntimeError) and shutil.disk_usage(folder).free > 64 << 20:
                raise
            raise UserError(f"the disk is full: {path} could not be written ({shutil.disk_usage(folder).free >> 20} "
                            "MiB free); free some space and run again") from None
        if stop_requested():  # a Ctrl-C that a library swallowed while this file was written
            raise KeyboardInterrupt
        if not is_main_process():
            return
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; outputs are not
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def file_digest(path, algorithm="sha256"):
    """Hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_outputs(files=None, folders=None):
    """Before any work: each output file ({setting: path}) and folder ({setting: path}) can
    be written, so a bad path fails now and not after an epoch of training. Nothing is
    created here."""
    for name, path in {**(files or {}), **(folders or {})}.items():
        is_folder = name in (folders or {})
        if not path:
            raise UserError(f"--{name} is empty: give a path")
        if not is_folder and os.path.isdir(path):
            raise UserError(f"--{name}={path} is a folder: give a file path")
        folder = os.path.abspath(path) if is_folder else os.path.dirname(os.path.abspath(path))
        existing = folder
        while not os.path.exists(existing):  # the folders are made when the output is written
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise UserError(f"--{name}={path} cannot be written: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"--{name}={path} cannot be written: no permission to write in {existing}")


def progress(iterable=None, **kwargs):
    """A tqdm bar that clears itself when done and stays silent when stderr is not a
    terminal. Each step it also stops the run when Ctrl-C or SIGTERM arrived inside a
    library that swallowed the interrupt (h5py does), instead of working on to the end."""
    from tqdm import tqdm

    class StoppableBar(tqdm):
        def __iter__(self):
            for item in super().__iter__():
                if stop_requested():
                    raise KeyboardInterrupt
                yield item

        def update(self, n=1):
            if stop_requested():
                raise KeyboardInterrupt
            return super().update(n)

    return StoppableBar(iterable, leave=False, dynamic_ncols=True,
                        disable=None if is_main_process() else True, **kwargs)


def all_ranks_sum(*values):
    """Sum floats over the torchrun ranks (identity in a single process)."""
    if rank_and_world()[1] == 1:
        return values
    import torch.distributed as dist
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return tuple(t.tolist())


PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_flags():
    """The CPU's feature flags (from /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bfloat16(device):
    """(whether ``device`` runs bfloat16 matrix products natively, why). CPUs: the
    AVX512-BF16 or AMX-BF16 instructions (without them oneDNN emulates bfloat16, which
    trains slower than float32); CUDA: compute capability 8.0 (Ampere) or later; MPS
    and others: not measured, so no."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return major >= 8, f"CUDA compute capability {major}.{minor}, bfloat16 natively from 8.0"
    if device.type == "cpu":
        found = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})
        if found:
            return True, f"the CPU has {' and '.join(found)}"
        return False, "the CPU has neither avx512_bf16 nor amx_bf16"
    return False, f"bfloat16 has not been measured on {device.type}"


def pick_precision(name, device):
    """``auto`` -> bfloat16 where ``device`` runs it natively (see native_bfloat16), else
    float32, saying which and why; float32 and bfloat16 are used as given."""
    if name != "auto":
        return name
    native, why = native_bfloat16(device)
    precision = "bfloat16" if native else "float32"
    print(f"precision: {precision} (auto: {why})")
    return precision


def to_channels_last(model):
    """``model``'s convolution weights in channels-last memory order, in place (so an
    optimizer keeps its parameters): faster convolutions on CPUs, results equal to rounding."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            m.to(memory_format=torch.channels_last)
    return model


def autocast(where, precision):
    """A context that runs forward passes in ``precision``: float32 (no autocast) or
    bfloat16 (torch.autocast on the device ``where`` is, a model or a torch.device: matrix
    products and convolutions in bfloat16, reductions and the loss in float32)."""
    device = where if isinstance(where, torch.device) else next(where.parameters()).device
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")
