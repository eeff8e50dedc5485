"""Frames <-> latent codes Z, in large batches, for the LSTM stages and sampling.

A codec turns uint8 frame sequences (N, T, C, H, W) into the mean and log-variance of Z
(N, T, z_dim) and decodes Z back to float frames in [0, 1]. The Moving MNIST branch
uses one ConvVAE; the film branch chains CAE features, the feature VAE and the
deconvoluter.
"""
import numpy as np
import torch

from models.checkpoints import check_lineage, load_checkpoint, load_model, recorded_path
from utils.errors import UserError
from utils.runtime import progress, to_channels_last


def _batched(fn, x, batch_size, desc=None):
    """Apply ``fn`` to rows of ``x`` in batches; the (tuple of) outputs are written into
    tensors on the CPU allocated once, so memory holds the result and one batch, never a
    second copy of it."""
    outs = None
    starts = range(0, len(x), batch_size)
    for s in (progress(starts, desc=desc) if desc else starts):
        out = fn(x[s:s + batch_size])
        out = out if isinstance(out, tuple) else (out,)
        if outs is None:
            outs = tuple(torch.empty((len(x),) + o.shape[1:], dtype=o.dtype) for o in out)
        for whole, part in zip(outs, out):
            whole[s:s + len(part)] = part
    return outs if len(outs) > 1 else outs[0]


class Codec:
    """Batched sequence encoding/decoding around two per-batch functions of a subclass:
    ``encode_batch(float frames (B, C, H, W)) -> (mean, logvar)`` and
    ``decode_batch(z (B, z_dim)) -> frames in [0, 1]``; ``skip_decode`` decodes with
    gradients, for training the LSTM in pixel space through the decoder."""

    z_dim = None
    latent_shape = None  # (C, h, w) when Z is a spatial map
    frame_shape = None  # (C, H, W) of the frames it takes

    def __init__(self, device, batch_size=1024):
        self.device, self.batch_size = device, batch_size
        self.models = ()

    def freeze(self, *models):
        """Put ``models`` in eval mode without gradients, as the codec's own."""
        for m in models:
            m.eval().requires_grad_(False)
        self.models += models
        return models

    def channels_last(self):
        """The codec's convolutions in channels-last memory order (see to_channels_last)."""
        for m in self.models:
            to_channels_last(m)
        return self

    def skip_decode(self, z, skip_from=None):
        """Frames decoded from ``z`` (B, z_dim); with ``skip_from`` = (z_last (B, z_dim), last
        frames, float (B, C, H, W) in [0, 1]), the last frame plus the decoded change since
        it: last + D(z) - D(z_last). What stays keeps the last frame's detail, which the
        codec would blur; a prediction of no change is the last frame itself. Gradients
        flow to ``z`` and, where it trains, a decoder in use (VAECodec.use_decoder); the
        codec's own models stay frozen."""
        decoded = self.decode_batch(z)
        if skip_from is None:
            return decoded
        z_last, last = skip_from
        with torch.no_grad():
            base = last - self.decode_batch(z_last)
        return decoded + base

    def _to_float(self, frames):
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        return frames.to(self.device).float().div_(255.0)

    @torch.no_grad()
    def encode(self, sequences, desc=None):
        """uint8 (N, T, C, H, W) -> mean, log-variance of Z, each (N, T, z_dim) on the CPU."""
        n, t = sequences.shape[:2]
        if self.frame_shape and tuple(sequences.shape[2:]) != tuple(self.frame_shape):
            raise UserError(f"the frames are {tuple(sequences.shape[2:])} (channels, height, width) but "
                            f"the encoder takes {tuple(self.frame_shape)}: train it on this data, or "
                            "give data of its size")
        flat = sequences.reshape(n * t, *sequences.shape[2:])
        mean, logvar = _batched(lambda x: self.encode_batch(self._to_float(x)), flat,
                                self.batch_size, desc)
        return mean.view(n, t, -1), logvar.view(n, t, -1)

    @torch.no_grad()
    def decode(self, z):
        """Z (N, T, z_dim) -> frames in [0, 1], float (N, T, C, H, W) on the CPU."""
        n, t = z.shape[:2]
        frames = _batched(lambda b: self.decode_batch(b.to(self.device)), z.reshape(n * t, -1),
                          self.batch_size)
        return frames.clamp_(0.0, 1.0).view(n, t, *frames.shape[1:])


class VAECodec(Codec):
    """Moving MNIST: frames in [0, 1] through one ConvVAE."""

    def __init__(self, vae, device, batch_size=1024):
        super().__init__(device, batch_size)
        (self.vae,) = self.freeze(vae)
        self.decoder = vae
        self.z_dim, self.latent_shape = vae.z_dim, vae.latent_shape
        self.frame_shape = (vae.args["channels"], vae.args["image_size"], vae.args["image_size"])

    def use_decoder(self, decoder):
        """Decode from now on with ``decoder`` (a ConvVAE's decoder of the same Z, such as
        the copy an LSTM trained further, LatentLSTM's ``decoder``) instead of the VAE's."""
        self.decoder = decoder

    def encode_batch(self, x):
        return self.vae.encode(x)

    def decode_batch(self, z):
        return torch.sigmoid(self.decoder.decode(z))


class FilmCodec(Codec):
    """Film: image -> CAE conv features -> feature VAE's Z -> features -> deconvoluter -> image.
    The film models work on pixels in [-0.5, 0.5]."""

    def __init__(self, cae, feature_vae, deconv, device, batch_size=256):
        super().__init__(device, batch_size)
        self.cae, self.vae, self.deconv = self.freeze(cae, feature_vae, deconv)
        self.z_dim, self.latent_shape = feature_vae.z_dim, feature_vae.latent_shape
        self.frame_shape = (cae.args["channels"], cae.args["image_size"], cae.args["image_size"])

    def encode_batch(self, x):
        return self.vae.encode(self.cae.features(x - 0.5))

    def decode_batch(self, z):
        return (self.deconv(self.vae.decode(z)) + 0.5).clamp(0.0, 1.0)


def load_mnist_codec(vae_checkpoint, device):
    """The Moving MNIST codec: the ConvVAE of ``vae_checkpoint`` (from train_vcae.py)."""
    return VAECodec(load_model(load_checkpoint(vae_checkpoint, "train_vcae.py"), device), device)


def load_film_codec(vae_checkpoint, device, deconv_checkpoint=""):
    """The film codec: the feature VAE of ``vae_checkpoint`` (from train_vae_on_convs.py)
    with the CAE and deconvoluter its checkpoint names (``deconv_checkpoint`` overrides)."""
    vae_ckpt = load_checkpoint(vae_checkpoint, "train_vae_on_convs.py")
    deconv_checkpoint = deconv_checkpoint or recorded_path(vae_ckpt, vae_checkpoint, "deconv_checkpoint")
    cae_checkpoint = recorded_path(vae_ckpt, vae_checkpoint, "cae_checkpoint")
    cae = load_model(load_checkpoint(cae_checkpoint, "train_cae.py"), device)
    deconv = load_model(load_checkpoint(deconv_checkpoint, "train_deconv.py"), device)
    check_lineage(vae_ckpt, vae_checkpoint, "cae_checkpoint", cae_checkpoint, "train_vae_on_convs.py")
    check_lineage(vae_ckpt, vae_checkpoint, "deconv_checkpoint", deconv_checkpoint, "train_vae_on_convs.py")
    return FilmCodec(cae, load_model(vae_ckpt, device), deconv, device)
