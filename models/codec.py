"""Frames <-> latent codes Z, in large batches, for the LSTM stages and sampling."""
import numpy as np
import torch

from utils.runtime import progress


def _batched(fn, x, batch_size, desc=None):
    """Apply ``fn`` to rows of ``x`` in batches; concatenate the (tuple of) outputs on the CPU."""
    outs = []
    starts = range(0, len(x), batch_size)
    for s in (progress(starts, desc=desc) if desc else starts):
        out = fn(x[s:s + batch_size])
        outs.append(tuple(o.cpu() for o in (out if isinstance(out, tuple) else (out,))))
    joined = tuple(torch.cat(parts) for parts in zip(*outs))
    return joined if len(joined) > 1 else joined[0]


class VAECodec:
    """Encode and decode frame sequences through a ConvVAE (Moving MNIST).

    Frames are uint8 (N, T, C, H, W); codes are float (N, T, z_dim).
    """

    def __init__(self, vae, device, batch_size=1024):
        self.vae, self.device, self.batch_size = vae.eval(), device, batch_size
        self.z_dim = vae.z_dim

    def _frames_to_float(self, frames):
        frames = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        return frames.to(self.device).float().div_(255.0)

    @torch.no_grad()
    def encode(self, sequences, desc=None):
        """uint8 (N, T, C, H, W) -> mean, log-variance of Z, each (N, T, z_dim) on the CPU."""
        n, t = sequences.shape[:2]
        flat = sequences.reshape(n * t, *sequences.shape[2:])
        mean, logvar = _batched(lambda x: self.vae.encode(self._frames_to_float(x)), flat,
                                self.batch_size, desc)
        return mean.view(n, t, -1), logvar.view(n, t, -1)

    @torch.no_grad()
    def decode(self, z):
        """Z (N, T, z_dim) -> frames in [0, 1], float (N, T, C, H, W) on the CPU."""
        n, t = z.shape[:2]
        frames = _batched(lambda b: torch.sigmoid(self.vae.decode(b.to(self.device))),
                          z.reshape(n * t, -1), self.batch_size)
        return frames.view(n, t, *frames.shape[1:])
