"""The LSTM's training objectives: how a predicted Z is scored against the encoder's, and
the loss of a whole window (Z, and predicted frames in pixels by squared error, which is
what sample_video.py scores).
"""
import math

import torch

from models.predict import frames_from_outputs


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


def sequence_loss(model, batch, *, loss, context, rollout, pixel_frames, codec, frames, skip=False,
                  truth_share=0.0):
    """Loss of predicting Z[t+1] for every t of a window, as train_lstm.py trains it.

    Args:
        batch: (mean, logvar) of Z, each (B, T, z_dim), and the window's frame indices (B, T).
        loss: how predictions are scored on Z: mse, kl or mdn (see prediction_loss).
        context: true frames fed before the LSTM runs on its own predictions (``rollout``;
            without it, teacher forcing throughout).
        pixel_frames: > 0 scores the predictions of frames context+1..T in pixels (see
            frames_from_outputs; ``pixel_frames`` of them picked at random per batch while
            training, all of them when evaluating) and the earlier ones on Z; 0 scores all
            of them on Z.
        codec: decodes Z to frames; frames: uint8 (F, C, H, W), indexed by the window.
        skip: decode from the last context frame (see Codec.skip_decode).
        truth_share: while training with ``rollout``, the chance that a step after the
            context is fed the true Z instead of the prediction (scheduled sampling, see
            LatentLSTM.unroll).
    A model with a flow head is scored on Z at every step plus, in pixels, on every frame
    after the context: the last context frame moved by the predicted flows.
    Pixels are scored by squared error summed over each frame's pixels in [0, 1], mean
    over frames.
    """
    mean, logvar, index = batch
    first = context - 1  # out[:, first] predicts the first frame after the context
    known = context if rollout else mean.shape[1] - 1
    out = model.unroll(mean[:, :known], mean.shape[1] - known, truth=mean[:, known:],
                       truth_share=truth_share if model.training else 0.0)
    if not (model.flow or pixel_frames):
        return prediction_loss(out, mean[:, 1:], logvar[:, 1:], loss)

    def frame(t):
        return frames[index[:, t].cpu()].to(mean.device).float() / 255.0
    last = frame(first)
    prev = frame(first - 1) if model.flow_prior else None
    if model.flow:
        steps, total = None, prediction_loss(out, mean[:, 1:], logvar[:, 1:], loss)
    else:
        total = prediction_loss({k: v[:, :first] for k, v in out.items()}, mean[:, 1:first + 1],
                                logvar[:, 1:first + 1], loss) if first else 0.0
        n = out["mean"].shape[1] - first
        steps = torch.randperm(n)[:pixel_frames] if model.training else torch.arange(n)
        steps = steps.to(mean.device)
    predicted = frames_from_outputs(model, codec, {k: v[:, first:] for k, v in out.items()}, last, prev,
                                    z_last=mean[:, first] if skip else None, steps=steps)
    taken = index[:, first + 1:] if steps is None else index[:, steps + first + 1]
    target = frames[taken.flatten().cpu()].to(mean.device).float().div_(255.0)
    return total + (predicted - target.view_as(predicted)).pow(2).flatten(2).sum(-1).mean()
