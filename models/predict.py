"""From a window's context to predicted frames: the one path training (models/losses.py)
and sampling (sample_video.py) share, so what is trained is what is scored.

The LSTM runs on the context's Z and then on its own predictions (LatentLSTM.unroll);
its outputs become frames either by moving the last context frame by the predicted flows
(a model with a flow head) or by decoding the predicted Z (optionally as a change from
the last context frame, Codec.skip_decode).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from models.flow import blend, block_motion, warp_rollout, with_prior


CONSTANT_VELOCITY_SHARE = 0.4  # the film's single flow prior, before it blended several


def constant_velocity_share(model):
    """The share of the context's motion a flow model's constant-velocity baseline moves on
    by: the model's own where its flow prior is one share, CONSTANT_VELOCITY_SHARE where it
    blends several, and all of the motion where it has none."""
    if len(model.flow_prior) == 1:
        return model.flow_prior[0]
    return CONSTANT_VELOCITY_SHARE if model.flow_prior else 1.0


def frames_from_outputs(model, codec, out, last, prev=None, z_last=None, steps=None):
    """The frames the LSTM's outputs ``out`` (dict of (B, S, ...), one step per predicted
    frame, the first after the context first) predict: float (B, S', C, H, W) on the
    model's device, not clipped (squared error trains through it).

    Args:
        last, prev: the last two context frames, float (B, C, H, W) in [0, 1]; ``prev`` is
            needed by a model with a flow prior (the motion from ``prev`` to ``last``).
        z_last: Z of ``last`` (B, z_dim): decode each prediction as ``last`` plus the change
            since it (see Codec.skip_decode); None decodes Z alone. Not for flow models.
        steps: indices of the steps to decode (B, S' frames); None = all. Flow models
            always move the frame through every step.
    """
    if model.flow:
        return moved_frames(last, step_flows(model, out, last, prev), out.get("blend"))
    z = out["z"] if steps is None else out["z"][:, steps]
    b, t = z.shape[:2]
    skip_from = None if z_last is None else (z_last.repeat_interleave(t, 0), last.repeat_interleave(t, 0))
    return codec.skip_decode(z.flatten(0, 1), skip_from).view(b, t, *last.shape[1:])


def step_flows(model, out, last, prev=None):
    """Each predicted step's flow in pixels on Z's grid, one (B, S, 2, h, w) per share of
    the model's flow prior (a list; one entry without a prior): the flow head's output plus
    that share of the motion from ``prev`` to ``last``."""
    if not model.flow_prior:
        return [out["flow"]]
    motion = model.context_motion(prev, last)
    return [with_prior(out["flow"], motion, share) for share in model.flow_prior]


def moved_frames(last, flows, logits=None):
    """``last`` (B, C, H, W) moved through each step by ``flows`` (a list of (B, S, 2, h, w),
    one per motion hypothesis), blended by ``logits`` (B, S, K, h, w) where there are
    several (models/flow.py, blend): (B, S, C, H, W)."""
    moved = [warp_rollout(last, f) for f in flows]
    return moved[0] if len(moved) == 1 else blend(moved, logits)


@torch.no_grad()
def predict_flows(model, codec, z_context, context_frames, horizon):
    """The flows a flow model predicts for ``horizon`` steps after a context (see
    predict_window for the arguments), on the CPU: a list with one (B, horizon, 2, h, w) per
    motion hypothesis, each step's move of the last context frame from the step before, in
    pixels of the model's frames; and the hypotheses' weights per cell (B, horizon, K, h,
    w), log-weights as the blend head gives them (None with one hypothesis)."""
    z, seen = z_context.to(codec.device), context_frames[:, -2:].to(codec.device)
    out = model.unroll(z, horizon)
    first = z.shape[1] - 1
    out = {k: v[:, first:] for k, v in out.items()}
    flows = step_flows(model, out, seen[:, -1], seen[:, 0] if seen.shape[1] > 1 else None)
    return [f.float().cpu() for f in flows], out["blend"].float().cpu() if "blend" in out else None


@torch.no_grad()
def predict_window(model, codec, z_context, context_frames, horizon, skip=False, temperature=0.0,
                   generator=None, batch_size=256):
    """Predict ``horizon`` frames after a context: Z of the context frames ``z_context``
    (B, K, z_dim) and the frames themselves, float (B, K, C, H, W) in [0, 1] (only the
    last two are used). Returns the predicted frames clipped to [0, 1], float
    (B, horizon, C, H, W) on the CPU; ``skip``: decoded from the last context frame.
    Works on ``batch_size`` windows at a time."""
    parts = []
    for s in range(0, len(z_context), batch_size):
        z = z_context[s:s + batch_size].to(codec.device)
        seen = context_frames[s:s + batch_size, -2:].to(codec.device)
        out = model.unroll(z, horizon, temperature, generator)
        first = z.shape[1] - 1
        predicted = frames_from_outputs(model, codec, {k: v[:, first:] for k, v in out.items()}, seen[:, -1],
                                        seen[:, 0] if seen.shape[1] > 1 else None,
                                        z_last=z[:, -1] if skip else None)
        parts.append(predicted.clamp_(0.0, 1.0).cpu())
    return torch.cat(parts)


def tile_starts(length, size):
    """Starts of ``size``-long tiles that cover ``length``, evenly spaced, overlapping by
    at least a quarter of a tile."""
    if length <= size:
        return [0]
    count = math.ceil((length - size) / (0.75 * size)) + 1
    return sorted({round(x) for x in np.linspace(0, length - size, count)})


@torch.no_grad()
def predict_full_size(model, codec, frames, horizon):
    """A flow model's prediction at the frames' own size, from context frames uint8
    (K, 3, H, W) of any size and aspect.

    The model sees the frames at its own scale (short side its frame size) in overlapping
    square tiles; each tile's flows (and, with several motion hypotheses, their weights)
    are upsampled, averaged where tiles overlap, scaled to the frames' own pixels and
    applied to the full-size last frame. Returns float (horizon, 3, H, W) in [0, 1] twice:
    the model's prediction, and constant velocity (the last frame moved on by
    constant_velocity_share(model) of the block-matched motion, on the same grid)."""
    size = codec.frame_shape[-1]
    full = torch.from_numpy(np.ascontiguousarray(frames)).float() / 255.0
    scale = min(full.shape[-2:]) / size
    h, w = (round(n / scale) for n in full.shape[-2:])
    small = F.interpolate(full, size=(h, w), mode="area")
    tiles = [(top, left) for top in tile_starts(h, size) for left in tile_starts(w, size)]
    batch = torch.stack([small[:, :, t:t + size, l:l + size] for t, l in tiles]).mul(255).round().to(torch.uint8)
    z, _ = codec.encode(batch)
    flows, logits = predict_flows(model, codec, z, batch[:, -2:].float() / 255.0, horizon)

    def stitched(per_tile):
        """(tiles, T, C, g, g) -> (1, T, C, h, w): upsampled per tile, averaged where tiles overlap."""
        total, count = torch.zeros((horizon, per_tile.shape[2], h, w)), torch.zeros(1, 1, h, w)
        for (t, l), f in zip(tiles, per_tile):
            total[..., t:t + size, l:l + size] += F.interpolate(f, size=(size, size), mode="bilinear",
                                                                align_corners=False)
            count[..., t:t + size, l:l + size] += 1
        return (total / count)[None]

    last = full[-1:]
    predicted = moved_frames(last, [stitched(f) * scale for f in flows],
                             None if logits is None else stitched(logits))[0].clamp_(0.0, 1.0)
    cell = size // flows[0].shape[-1]
    motion = block_motion(small[-2:-1], small[-1:], grid=(h // cell, w // cell), subpixel=True) * scale
    still = motion.new_zeros((1, horizon) + motion.shape[1:])
    steady = warp_rollout(last, with_prior(still, motion, constant_velocity_share(model)))[0].clamp_(0.0, 1.0)
    return predicted, steady
