"""LSTM over latent codes: given Z of frames 1..t, predict Z of frame t+1."""
import torch
import torch.nn as nn


class LatentLSTM(nn.Module):
    """Next-latent predictor.

    Args:
        z_dim: size of Z.
        hidden: LSTM units per layer (the original: 1024).
        layers: stacked LSTM layers (the original: 2).
        dropout: dropout before each layer (the original: 0.3).
        predict_sigma: also predict a log-sigma per dimension (for the KL loss).
        diffs: predict the change of Z (z[t+1] - z[t]) and add it to z[t].
    """

    def __init__(self, z_dim=32, hidden=1024, layers=2, dropout=0.3, predict_sigma=False,
                 diffs=False):
        super().__init__()
        self.args = dict(z_dim=z_dim, hidden=hidden, layers=layers, dropout=dropout,
                         predict_sigma=predict_sigma, diffs=diffs)
        self.z_dim, self.diffs = z_dim, diffs
        self.input_dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(z_dim, hidden, layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        # learned initial states, as in the original
        self.h0 = nn.Parameter(torch.zeros(layers, 1, hidden))
        self.c0 = nn.Parameter(torch.zeros(layers, 1, hidden))
        self.to_mean = nn.Linear(hidden, z_dim)
        self.to_log_sigma = nn.Linear(hidden, z_dim) if predict_sigma else None

    def initial_state(self, batch):
        return (self.h0.expand(-1, batch, -1).contiguous(), self.c0.expand(-1, batch, -1).contiguous())

    def forward(self, z, state=None):
        """z (B, T, z_dim) -> predicted mean of the next Z (B, T, z_dim), its log-sigma
        (B, T, z_dim) or None, and the LSTM state after the last step."""
        if state is None:
            state = self.initial_state(z.shape[0])
        h, state = self.lstm(self.input_dropout(z), state)
        mean = self.to_mean(h)
        if self.diffs:
            mean = mean + z
        log_sigma = None
        if self.to_log_sigma is not None:
            log_sigma = self.to_log_sigma(h).clamp(-10.0, 5.0)
        return mean, log_sigma, state

    @torch.no_grad()
    def rollout(self, context, horizon):
        """Prime on ``context`` (B, K, z_dim), then feed back its own predicted means for
        ``horizon`` steps. Returns the predicted Z of frames K+1..K+horizon, (B, horizon, z_dim)."""
        mean, _, state = self(context)
        step = mean[:, -1:]
        out = [step]
        for _ in range(horizon - 1):
            step, _, state = self(step, state)
            out.append(step)
        return torch.cat(out, dim=1)


def latent_mse(pred_mean, target_mean):
    """Squared error summed over Z's dimensions, mean over batch and time."""
    return (pred_mean - target_mean).pow(2).sum(-1).mean()


def gaussian_kl(target_mean, target_logvar, pred_mean, pred_log_sigma):
    """KL(N(target) || N(pred)) summed over Z's dimensions, mean over batch and time.

    The target is the VAE encoder's Gaussian for the next frame; the prediction is the
    LSTM's (mean, log-sigma)."""
    pred_logvar = 2.0 * pred_log_sigma
    kl = 0.5 * (pred_logvar - target_logvar
                + (target_logvar.exp() + (target_mean - pred_mean).pow(2)) / pred_logvar.exp() - 1.0)
    return kl.sum(-1).mean()
