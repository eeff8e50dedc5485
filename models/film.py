"""The film branch's three networks (a single VAE never learned natural frames):

    image -> ConvAutoencoder.features -> feature VAE -> Z -> feature VAE decode -> Deconvolver -> image

The feature VAE is FeatureConvVAE (a spatial Z: a map of latent channels at the feature
map's size, which a convolutional LSTM can follow) or FeatureVAE (the original's dense Z
vector). Pixels are scaled to [-0.5, 0.5], as the original did.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_features(channels, widths):
    """Input -> 5x5 stride-2 conv, then 3x3 stride-2 convs through ``widths``; tanh each."""
    layers, prev = [], channels
    for i, w in enumerate(widths):
        k = 5 if i == 0 else 3
        layers += [nn.Conv2d(prev, w, k, stride=2, padding=k // 2), nn.Tanh()]
        prev = w
    return nn.Sequential(*layers)


def deconv_stack(channels, widths):
    """Mirror of conv_features: 4x4 stride-2 transposed convs back to ``channels``, output in [-0.5, 0.5]."""
    sizes = list(widths[::-1]) + [channels]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder (MSE); its conv layers are the feature extractor.

    Args:
        channels: image channels (3).
        image_size: crop size S (64); S / 2**len(widths) must be whole.
        widths: channels of the conv layers (the original: 16, 32, 32).
        bottleneck: size of the dense code between encoder and decoder (the original: 512);
            0 = none: the conv features themselves are the code (the spatial-Z chain, whose
            compression is the feature VAE's job).
        input_dropout: dropout on input pixels while training (the original: 0.2).
    """

    def __init__(self, channels=3, image_size=64, widths=(32, 64, 64), bottleneck=512,
                 input_dropout=0.2):
        super().__init__()
        widths = list(widths)
        self.args = dict(channels=channels, image_size=image_size, widths=widths,
                         bottleneck=bottleneck, input_dropout=input_dropout)
        side = image_size // 2 ** len(widths)
        self.feature_shape = (widths[-1], side, side)
        flat = math.prod(self.feature_shape)
        self.dropout = nn.Dropout(input_dropout)
        self.encoder = conv_features(channels, widths)
        self.squeeze = nn.Sequential(nn.Flatten(), nn.Linear(flat, bottleneck), nn.Tanh(),
                                     nn.Linear(bottleneck, flat), nn.Tanh()) if bottleneck else nn.Identity()
        self.decoder = deconv_stack(channels, widths)

    def features(self, x):
        """x (B, C, S, S) in [-0.5, 0.5] -> conv features (B, *feature_shape) in [-1, 1]."""
        return self.encoder(x)

    def forward(self, x):
        h = self.squeeze(self.encoder(self.dropout(x))).view(-1, *self.feature_shape)
        return 0.5 * self.decoder(h)


class Deconvolver(nn.Module):
    """Conv features (B, *feature_shape) -> image (B, C, S, S) in [-0.5, 0.5]."""

    def __init__(self, channels=3, widths=(32, 64, 64)):
        super().__init__()
        widths = list(widths)
        self.args = dict(channels=channels, widths=widths)
        self.decoder = deconv_stack(channels, widths)

    def forward(self, features):
        return 0.5 * self.decoder(features)


class FeatureVAE(nn.Module):
    """Fully connected VAE over flattened conv features, Gaussian likelihood.

    Args:
        feature_shape: shape of one frame's features, e.g. (64, 8, 8).
        z_dim: size of Z (the original: 256).
        hidden: units of the softplus hidden layers (the original: 1500).
        log_sigma_floor: lower bound of the learned per-dimension log-sigma (the original: -10).
    """

    def __init__(self, feature_shape=(64, 8, 8), z_dim=256, hidden=1500, log_sigma_floor=-10.0):
        super().__init__()
        feature_shape = list(feature_shape)
        self.args = dict(feature_shape=feature_shape, z_dim=z_dim, hidden=hidden,
                         log_sigma_floor=log_sigma_floor)
        self.z_dim, self.feature_shape, self.floor = z_dim, tuple(feature_shape), log_sigma_floor
        self.latent_shape = None
        flat = math.prod(feature_shape)
        self.encoder = nn.Sequential(nn.Linear(flat, hidden), nn.Softplus(), nn.Linear(hidden, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.Softplus(), nn.Linear(hidden, flat))
        self.log_sigma = nn.Parameter(torch.zeros(flat))

    def encode(self, features):
        """features (B, *feature_shape) -> mean, log-variance of q(z|f), each (B, z_dim)."""
        mean, logvar = self.encoder(features.flatten(1)).chunk(2, dim=1)
        return mean, logvar.clamp(-15.0, 10.0)

    def decode(self, z):
        """z (B, z_dim) -> mean of p(f|z), (B, *feature_shape)."""
        return self.decoder(z).view(-1, *self.feature_shape)

    def forward(self, features, samples=1):
        mean, logvar = self.encode(features)
        z = mean + torch.exp(0.5 * logvar) * torch.randn((samples,) + mean.shape, device=mean.device)
        return self.decode(z.flatten(0, 1)).unflatten(0, (samples, mean.shape[0])), mean, logvar

    def loss(self, features, samples=1):
        """Negative ELBO per frame: Gaussian NLL of the features (summed over dimensions,
        averaged over latent samples) plus KL(q || N(0, I)); mean over the batch."""
        recon, mean, logvar = self(features, samples)
        return gaussian_elbo(recon, features, self.log_sigma.clamp(min=self.floor), mean, logvar)


class FeatureConvVAE(nn.Module):
    """Convolutional VAE over a conv feature map, Gaussian likelihood: a spatial Z of
    ``latent_channels`` at the map's size (3x3 convolutions, ELU between them).

    Each feature channel's sigma is the one that maximises the likelihood of the batch:
    the root mean squared error of that channel (floored at ``log_sigma_floor``), the value
    a learned sigma moves towards, reached at once instead of over thousands of steps
    (while a learned sigma is still large the KL term wins and Z collapses).

    Args:
        feature_shape: (C, h, w) of one frame's features, e.g. (64, 16, 16).
        latent_channels: channels of the Z map; Z has latent_channels * h * w numbers.
        hidden: channels of the hidden conv layers.
        log_sigma_floor: lower bound of the per-channel log-sigma (the original's: -10).
    """

    def __init__(self, feature_shape=(64, 16, 16), latent_channels=8, hidden=64, log_sigma_floor=-10.0):
        super().__init__()
        feature_shape = list(feature_shape)
        self.args = dict(feature_shape=feature_shape, latent_channels=latent_channels, hidden=hidden,
                         log_sigma_floor=log_sigma_floor)
        c, h, w = feature_shape
        self.feature_shape, self.floor = tuple(feature_shape), log_sigma_floor
        self.latent_shape = (latent_channels, h, w)
        self.z_dim = latent_channels * h * w
        self.encoder = nn.Sequential(nn.Conv2d(c, hidden, 3, padding=1), nn.ELU(),
                                     nn.Conv2d(hidden, hidden, 3, padding=1), nn.ELU(),
                                     nn.Conv2d(hidden, 2 * latent_channels, 3, padding=1))
        self.decoder = nn.Sequential(nn.Conv2d(latent_channels, hidden, 3, padding=1), nn.ELU(),
                                     nn.Conv2d(hidden, hidden, 3, padding=1), nn.ELU(),
                                     nn.Conv2d(hidden, c, 3, padding=1))

    def encode(self, features):
        """features (B, *feature_shape) -> mean, log-variance of q(z|f), each (B, z_dim)."""
        mean, logvar = self.encoder(features).chunk(2, dim=1)
        return mean.flatten(1), logvar.clamp(-15.0, 10.0).flatten(1)

    def decode(self, z):
        """z (B, z_dim) -> mean of p(f|z), (B, *feature_shape)."""
        return self.decoder(z.view(-1, *self.latent_shape))

    def loss(self, features, samples=1):
        """Negative ELBO per frame (see gaussian_elbo)."""
        mean, logvar = self.encode(features)
        z = mean + torch.exp(0.5 * logvar) * torch.randn((samples,) + mean.shape, device=mean.device)
        recon = self.decode(z.flatten(0, 1)).unflatten(0, (samples, mean.shape[0]))
        squared = (recon - features).pow(2).mean(dim=(0, 1, 3, 4), keepdim=True)[0, 0]  # (C, 1, 1)
        log_sigma = (0.5 * squared.clamp_min(1e-20).log()).clamp(min=self.floor)
        return gaussian_elbo(recon, features, log_sigma.expand(self.feature_shape), mean, logvar)


def gaussian_elbo(recon, features, log_sigma, mean, logvar):
    """Gaussian NLL of ``features`` (B, ...) under ``recon`` (samples, B, ...) with a learned
    ``log_sigma`` (summed over dimensions, averaged over the samples) plus KL(q || N(0, I));
    mean over the batch."""
    err = (recon.flatten(2) - features.flatten(1)) * torch.exp(-log_sigma.flatten())
    nll = (0.5 * err.pow(2) + log_sigma.flatten() + 0.5 * math.log(2 * math.pi)).sum(-1).mean()
    kl = -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp(), dim=1).mean()
    return nll + kl


def pixel_mse(prediction, target):
    """Squared error summed over a frame's pixels, mean over the batch."""
    return F.mse_loss(prediction, target, reduction="sum") / target.shape[0]
