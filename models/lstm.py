"""LSTM over latent codes: given Z of frames 1..t, predict Z of frame t+1.

Three cells: a dense LSTM on Z as a vector (the original); for a VAE with a spatial Z (a
C x h x w map), a convolutional LSTM (Shi et al. 2015) whose gates are 3x3 convolutions
over the map, so the same weights follow a digit wherever it is; or PredRNN's
spatiotemporal LSTM (Wang et al. 2017), a conv LSTM with a second memory that flows up
through the layers and from the top layer to the bottom one at the next step.

Three output heads: ``mean`` (a point prediction, trained with MSE on Z), ``gaussian``
(mean and log-sigma, trained with a KL divergence to the encoder's Gaussian) and ``mdn``
(a mixture of K Gaussians per Z dimension, Graves 2013, trained by likelihood); and, on a
spatial Z, an optional flow head that predicts how the last frame moves (models/flow.py).
Optionally it carries its own copy of the VAE's decoder, trained further on the frames its
predictions decode to.
"""
import math

import torch
import torch.nn as nn

from models.flow import block_motion
from models.vcae import ConvVAE

OUTPUTS = ("mean", "gaussian", "mdn")
CELLS = ("conv", "st", "dense")
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -7.0, 3.0


def bounded_log_sigma(raw):
    """Squash to [LOG_SIGMA_MIN, LOG_SIGMA_MAX] smoothly: gradients never vanish at a clamp."""
    mid, half = (LOG_SIGMA_MAX + LOG_SIGMA_MIN) / 2, (LOG_SIGMA_MAX - LOG_SIGMA_MIN) / 2
    return mid + half * torch.tanh(raw / half)


class ConvLSTMCell(nn.Module):
    """One convolutional LSTM layer: gates from a conv over [input, hidden state]."""

    def __init__(self, in_channels, hidden, kernel=3):
        super().__init__()
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x, h, c):
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class STLSTMCell(nn.Module):
    """One spatiotemporal LSTM layer (PredRNN): the conv LSTM's gates and cell state c,
    carried along time in this layer, beside gates of their own for the memory m, which
    comes from the layer below (or the top layer at the step before); the output gate
    reads both memories and the hidden state is a 1x1 fusion of them."""

    def __init__(self, in_channels, hidden, kernel=3):
        super().__init__()
        pad = kernel // 2
        self.x_gates = nn.Conv2d(in_channels, 7 * hidden, kernel, padding=pad)  # g i f, g' i' f', o
        self.h_gates = nn.Conv2d(hidden, 4 * hidden, kernel, padding=pad, bias=False)  # g i f o
        self.m_gates = nn.Conv2d(hidden, 3 * hidden, kernel, padding=pad, bias=False)  # g' i' f'
        self.o_memories = nn.Conv2d(2 * hidden, hidden, kernel, padding=pad, bias=False)
        self.fuse = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(self, x, h, c, m):
        xg, xi, xf, xg_m, xi_m, xf_m, xo = self.x_gates(x).chunk(7, dim=1)
        hg, hi, hf, ho = self.h_gates(h).chunk(4, dim=1)
        mg, mi, mf = self.m_gates(m).chunk(3, dim=1)
        c = torch.sigmoid(xf + hf) * c + torch.sigmoid(xi + hi) * torch.tanh(xg + hg)
        m = torch.sigmoid(xf_m + mf) * m + torch.sigmoid(xi_m + mi) * torch.tanh(xg_m + mg)
        memories = torch.cat([c, m], dim=1)
        o = torch.sigmoid(xo + ho + self.o_memories(memories))
        return o * torch.tanh(self.fuse(memories)), c, m


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM cells run over time, with nn.LSTM's calling convention on flat Z:
    (B, T, z_dim) in, (B, T, hidden * h * w) out, state = (h, c), each (layers, B, hidden, h, w).
    A subclass's cells may carry one more memory through the stack (see STLSTM)."""

    cell = ConvLSTMCell

    def __init__(self, latent_shape, hidden, layers, dropout, kernel=3):
        super().__init__()
        self.latent_shape = tuple(latent_shape)
        self.cells = nn.ModuleList(self.cell(self.latent_shape[0] if i == 0 else hidden, hidden, kernel)
                                   for i in range(layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, z, state):
        h, c = list(state[0].unbind(0)), list(state[1].unbind(0))
        memory = [m[0] for m in state[2:]]  # up the layers, then on to the next step's first one
        outputs = []
        for t in range(z.shape[1]):
            x = z[:, t].view(-1, *self.latent_shape)
            for i, cell in enumerate(self.cells):
                h[i], c[i], *memory = cell(self.dropout(x) if i else x, h[i], c[i], *memory)
                x = h[i]
            outputs.append(x)
        return torch.stack(outputs, dim=1), (torch.stack(h), torch.stack(c)) + tuple(m[None] for m in memory)


class STLSTM(ConvLSTM):
    """Stacked spatiotemporal LSTM cells run over time, with ConvLSTM's calling convention;
    state = (h, c, m): h and c (layers, B, hidden, h, w), m (1, B, hidden, h, w), the
    spatiotemporal memory the top layer hands to the bottom one at the next step."""

    cell = STLSTMCell


class LatentLSTM(nn.Module):
    """Next-latent predictor.

    Args:
        z_dim: size of Z.
        hidden: LSTM units (dense) or channels (conv) per layer (the original: 1024 units).
        layers: stacked LSTM layers (the original: 2).
        dropout: dropout before each layer (the original: 0.3).
        output: ``mean``, ``gaussian`` or ``mdn`` (see the module docstring).
        components: mixture components per Z dimension for ``mdn``.
        diffs: predict the change of Z (z[t+1] - z[t]) and add it to z[t].
        latent_shape: (C, h, w) of a spatial Z: a convolutional LSTM with ``hidden``
            channels per layer and 1x1-conv heads; None: a dense LSTM.
        cell: on a spatial Z, ``conv`` (ConvLSTM) or ``st`` (PredRNN's STLSTM).
        flow: (spatial Z only) a second head predicts, on Z's grid, how far each part of
            the frame moves to the next one (in pixels): frames are then predicted by
            moving the last context frame (models/predict.py). It starts at zero.
        flow_prior: (flow only) a share, or a list of shares, of the sub-pixel motion block
            matching finds between the last two context frames (see context_motion): every
            step's flow starts from that share of it (constant velocity), and the flow head
            learns what to add. With several shares the last frame is moved at each of them
            and a third head weighs the moved frames per cell of Z's grid (models/flow.py,
            blend): a mean over motion hypotheses where the context does not tell which one
            comes, starting from their plain mean. 0 or []: from zero.
        decoder: the constructor arguments of a ConvVAE (models/vcae.py): the model then
            holds that VAE's decoder (``decoder``; start_decoder copies its weights in),
            which decodes the predicted Z in place of the VAE's own (VAECodec.use_decoder)
            and is trained with the LSTM on the predicted frames. None: the VAE's decoder.
    """

    def __init__(self, z_dim=32, hidden=1024, layers=2, dropout=0.3, output="mean", components=5,
                 diffs=False, latent_shape=None, flow=False, flow_prior=0.0, cell="conv", decoder=None):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if latent_shape is not None and math.prod(latent_shape) != z_dim:
            raise ValueError(f"latent_shape {tuple(latent_shape)} does not hold z_dim {z_dim} numbers")
        if flow and latent_shape is None:
            raise ValueError("flow needs a spatial Z (latent_shape)")
        listed = isinstance(flow_prior, (list, tuple))  # a number in checkpoints from before the blend
        shares = [float(f) for f in (flow_prior if listed else [flow_prior])]
        if any(shares) and not flow:
            raise ValueError("flow_prior starts the flow head's flows: it needs flow=True")
        if cell not in ("conv", "st"):
            raise ValueError(f"cell must be conv or st on a spatial Z, got {cell!r}")
        self.args = dict(z_dim=z_dim, hidden=hidden, layers=layers, dropout=dropout, output=output,
                         components=components, diffs=diffs,
                         latent_shape=None if latent_shape is None else list(latent_shape), flow=flow,
                         flow_prior=shares if listed else flow_prior)
        if cell != "conv":  # absent at the default, as in checkpoints from before the st cell
            self.args["cell"] = cell
        if decoder is not None:  # absent without one, as in checkpoints from before it
            self.args["decoder"] = dict(decoder)
            self.decoder = ConvVAE(**decoder).without_encoder()
            if self.decoder.z_dim != z_dim:
                raise ValueError(f"the decoder takes a Z of {self.decoder.z_dim} numbers, not {z_dim}")
        self.flow = flow
        self.flow_prior = shares if any(shares) else []  # the shares, a list; 0 alone: none
        self.z_dim, self.output, self.k, self.diffs = z_dim, output, components, diffs
        self.latent_shape = None if latent_shape is None else tuple(latent_shape)
        self.input_dropout = nn.Dropout(dropout)
        self.per_dim = {"mean": 1, "gaussian": 2, "mdn": 3 * components}[output]
        if self.latent_shape is None:
            self.lstm = nn.LSTM(z_dim, hidden, layers, batch_first=True,
                                dropout=dropout if layers > 1 else 0.0)
            state_shape = (layers, 1, hidden)
            self.head = nn.Linear(hidden, z_dim * self.per_dim)
        else:
            self.lstm = (STLSTM if cell == "st" else ConvLSTM)(self.latent_shape, hidden, layers, dropout)
            state_shape = (layers, 1, hidden) + self.latent_shape[1:]
            self.head = nn.Conv2d(hidden, self.latent_shape[0] * self.per_dim, 1)
            if flow:  # x and y displacement per cell of Z's grid, from zero: a copy of the last frame
                self.flow_head = nn.Conv2d(hidden, 2, 1)
                nn.init.zeros_(self.flow_head.weight)
                nn.init.zeros_(self.flow_head.bias)
            if len(self.flow_prior) > 1:  # a weight per share and cell, from equal ones: the plain mean
                self.blend_head = nn.Conv2d(hidden, len(self.flow_prior), 1)
                nn.init.zeros_(self.blend_head.weight)
                nn.init.zeros_(self.blend_head.bias)
        # learned initial states, as in the original (and the st cell's first memory)
        self.h0 = nn.Parameter(torch.zeros(state_shape))
        self.c0 = nn.Parameter(torch.zeros(state_shape))
        if latent_shape is not None and cell == "st":
            self.m0 = nn.Parameter(torch.zeros((1,) + state_shape[1:]))

    def start_decoder(self, vae):
        """Copy the decoder's weights from ``vae``, the ConvVAE its arguments describe."""
        own = self.decoder.state_dict()
        self.decoder.load_state_dict({k: v for k, v in vae.state_dict().items() if k in own})

    def initial_state(self, batch):
        shape = (-1, batch) + self.h0.shape[2:]
        starts = (self.h0, self.c0) + ((self.m0,) if hasattr(self, "m0") else ())
        return tuple(s.expand(shape).contiguous() for s in starts)

    def _head(self, h):
        """LSTM outputs (B, T, ...) -> raw head outputs (B, T, z_dim * per_dim), laid out as
        the dense head's: [mean | log_sigma] halves, or (z_dim, 3K) for mdn."""
        if self.latent_shape is None:
            return self.head(h)
        b, t = h.shape[:2]
        c, hh, ww = self.latent_shape
        raw = self.head(h.reshape(b * t, -1, hh, ww)).reshape(b, t, self.per_dim, c * hh * ww)
        if self.output == "mdn":  # each Z dimension's 3K numbers side by side
            return raw.transpose(2, 3).reshape(b, t, -1)
        return raw.reshape(b, t, -1)

    def context_motion(self, prev, last):
        """The sub-pixel block-matched motion from ``prev`` to ``last`` (B, C, H, W), the last
        two context frames, on Z's grid (B, 2, h, w): what flow_prior starts from."""
        return block_motion(prev, last, grid=self.latent_shape[1:], subpixel=True)

    def forward(self, z, state=None):
        """z (B, T, z_dim) -> (prediction of each next Z, LSTM state after the last step).

        The prediction is a dict of (B, T, ...) tensors: ``mean`` (B, T, z_dim) always (for
        mdn, the mixture's mean), ``log_sigma`` for gaussian; ``logits``, ``means``,
        ``log_sigmas`` (B, T, z_dim, K) for mdn; ``flow`` (B, T, 2, h, w) with a flow head
        (x and y displacements in pixels on Z's grid, see models/flow.py); ``blend``
        (B, T, K, h, w) with several flow_prior shares (each share's log-weight per cell).
        """
        if state is None:
            state = self.initial_state(z.shape[0])
        h, state = self.lstm(self.input_dropout(z), state)
        raw = self._head(h)
        base = z if self.diffs else 0.0
        extra = {}
        if self.flow:
            b, t = h.shape[:2]
            grid = self.latent_shape[1:]
            extra["flow"] = self.flow_head(h.reshape(b * t, -1, *grid)).view(b, t, -1, *grid)
            if len(self.flow_prior) > 1:
                extra["blend"] = self.blend_head(h.reshape(b * t, -1, *grid)).view(b, t, -1, *grid)
        if self.output == "mean":
            return {"mean": raw + base, **extra}, state
        if self.output == "gaussian":
            mean, log_sigma = raw.chunk(2, dim=-1)
            return {"mean": mean + base, "log_sigma": bounded_log_sigma(log_sigma), **extra}, state
        logits, means, log_sigmas = raw.unflatten(-1, (self.z_dim, 3 * self.k)).chunk(3, dim=-1)
        means = means + (z.unsqueeze(-1) if self.diffs else 0.0)
        weights = torch.softmax(logits, dim=-1)
        return {"mean": (weights * means).sum(-1), "logits": logits, "means": means,
                "log_sigmas": bounded_log_sigma(log_sigmas), **extra}, state

    def unroll(self, z, horizon, temperature=0.0, generator=None, truth=None, truth_share=0.0):
        """Teacher-forced on the context's Z ``z`` (B, K, z_dim), then ``horizon`` - 1 more
        steps fed its own prediction: the mean at temperature 0, else (gaussian, mdn) a
        sample at that temperature (see draw).

        Scheduled sampling (training): with ``truth`` (B, horizon - 1 or more, z_dim), the
        true Z of the frames after the context, each window is fed at each of those steps
        the true Z instead of its own with probability ``truth_share`` (drawn from torch's
        global generator); 1 is teacher forcing throughout, 0 the plain rollout.

        Returns the predictions (dict as in forward) of frames 2..K + horizon, each
        (B, K - 1 + horizon, ...), plus ``z``: the Z each step predicts (the mean, or the
        sample that was fed back). Steps K..K + horizon - 1 (from index K - 1) are the
        frames after the context; horizon 1 is plain teacher forcing."""
        out, state = self(z)
        out["z"] = self.draw(out, temperature, generator)
        steps = [out]
        for t in range(horizon - 1):
            fed = out["z"][:, -1:]
            if truth_share > 0:
                true = torch.rand(fed.shape[0], 1, 1, device=fed.device) < truth_share
                fed = torch.where(true, truth[:, t:t + 1].to(fed.dtype), fed)
            out, state = self(fed, state)
            out["z"] = self.draw(out, temperature, generator)
            steps.append(out)
        return {k: torch.cat([s[k] for s in steps], dim=1) for k in steps[0]}

    def draw(self, out, temperature, generator=None):
        """The next Z from a prediction: its mean when temperature is 0 (for mdn at a
        temperature near 0, the mean of the most likely component)."""
        if temperature <= 0 or self.output == "mean":
            return out["mean"]
        if self.output == "gaussian":
            noise = torch.randn(out["mean"].shape, generator=generator, device=out["mean"].device)
            return out["mean"] + math.sqrt(temperature) * out["log_sigma"].exp() * noise
        return mdn_sample(out, temperature, generator)


def mdn_sample(out, temperature, generator=None):
    """Sample a mixture per dimension: component from softmax(logits / T), then its
    Gaussian with variance scaled by T. As T -> 0 this is the most likely component's mean."""
    logits = out["logits"] / max(temperature, 1e-8)
    probs = torch.softmax(logits, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    pick = torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1] + (1,))
    mean = out["means"].gather(-1, pick).squeeze(-1)
    sigma = out["log_sigmas"].gather(-1, pick).squeeze(-1).exp()
    noise = torch.randn(mean.shape, generator=generator, device=mean.device)
    return mean + math.sqrt(temperature) * sigma * noise
