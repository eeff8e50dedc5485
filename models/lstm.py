"""LSTM over latent codes: given Z of frames 1..t, predict Z of frame t+1.

Two cells: a dense LSTM on Z as a vector (the original), or, for a VAE with a spatial Z
(a C x h x w map), a convolutional LSTM (Shi et al. 2015) whose gates are 3x3 convolutions
over the map, so the same weights follow a digit wherever it is.

Three output heads: ``mean`` (a point prediction, trained with MSE on Z), ``gaussian``
(mean and log-sigma, trained with a KL divergence to the encoder's Gaussian) and ``mdn``
(a mixture of K Gaussians per Z dimension, Graves 2013, trained by likelihood).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

OUTPUTS = ("mean", "gaussian", "mdn")
CELLS = {  # each cell's default size and dropout (measured: no input dropout for the conv cell)
    "conv": dict(hidden=64, layers=1, dropout=0.0),
    "dense": dict(hidden=512, layers=2, dropout=0.3),  # the original: 1024 units
}
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


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM cells run over time, with nn.LSTM's calling convention on flat Z:
    (B, T, z_dim) in, (B, T, hidden * h * w) out, state = (h, c), each (layers, B, hidden, h, w)."""

    def __init__(self, latent_shape, hidden, layers, dropout, kernel=3):
        super().__init__()
        self.latent_shape = tuple(latent_shape)
        self.cells = nn.ModuleList(ConvLSTMCell(self.latent_shape[0] if i == 0 else hidden, hidden, kernel)
                                   for i in range(layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, z, state):
        h, c = list(state[0].unbind(0)), list(state[1].unbind(0))
        outputs = []
        for t in range(z.shape[1]):
            x = z[:, t].view(-1, *self.latent_shape)
            for i, cell in enumerate(self.cells):
                h[i], c[i] = cell(self.dropout(x) if i else x, h[i], c[i])
                x = h[i]
            outputs.append(x)
        return torch.stack(outputs, dim=1), (torch.stack(h), torch.stack(c))


class LatentLSTM(nn.Module):
    """Next-latent predictor.

    Args:
        z_dim: size of Z.
        hidden: LSTM units per layer (the original: 1024).
        layers: stacked LSTM layers (the original: 2).
        dropout: dropout before each layer (the original: 0.3).
        output: ``mean``, ``gaussian`` or ``mdn`` (see the module docstring).
        components: mixture components per Z dimension for ``mdn``.
        diffs: predict the change of Z (z[t+1] - z[t]) and add it to z[t].
        latent_shape: (C, h, w) of a spatial Z: a convolutional LSTM with ``hidden``
            channels per layer and 1x1-conv heads; None: a dense LSTM.
        flow: (spatial Z only) a second head predicts, on Z's grid, how far each part of
            the frame moves to the next one (in pixels; see warp): frames are then
            predicted by moving the last one, not by decoding Z. It starts at zero, a
            copy of the last frame.
        flow_modes: 1: one flow per step. K > 1: K hypotheses per pixel, the still last
            frame and K - 1 flows, mixed by per-pixel weights the head also predicts (see
            move), so what stands still is copied unresampled and where the motion is
            uncertain the prediction can spread over several.
        flow_prior: (flow only) > 0: the first step's flow starts from this fraction of the
            motion block matching finds between the last two context frames (see
            block_motion); the head learns what to add. 0: from zero.
        subpixel_motion: (flow_prior or motion_inputs) that motion refined to fractions of a
            pixel (see block_motion); False: whole pixels, as models before it was added.
        motion_inputs: (flow only) the LSTM also reads that block-matched motion (on Z's
            grid, 2 channels, the same at every step), so it can learn where to trust it.
        flow_decay: (flow_prior only) each later step's share of that motion is this
            factor of the one before: 1 continues the motion unchanged, 0 moves once and
            holds (film motion measured over one frame pair does not persist).
        frame_channels: (flow only) > 0: the LSTM also sees each frame's pixels, each
            cell of Z's grid the pixels it covers (pixel_unshuffle: image channels x
            cell area channels), the true frames of the context, then its own predicted
            frames. 0: Z only.
    """

    def __init__(self, z_dim=32, hidden=1024, layers=2, dropout=0.3, output="mean", components=5,
                 diffs=False, latent_shape=None, flow=False, flow_modes=1, frame_channels=0, flow_prior=0.0,
                 flow_decay=1.0, motion_inputs=False, subpixel_motion=False):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if latent_shape is not None and math.prod(latent_shape) != z_dim:
            raise ValueError(f"latent_shape {tuple(latent_shape)} does not hold z_dim {z_dim} numbers")
        if flow and latent_shape is None:
            raise ValueError("flow needs a spatial Z (latent_shape)")
        if flow_modes < 1 or (flow_modes > 1 and not flow):
            raise ValueError(f"flow_modes must be 1, or more with flow=True; got {flow_modes}")
        self.args = dict(z_dim=z_dim, hidden=hidden, layers=layers, dropout=dropout, output=output,
                         components=components, diffs=diffs,
                         latent_shape=None if latent_shape is None else list(latent_shape), flow=flow)
        if frame_channels and not flow:
            raise ValueError("frame_channels feeds the frames a flow moves: it needs flow=True")
        if flow_prior and (not flow or frame_channels):
            raise ValueError("flow_prior needs flow=True and frame_channels=0")
        if not 0.0 <= flow_decay <= 1.0 or (flow_decay != 1.0 and not flow_prior):
            raise ValueError(f"flow_decay must be in [0, 1], and differ from 1 only with flow_prior; got {flow_decay}")
        # absent at their defaults, so checkpoints written before they existed still resume
        if motion_inputs and (not flow or frame_channels):
            raise ValueError("motion_inputs needs flow=True and frame_channels=0")
        if subpixel_motion and not (flow_prior or motion_inputs):
            raise ValueError("subpixel_motion refines the motion that flow_prior and motion_inputs use: "
                             "it needs one of them")
        defaults = {"flow_modes": 1, "frame_channels": 0, "flow_prior": 0.0, "flow_decay": 1.0,
                    "motion_inputs": False, "subpixel_motion": False}
        self.args.update({k: v for k, v in (("flow_modes", flow_modes), ("frame_channels", frame_channels),
                                            ("flow_prior", flow_prior), ("flow_decay", flow_decay),
                                            ("motion_inputs", motion_inputs),
                                            ("subpixel_motion", subpixel_motion))
                          if v != defaults[k]})
        self.flow, self.flow_modes, self.frame_channels = flow, flow_modes, frame_channels
        self.flow_prior, self.flow_decay, self.motion_inputs = flow_prior, flow_decay, motion_inputs
        self.subpixel_motion = subpixel_motion
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
            inputs = (self.latent_shape[0] + frame_channels + 2 * motion_inputs,) + self.latent_shape[1:]
            self.lstm = ConvLSTM(inputs, hidden, layers, dropout)
            state_shape = (layers, 1, hidden) + self.latent_shape[1:]
            self.head = nn.Conv2d(hidden, self.latent_shape[0] * self.per_dim, 1)
            if flow:  # 2 numbers per flow, then (with several modes) one weight per mode
                moving = max(1, flow_modes - 1)
                self.flow_head = nn.Conv2d(hidden, 2 * moving + (flow_modes if flow_modes > 1 else 0), 1)
                nn.init.zeros_(self.flow_head.weight)
                nn.init.zeros_(self.flow_head.bias)
                # flows beyond the first start slightly apart, or they would stay equal forever
                nn.init.normal_(self.flow_head.weight[2:2 * moving], std=1e-3)
        # learned initial states, as in the original
        self.h0 = nn.Parameter(torch.zeros(state_shape))
        self.c0 = nn.Parameter(torch.zeros(state_shape))

    def initial_state(self, batch):
        shape = (-1, batch) + self.h0.shape[2:]
        return (self.h0.expand(shape).contiguous(), self.c0.expand(shape).contiguous())

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

    @property
    def uses_motion(self):
        """Whether the model needs the context's block-matched motion (see context_motion)."""
        return bool(self.flow_prior or self.motion_inputs)

    def context_motion(self, prev, last):
        """The block-matched motion from ``prev`` to ``last`` (B, C, H, W), the last two
        context frames, on Z's grid (B, 2, h, w); what flow_prior and motion_inputs use."""
        return block_motion(prev, last, grid=self.latent_shape[1:], subpixel=self.subpixel_motion)

    def with_frames(self, z, frames, motion=None):
        """The LSTM's input: z (B, T, z_dim), and for a model with frame_channels the frames
        (B, T, C, H, W) in [0, 1] unshuffled onto Z's grid beside it, flat; for one with
        motion_inputs, ``motion`` (B, 2, h, w) beside it at every step."""
        if self.motion_inputs:
            if motion is None:
                raise ValueError("this model also reads the context's motion: pass motion")
            b, t = z.shape[:2]
            moving = motion.unsqueeze(1).expand(-1, t, -1, -1, -1)
            return torch.cat([z.view(b, t, *self.latent_shape), moving], dim=2).flatten(2)
        if not self.frame_channels:
            return z
        if frames is None:
            raise ValueError("this model also reads the frames: pass frames")
        b, t = z.shape[:2]
        pixels = F.pixel_unshuffle(frames.flatten(0, 1), frames.shape[-1] // self.latent_shape[2])
        return torch.cat([z.view(b, t, *self.latent_shape), pixels.view(b, t, -1, *self.latent_shape[1:]) - 0.5],
                         dim=2).flatten(2)

    def forward(self, z, state=None, frames=None, motion=None):
        """z (B, T, z_dim) -> (prediction of each next Z, LSTM state after the last step).
        ``frames`` (B, T, C, H, W): the frames of z, for a model with frame_channels;
        ``motion``: the context's motion (context_motion), for one with motion_inputs.

        The prediction is a dict of (B, T, z_dim) tensors: ``mean`` always (for mdn, the
        mixture's mean), ``log_sigma`` for gaussian; ``logits``, ``means``, ``log_sigmas``
        (B, T, z_dim, K) for mdn.
        """
        if state is None:
            state = self.initial_state(z.shape[0])
        h, state = self.lstm(self.input_dropout(self.with_frames(z, frames, motion)), state)
        raw = self._head(h)
        base = z if self.diffs else 0.0
        extra = {}
        if self.flow:  # (B, T, channels, h, w): x and y displacements in pixels (see move)
            b, t = h.shape[:2]
            grid = self.latent_shape[1:]
            extra["flow"] = self.flow_head(h.reshape(b * t, -1, *grid)).view(b, t, -1, *grid)
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

    def unroll(self, z, context, frames=None, motion=None):
        """Teacher-forced on z[:, :context], then fed its own predicted means (and, with
        frame_channels, its own predicted frames; ``frames`` (B, >= context, C, H, W) holds
        the true ones).

        z (B, T, z_dim) -> predictions (dict as in forward) for frames 2..T, (B, T-1, ...).
        With context >= T - 1 this is plain teacher forcing at every step."""
        n = max(1, min(context, z.shape[1] - 1))
        out, state = self(z[:, :n], frames=None if frames is None else frames[:, :n], motion=motion)
        steps = [out]
        for _ in range(z.shape[1] - 1 - n):
            shown = None
            if self.frame_channels:  # its own latest frame: the last true one moved so far
                shown = self._next_frame(frames[:, n - 1], torch.cat([s["flow"] for s in steps], dim=1)[:, n - 1:])
            out, state = self(out["mean"][:, -1:], state, frames=shown, motion=motion)
            steps.append(out)
        return {k: torch.cat([s[k] for s in steps], dim=1) for k in steps[0]}

    def _next_frame(self, last, flows):
        """The latest predicted frame (B, 1, C, H, W): ``last`` moved by the flow head's
        outputs since it (see move), clipped to [0, 1]."""
        return self.move(last, flows)[:, -1:].clamp(0.0, 1.0)

    @torch.no_grad()
    def rollout(self, context, horizon, temperature=0.0, generator=None, flows=False, frames=None,
                motion=None):
        """Prime on ``context`` (B, K, z_dim), then generate ``horizon`` steps, feeding back
        its own prediction: the mean at temperature 0, else (mdn, gaussian) a sample drawn
        at that temperature. Returns Z of frames K+1..K+horizon, (B, horizon, z_dim), and
        with ``flows`` also each step's flow head output (B, horizon, channels, h, w).
        ``frames`` (B, K, C, H, W): the context's frames, for a model with frame_channels;
        ``motion``: their motion (context_motion), for one with motion_inputs."""
        out, state = self(context, frames=frames, motion=motion)
        step = self.draw(out, temperature, generator)[:, -1:]
        steps, moves = [step], [out["flow"][:, -1:]] if self.flow else []
        for _ in range(horizon - 1):
            shown = self._next_frame(frames[:, -1], torch.cat(moves, dim=1)) if self.frame_channels else None
            out, state = self(step, state, frames=shown, motion=motion)
            step = self.draw(out, temperature, generator)
            steps.append(step)
            if self.flow:
                moves.append(out["flow"])
        z = torch.cat(steps, dim=1)
        return (z, torch.cat(moves, dim=1)) if flows else z

    def with_prior(self, flows, prev, last, motion=None):
        """The flow head's outputs ``flows`` (B, T, channels, h, w) with the block-matching
        motion from ``prev`` to ``last`` (B, C, H, W) added to each step's flow(s):
        flow_prior x flow_decay^t of it at step t (from 0); unchanged when flow_prior is 0.
        ``motion``: that motion if already measured (context_motion)."""
        if not self.flow_prior:
            return flows
        motion = self.context_motion(prev, last) if motion is None else motion
        moving = max(1, self.flow_modes - 1)
        extra = torch.zeros_like(flows)
        extra[:, :, :2 * moving] = prior_flows(motion.repeat(1, moving, 1, 1), self.flow_prior, self.flow_decay,
                                               flows.shape[1])
        return flows + extra

    def move(self, last, flows, prev=None, motion=None):
        """The frames after ``last`` (B, C, H, W) predicted from the flow head's outputs
        ``flows`` (B, T, channels, h, w): (B, T, C, H, W). One mode: ``last`` moved by the
        summed flows (warp_rollout). K modes: per pixel, a softmax-weighted mix of ``last``
        itself and of ``last`` moved by each of the K - 1 summed flows. A model with
        flow_prior needs ``prev``, the frame before ``last``, or ``motion``, the motion
        between them (see with_prior)."""
        if self.flow_prior:
            if prev is None and motion is None:
                raise ValueError("this model's flows start from the motion since the frame before: pass prev")
            flows = self.with_prior(flows, prev, last, motion)
        if self.flow_modes == 1:
            return warp_rollout(last, flows)
        moving = self.flow_modes - 1
        b, t = flows.shape[:2]
        height, width = last.shape[-2:]
        totals = flows[:, :, :2 * moving].cumsum(1)  # (B, T, 2 * moving, h, w)
        weights = F.interpolate(flows[:, :, 2 * moving:].flatten(0, 1), size=(height, width),
                                mode="bilinear", align_corners=False).softmax(1).view(b, t, -1, 1, height, width)
        out = weights[:, :, 0] * last.unsqueeze(1)
        for k in range(moving):
            shifted = warp(last.repeat(t, 1, 1, 1),  # every step's sum at once
                           totals[:, :, 2 * k:2 * k + 2].transpose(0, 1).flatten(0, 1))
            out = out + weights[:, :, k + 1] * shifted.view(t, b, *last.shape[1:]).transpose(0, 1)
        return out

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


def warp(frames, flow):
    """Frames (B, C, H, W) moved by ``flow`` (B, 2, h, w): each pixel p takes the value at
    p + flow(p) (x, then y, in pixels; bilinear), the flow given on a coarser grid (Z's)
    and upsampled bilinearly. Pixels fetched from beyond the edge repeat the edge."""
    b, _, height, width = frames.shape
    flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=frames.dtype, device=frames.device),
                            torch.arange(width, dtype=frames.dtype, device=frames.device), indexing="ij")
    grid = torch.stack([(xs + flow[:, 0] + 0.5) * (2.0 / width) - 1.0,
                        (ys + flow[:, 1] + 0.5) * (2.0 / height) - 1.0], dim=-1)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.no_grad()
def block_motion(prev, last, radius=6, box=9, grid=None, subpixel=False, chunk=32):
    """How far the content of ``last`` (B, C, H, W) moved since ``prev``, per pixel, by
    block matching: the shift d (x, y in pixels, |d| <= ``radius``) for which ``prev`` at
    p + d looks most like ``last`` at p, in grey over a ``box`` x ``box`` window, then
    averaged over such a window (and, with ``grid`` (h, w), over each cell of that grid).
    ``subpixel``: the whole-pixel best shift is refined, along x and along y, to the
    minimum of the parabola through its cost and its two neighbours' (at most half a
    pixel either way); otherwise whole pixels. In warp's convention (B, 2, H, W) or
    (B, 2, h, w): the same motion once more gives the next frame as warp(last, d). Works
    on ``chunk`` frames at a time (its costs take chunk x (2 radius + 1)^2 x H x W floats)."""
    if len(last) > chunk:
        return torch.cat([block_motion(p, q, radius, box, grid, subpixel, chunk)
                          for p, q in zip(prev.split(chunk), last.split(chunk))])
    grey_prev, grey_last = prev.mean(1, keepdim=True), last.mean(1, keepdim=True)
    height, width = last.shape[-2:]
    padded = F.pad(grey_prev, (radius,) * 4, mode="replicate")
    side = 2 * radius + 1
    costs = torch.stack([
        F.avg_pool2d((padded[..., radius + dy:radius + dy + height, radius + dx:radius + dx + width]
                      - grey_last).abs(), box, stride=1, padding=box // 2, count_include_pad=False)[:, 0]
        + 1e-4 * (dx * dx + dy * dy)  # ties: the shorter
        for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)], dim=1)
    best = costs.argmin(1, keepdim=True)  # the first of equal costs, dy then dx ascending
    row, col = best // side, best % side
    motion = torch.cat([col, row], dim=1).to(last.dtype) - radius
    if subpixel:
        def cost(r, c):
            return costs.gather(1, r.clamp(0, side - 1) * side + c.clamp(0, side - 1))

        centre = cost(row, col)
        for axis, (before, after, inside) in enumerate((
                (cost(row, col - 1), cost(row, col + 1), (col > 0) & (col < side - 1)),
                (cost(row - 1, col), cost(row + 1, col), (row > 0) & (row < side - 1)))):
            curve = before - 2 * centre + after
            shift = 0.5 * (before - after) / curve.clamp_min(1e-12)
            motion[:, axis:axis + 1] += torch.where(inside & (curve > 1e-12), shift.clamp(-0.5, 0.5), 0.0)
    motion = F.avg_pool2d(motion, box, stride=1, padding=box // 2, count_include_pad=False)
    return motion if grid is None else F.adaptive_avg_pool2d(motion, tuple(grid))


def prior_flows(motion, fraction, decay, steps):
    """Each step's share of ``motion`` (B, 2, h, w): ``fraction`` x ``decay``^t at step t
    (from 0), as flows (B, steps, 2, h, w) for warp_rollout."""
    shares = fraction * decay ** torch.arange(steps, dtype=motion.dtype, device=motion.device)
    return shares.view(1, -1, 1, 1, 1) * motion.unsqueeze(1)


def warp_rollout(last, flows):
    """The frames after ``last`` (B, C, H, W): each is ``last`` moved by the sum of the
    flows ``flows`` (B, T, 2, h, w) up to its step, resampled once (resampling each frame
    from the one before would blur a little more with every step): (B, T, C, H, W)."""
    total, out = torch.zeros_like(flows[:, 0]), []
    for t in range(flows.shape[1]):
        total = total + flows[:, t]
        out.append(warp(last, total))
    return torch.stack(out, dim=1)


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


def mdn_nll(out, target):
    """Negative log-likelihood of ``target`` (B, T, z_dim) under the per-dimension mixtures,
    summed over dimensions, mean over batch and time; log-sum-exp keeps it finite."""
    log_weights = torch.log_softmax(out["logits"], dim=-1)
    log_sigmas = out["log_sigmas"]
    z = (target.unsqueeze(-1) - out["means"]) * torch.exp(-log_sigmas)
    log_prob = -0.5 * z.pow(2) - log_sigmas - 0.5 * math.log(2 * math.pi)
    return -torch.logsumexp(log_weights + log_prob, dim=-1).sum(-1).mean()


def prediction_loss(out, target_mean, target_logvar, kind):
    """The LSTM's training loss for one of the ``kind``s mse, kl, mdn."""
    if kind == "kl":
        return gaussian_kl(target_mean, target_logvar, out["mean"], out["log_sigma"])
    if kind == "mdn":
        return mdn_nll(out, target_mean)
    return latent_mse(out["mean"], target_mean)


def sequence_loss(model, batch, *, loss="mse", context=1, rollout=True, pixel_frames=0,
                  codec=None, frames=None, skip=False, z_weight=1.0, squared=False):
    """Loss of predicting Z[t+1] for every t of a window.

    Args:
        batch: (mean, logvar) of Z, each (B, T, z_dim), and the window's frame indices (B, T).
        loss: how frames are scored on Z: mse, kl or mdn (see prediction_loss).
        context: true frames fed before the LSTM runs on its own predictions (``rollout``;
            without it, teacher forcing throughout).
        pixel_frames: > 0 scores the predictions of frames context+1..T in pixels (the
            codec's reconstruction loss of the decoded prediction against ``frames``
            uint8 (F, C, H, W) at the window's indices; ``pixel_frames`` of them picked at
            random per batch while training, all of them when evaluating) and the earlier
            ones on Z; 0 scores all of them on Z.
        skip: decode the pixel-scored predictions from the last context frame (see
            Codec.skip_decode).
        z_weight: (flow models) the weight of the loss on Z beside the pixel loss.
        squared: score decoded frames by squared error also where the codec has a
            likelihood of its own (see VAECodec.pixel_loss).
    A model with a flow head is scored on Z at every step, plus in pixels: the last
    context frame moved step by step by the predicted flows (see warp_rollout) against
    the true frames (squared error summed over each frame's pixels in [0, 1]).
    """
    mean, logvar, index = batch
    seen = None
    if getattr(model, "frame_channels", 0):  # the true frames the LSTM reads
        n = context if rollout else mean.shape[1]
        seen = frames[index[:, :n].flatten().cpu()].to(mean.device).float().div_(255.0)
        seen = seen.view(index.shape[0], n, *seen.shape[1:])
    motion = None
    if getattr(model, "flow", False):
        first = context - 1
        last = frames[index[:, first].cpu()].to(mean.device).float() / 255.0
        if model.uses_motion:
            prev = frames[index[:, first - 1].cpu()].to(mean.device).float() / 255.0
            motion = model.context_motion(prev, last)
    out = model.unroll(mean, context if rollout else mean.shape[1], seen, motion)
    if getattr(model, "flow", False):
        moved = model.move(last, out["flow"][:, first:], motion=motion)
        target = frames[index[:, first + 1:].flatten().cpu()].to(mean.device).float().div_(255.0)
        pixels = (moved - target.view_as(moved)).pow(2).flatten(2).sum(-1).mean()
        return z_weight * prediction_loss(out, mean[:, 1:], logvar[:, 1:], loss) + pixels
    if not pixel_frames:
        return prediction_loss(out, mean[:, 1:], logvar[:, 1:], loss)
    first = context - 1  # out[:, first] predicts the first frame after the context
    total = prediction_loss({k: v[:, :first] for k, v in out.items()}, mean[:, 1:first + 1],
                            logvar[:, 1:first + 1], loss) if first else 0.0
    n = out["mean"].shape[1] - first
    steps = torch.randperm(n)[:pixel_frames] if model.training else torch.arange(n)
    steps = steps.to(mean.device) + first
    z = out["mean"][:, steps].flatten(0, 1)
    target = frames[index[:, steps + 1].flatten().cpu()].to(mean.device)
    skip_from = None
    if skip:
        last = index[:, context - 1].repeat_interleave(len(steps))
        skip_from = (mean[:, context - 1].repeat_interleave(len(steps), 0), frames[last.cpu()].to(mean.device))
    return total + codec.pixel_loss(z, target, skip_from, squared=squared)
