"""From a window's context to predicted frames: the one path training (models/losses.py)
and sampling (sample_video.py) share, so what is trained is what is scored.

The LSTM runs on the context's Z and then on its own predictions (LatentLSTM.unroll);
its outputs become frames either by moving the last context frame by the predicted flows
(a model with a flow head) or by decoding the predicted Z (optionally as a change from
the last context frame, Codec.skip_decode).
"""
import torch

from models.flow import warp_rollout, with_prior


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
        motion = model.context_motion(prev, last) if model.flow_prior else None
        flows = with_prior(out["flow"], motion, model.flow_prior) if model.flow_prior else out["flow"]
        return warp_rollout(last, flows)
    z = out["z"] if steps is None else out["z"][:, steps]
    b, t = z.shape[:2]
    skip_from = None if z_last is None else (z_last.repeat_interleave(t, 0), last.repeat_interleave(t, 0))
    return codec.skip_decode(z.flatten(0, 1), skip_from).view(b, t, *last.shape[1:])


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
