"""Vectorised Moving MNIST: bouncing digit trajectories and their rendering.

Two dynamics:
- ``srivastava`` (Srivastava et al. 2015): position uniform in the free range, direction
  uniform in [0, 2 pi), a step of 0.1 of the free range per frame (3.6 px for 28 px digits
  on 64 px frames), bounce by clamping to the border and flipping that velocity
  component, overlapping digits combined by max.
- ``original`` (the 2016 repository): direction uniform in (-pi, pi), speed uniform in
  2..6 px/frame, bounce when a coordinate leaves [-2, free range + 2] (digits may poke
  2 px out of the frame), overlapping digits added and clipped to 255.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

DYNAMICS = ("srivastava", "original")


def trajectories(rng, n_sequences, seq_len, n_digits, frame_size, digit_size, dynamics):
    """Top-left pixel positions of every digit in every frame.

    Returns int array (n_sequences, seq_len, n_digits, 2) of (y, x), in frame coordinates
    (negative or beyond the free range only by the ``original`` dynamics' 2 px margin).
    """
    free = frame_size - digit_size
    shape = (n_sequences, n_digits)
    if dynamics == "srivastava":
        lo, hi = 0.0, float(free)
        angle = rng.uniform(0.0, 2 * np.pi, shape)
        speed = np.full(shape, 0.1 * free)
    elif dynamics == "original":
        lo, hi = -2.0, free + 2.0
        angle = rng.uniform(-np.pi, np.pi, shape)
        speed = rng.uniform(2.0, 6.0, shape)
    else:
        raise ValueError(f"unknown dynamics {dynamics!r}; one of {DYNAMICS}")
    pos = rng.uniform(lo, hi, shape + (2,))
    vel = np.stack([np.sin(angle), np.cos(angle)], axis=-1) * speed[..., None]
    out = np.empty((n_sequences, seq_len, n_digits, 2), np.float64)
    for t in range(seq_len):
        out[:, t] = pos
        pos = pos + vel
        below, above = pos < lo, pos > hi
        pos = np.clip(pos, lo, hi)
        vel = np.where(below | above, -vel, vel)
    return np.rint(out).astype(np.int16)


def render(digits, positions, frame_size, overlap="max"):
    """Paste digits at their positions.

    Args:
        digits: uint8 (n_sequences, n_digits, d, d), the digit images of each sequence.
        positions: int (n_sequences, seq_len, n_digits, 2) top-left (y, x).
        overlap: ``max`` or ``add`` (sum clipped to 255, computed without uint8 overflow).
    Returns:
        uint8 frames (n_sequences, seq_len, 1, frame_size, frame_size).
    """
    n, seq_len, n_digits, _ = positions.shape
    d = digits.shape[-1]
    margin = int(max(0, -positions.min(), positions.max() + d - frame_size))
    size = frame_size + 2 * margin
    canvas = np.zeros((n, seq_len, size, size), np.uint16 if overlap == "add" else np.uint8)
    # every d x d window of every frame, without copying: windows[s, t, y, x] is the patch
    # whose top-left is (y, x), so one fancy index pastes a digit into all frames at once
    s = canvas.strides
    windows = as_strided(canvas, (n, seq_len, size - d + 1, size - d + 1, d, d),
                         (s[0], s[1], s[2], s[3], s[2], s[3]), writeable=True)
    seq, step = np.arange(n)[:, None], np.arange(seq_len)[None, :]
    for k in range(n_digits):
        y, x = positions[:, :, k, 0] + margin, positions[:, :, k, 1] + margin
        image = digits[:, k][:, None]  # the same image in every frame of its sequence
        if k == 0:
            windows[seq, step, y, x] = image
        elif overlap == "max":
            windows[seq, step, y, x] = np.maximum(windows[seq, step, y, x], image)
        else:
            windows[seq, step, y, x] += image
    frames = canvas[:, :, margin:margin + frame_size, margin:margin + frame_size]
    if overlap == "add":
        frames = np.minimum(frames, 255).astype(np.uint8)
    return np.ascontiguousarray(frames)[:, :, None]


def resize_digits(images, size):
    """(N, 28, 28) uint8 -> (N, size, size) uint8, bilinear, for non-standard digit sizes."""
    if images.shape[-1] == size:
        return images
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
                     for im in images])


def generate(rng, pool, pool_index, n_sequences, spec):
    """Yield (frames, positions, digit_index) chunks of at most spec["chunk"] sequences.

    ``spec`` maps chunk, n_digits, seq_len, frame_size, digit_size and dynamics to their
    values (moving_mnist.py's settings, or the attributes it stored in a dataset);
    ``pool`` holds the digit images (already digit_size) and ``pool_index`` their ids."""
    chunk, n_digits, dynamics = int(spec["chunk"]), int(spec["n_digits"]), str(spec["dynamics"])
    frame_size, digit_size = int(spec["frame_size"]), int(spec["digit_size"])
    for start in range(0, n_sequences, chunk):
        n = min(chunk, n_sequences - start)
        picks = rng.integers(0, len(pool), size=(n, n_digits))
        positions = trajectories(rng, n, int(spec["seq_len"]), n_digits, frame_size, digit_size, dynamics)
        frames = render(pool[picks], positions, frame_size, "max" if dynamics == "srivastava" else "add")
        yield frames, positions, pool_index[picks].astype(np.int32)
