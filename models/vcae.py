"""Convolutional VAE for frames (Kingma & Welling 2014).

The original used one 3x3 conv layer and a dense layer to 32x64x64 (134 M weights in the
decoder alone). Here strided convolutions halve the frame ``n_down`` times and transposed
convolutions double it back: the same job at a fraction of the arithmetic.

Two kinds of latent code Z:
- dense (``latent_channels=0``): a linear layer from the last feature map to a vector of
  ``z_dim`` numbers, as in the original;
- spatial (``latent_channels=C``): a 3x3 conv to a C-channel map at the last feature map's
  size (8x8 for 64x64 frames and 3 halvings). Each place of the map codes its own part of
  the frame, so a moving digit moves in Z too, which a convolutional LSTM can follow.
Either way ``encode`` returns Z flattened to (B, z_dim) and ``decode`` takes it so, and
``latent_shape`` says how to unflatten it ((C, h, w) for spatial, None for dense).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_stack(channels, widths, transpose=False):
    """Stride-2 4x4 (transposed) convolutions through ``widths``; ReLU between them."""
    layers = []
    sizes = [channels] + list(widths) if not transpose else list(widths) + [channels]
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(conv(a, b, 4, stride=2, padding=1))
        if i < len(sizes) - 2 or not transpose:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ConvVAE(nn.Module):
    """Frames (B, C, S, S) in [0, 1] <-> latent codes (B, z_dim).

    Args:
        z_dim: size of a dense Z (ignored when ``latent_channels`` > 0).
        channels: image channels (1 for Moving MNIST).
        image_size: S, divisible by 2**n_down.
        base_width: channels of the first conv; each later one doubles it.
        n_down: number of stride-2 convolutions.
        input_dropout: dropout on the input pixels while training (the original used 0.3).
        latent_channels: 0 = dense Z; C > 0 = spatial Z of C channels at S / 2**n_down.
    """

    def __init__(self, z_dim=32, channels=1, image_size=64, base_width=32, n_down=4,
                 input_dropout=0.0, latent_channels=0):
        super().__init__()
        self.args = dict(z_dim=z_dim, channels=channels, image_size=image_size,
                         base_width=base_width, n_down=n_down, input_dropout=input_dropout,
                         latent_channels=latent_channels)
        if image_size % (2 ** n_down):
            raise ValueError(f"image_size {image_size} is not divisible by 2**{n_down}")
        widths = [base_width * 2 ** i for i in range(n_down)]
        side = image_size // 2 ** n_down
        self.feature_shape = (widths[-1], side, side)
        self.dropout = nn.Dropout(input_dropout)
        self.encoder = conv_stack(channels, widths)
        if latent_channels > 0:
            self.latent_shape = (latent_channels, side, side)
            self.z_dim = math.prod(self.latent_shape)
            self.to_gaussian = nn.Conv2d(widths[-1], 2 * latent_channels, 3, padding=1)
            self.from_z = nn.Conv2d(latent_channels, widths[-1], 3, padding=1)
        else:
            self.latent_shape, self.z_dim = None, z_dim
            flat = math.prod(self.feature_shape)
            self.to_gaussian = nn.Linear(flat, 2 * z_dim)
            self.from_z = nn.Linear(z_dim, flat)
        self.decoder = conv_stack(channels, widths[::-1], transpose=True)

    def encode(self, x):
        """x (B, C, S, S) -> mean, log-variance of q(z|x), each (B, z_dim)."""
        h = self.encoder(self.dropout(x))
        if self.latent_shape is None:
            mean, logvar = self.to_gaussian(h.flatten(1)).chunk(2, dim=1)
        else:
            mean, logvar = (t.flatten(1) for t in self.to_gaussian(h).chunk(2, dim=1))
        return mean, logvar.clamp(-15.0, 10.0)

    def decode(self, z):
        """z (B, z_dim) -> pixel logits (B, C, S, S); sigmoid gives the frame."""
        if self.latent_shape is not None:
            z = z.view(-1, *self.latent_shape)
        h = F.relu(self.from_z(z)).view(-1, *self.feature_shape)
        return self.decoder(h)

    def without_encoder(self):
        """This VAE as a decoder alone, its encoder's layers removed: what the LSTM stage
        trains further on its own predictions (models/lstm.py, LatentLSTM's ``decoder``)."""
        del self.dropout, self.encoder, self.to_gaussian
        return self

    def forward(self, x, samples=1):
        """Logits for ``samples`` draws of z per frame, (samples, B, C, S, S), and q's mean, logvar."""
        mean, logvar = self.encode(x)
        std = torch.exp(0.5 * logvar)
        z = mean + std * torch.randn((samples,) + mean.shape, device=x.device, dtype=x.dtype)
        logits = self.decode(z.flatten(0, 1)).unflatten(0, (samples, x.shape[0]))
        return logits, mean, logvar


def bernoulli_elbo_loss(logits, x, mean, logvar, kl_weight=1.0):
    """Negative ELBO per frame in nats: binary cross-entropy summed over pixels (averaged
    over the latent samples) plus KL(q(z|x) || N(0, I)); mean over the batch. A
    ``kl_weight`` below 1 (a warm-up) weighs the KL term less."""
    samples = logits.shape[0]
    bce = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="sum")
    bce = bce / (samples * x.shape[0])
    kl = -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp()) / x.shape[0]
    return bce + kl_weight * kl


def vae_loss(model, x, samples=1, kl_weight=1.0):
    """Negative ELBO of ``model`` (a ConvVAE) on frames x (B, C, S, S) in [0, 1]."""
    logits, mean, logvar = model(x, samples)
    return bernoulli_elbo_loss(logits, x, mean, logvar, kl_weight)


def kl_weight(step, steps_per_epoch, warmup_epochs):
    """The KL term's weight at optimizer step ``step``: linear from 0 to 1 over the first
    ``warmup_epochs`` epochs (a function of the step, so a resumed run continues it)."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, step / (warmup_epochs * steps_per_epoch))
