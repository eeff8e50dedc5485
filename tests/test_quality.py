"""Evaluation metrics, baselines, the metrics report, and the LSTM's training modes and MDN head."""
import json
import math

import numpy as np
import torch

import sample_video
from models.losses import mdn_nll, prediction_loss
from models.lstm import LatentLSTM, mdn_sample
from models.vcae import bernoulli_elbo_loss, kl_weight
from tests.conftest import argv
from utils.metrics import StepAverages, frame_scores, plain_convolutions
from utils.batches import Batches
from utils.training import lr_factor


def test_identical_frames_score_perfectly():
    x = torch.rand(3, 4, 1, 32, 32)
    s = frame_scores(x, x.clone())
    assert torch.all(s["mse"] == 0) and torch.all(s["mae"] == 0)
    assert torch.allclose(s["ssim"], torch.ones(3, 4, dtype=torch.float64), atol=1e-6)
    assert torch.all(s["psnr"] >= 99)


def test_ssim_on_plain_convolutions_equals_onednn_and_restores_the_setting():
    from pytorch_msssim import ssim
    torch.manual_seed(0)
    x = torch.rand(6, 1, 64, 64)
    y = (x + torch.rand_like(x)).clamp(0, 1)
    onednn = ssim(x, y, data_range=1.0, size_average=False)
    scored = frame_scores(y.view(2, 3, 1, 64, 64), x.view(2, 3, 1, 64, 64))["ssim"].flatten().float()
    assert torch.allclose(scored, onednn, atol=1e-5) and onednn.min() < 0.9
    before = torch.backends.mkldnn.enabled
    try:
        with plain_convolutions():
            assert not torch.backends.mkldnn.enabled
            raise KeyError("inside")
    except KeyError:
        pass
    assert torch.backends.mkldnn.enabled == before


def test_known_difference_gives_known_mse_mae_psnr():
    truth = torch.zeros(2, 1, 1, 64, 64)
    prediction = torch.full_like(truth, 0.1)
    s = frame_scores(prediction, truth)
    assert torch.allclose(s["mse"], torch.full((2, 1), 64 * 64 * 0.01, dtype=torch.float64))
    assert torch.allclose(s["mae"], torch.full((2, 1), 64 * 64 * 0.1, dtype=torch.float64))
    assert torch.allclose(s["psnr"], torch.full((2, 1), 20.0, dtype=torch.float64))  # 10 log10(1 / 0.01)
    half = truth.clone()
    half[..., :32] = 1.0  # half the pixels wrong by 1
    assert float(frame_scores(half, truth)["mse"][0, 0]) == 64 * 32


def test_step_averages_average_over_sequences_per_step():
    acc = StepAverages()
    truth = torch.zeros(4, 3, 1, 16, 16)
    pred = truth.clone()
    pred[:, 2] = 0.5  # only the third step is wrong
    acc.add(pred[:2], truth[:2])
    acc.add(pred[2:], truth[2:])
    r = acc.result()
    assert r["mse"] == [0.0, 0.0, 16 * 16 * 0.25] and len(r["ssim"]) == 3


def test_mdn_loss_finite_on_extreme_inputs():
    model = LatentLSTM(z_dim=4, hidden=8, layers=1, output="mdn", components=3)
    out, _ = model(torch.randn(2, 5, 4) * 1e4)
    assert all(torch.isfinite(v).all() for v in out.values())
    loss = mdn_nll(out, torch.randn(2, 5, 4) * 1e4)
    assert torch.isfinite(loss)
    extreme = {"logits": torch.tensor([[[[1e4, -1e4, 0.0]]]]), "means": torch.zeros(1, 1, 1, 3),
               "log_sigmas": torch.full((1, 1, 1, 3), -7.0)}
    assert torch.isfinite(mdn_nll(extreme, torch.full((1, 1, 1), 1e3)))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_mdn_sampling_near_zero_temperature_returns_the_likely_components_mean():
    out = {"logits": torch.tensor([[[[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]]]]),
           "means": torch.tensor([[[[-1.0, 5.0, 9.0], [7.0, -3.0, 2.0]]]]),
           "log_sigmas": torch.zeros(1, 1, 2, 3)}
    sample = mdn_sample(out, 1e-6, torch.Generator().manual_seed(0))
    assert torch.allclose(sample, torch.tensor([[[5.0, 7.0]]]), atol=1e-2)
    hot = torch.stack([mdn_sample(out, 1.0, torch.Generator().manual_seed(i)) for i in range(200)])
    assert hot[..., 0].std() > 0.5  # at temperature 1 it does sample


def test_mdn_likelihood_matches_a_single_gaussian():
    out = {"logits": torch.zeros(1, 1, 1, 1), "means": torch.zeros(1, 1, 1, 1),
           "log_sigmas": torch.zeros(1, 1, 1, 1)}
    assert math.isclose(float(mdn_nll(out, torch.ones(1, 1, 1))), 0.5 + 0.5 * math.log(2 * math.pi), rel_tol=1e-6)


def test_unroll_feeds_back_its_own_predictions():
    torch.manual_seed(0)
    model = LatentLSTM(z_dim=3, hidden=8, layers=1, dropout=0.0).eval()
    z = torch.randn(2, 6, 3)
    forced = model.unroll(z[:, :5], 1)["mean"]  # teacher forcing: predictions of frames 2..6
    rolled = model.unroll(z[:, :2], 4)
    assert forced.shape == rolled["mean"].shape == rolled["z"].shape == (2, 5, 3)
    assert torch.allclose(forced[:, :2], rolled["mean"][:, :2])  # same while fed the truth
    assert not torch.allclose(forced[:, 2:], rolled["mean"][:, 2:])
    # each step after the context is the model run on its own previous prediction
    out, state = model(z[:, :2])
    for t in range(2, 5):
        out, state = model(out["mean"][:, -1:], state)
        assert torch.allclose(out["mean"][:, 0], rolled["mean"][:, t], atol=1e-6)
    target = torch.randn(2, 5, 3)
    assert prediction_loss({"mean": target}, target, None, "mse") == 0


def test_scheduled_sampling_feeds_each_window_the_true_z_at_its_share():
    torch.manual_seed(0)
    model = LatentLSTM(z_dim=3, hidden=8, layers=1, dropout=0.0).eval()
    z = torch.randn(64, 6, 3)
    forced = model.unroll(z[:, :5], 1)["mean"]  # teacher forcing: predictions of frames 2..6
    rolled = model.unroll(z[:, :2], 4)["mean"]
    assert torch.allclose(model.unroll(z[:, :2], 4, truth=z[:, 2:], truth_share=1.0)["mean"], forced, atol=1e-6)
    assert torch.equal(model.unroll(z[:, :2], 4, truth=z[:, 2:], truth_share=0.0)["mean"], rolled)
    # at one half, the step after the first fed one is, per window, either of the two
    mixed = model.unroll(z[:, :2], 4, truth=z[:, 2:], truth_share=0.5)["mean"][:, 2]
    as_forced = (mixed - forced[:, 2]).abs().amax(-1) < 1e-6
    as_rolled = (mixed - rolled[:, 2]).abs().amax(-1) < 1e-6
    assert torch.all(as_forced ^ as_rolled) and 16 < int(as_forced.sum()) < 48


def test_metrics_report_has_the_model_and_the_baselines(tiny, tmp_path):
    sample_video.main(argv(lstm_checkpoint=tiny["lstm"], out_dir=tmp_path, n_sequences=1, context=3,
                           horizon=5, n_eval=6, eval_batch=4))
    report = json.load(open(tmp_path / "metrics.json"))
    assert (report["context"], report["horizon"], report["n_sequences"]) == (3, 5, 6)
    assert set(report["baselines"]) == {"copy_last", "mean_frame", "last_reconstruction", "autoencoder"}
    base = report["baselines"]
    assert base["last_reconstruction"]["mse"][0] > base["copy_last"]["mse"][0]  # through the codec
    for scores in [report["model"], *report["baselines"].values()]:
        assert set(scores) == {"mse", "mae", "psnr", "ssim"}
        assert all(len(v) == 5 and all(np.isfinite(v)) for v in scores.values())
    mean_frame = report["baselines"]["mean_frame"]["mse"]
    assert max(mean_frame) - min(mean_frame) < 0.5 * max(mean_frame) + 1  # it does not move
    rows = open(tmp_path / "metrics.csv").read().splitlines()
    assert rows[0] == "method,step,mse,mae,psnr,ssim" and len(rows) == 1 + 5 * 5
    assert (tmp_path / "metrics.png").stat().st_size > 1000


def test_kl_warmup_and_lr_schedule_follow_the_step():
    batches = Batches([torch.zeros(100, 1)], 10, "cpu")  # 10 batches an epoch
    weights = []
    for epoch in range(3):
        batches.epoch = epoch
        weights += [kl_weight(batches.step, len(batches), 2.0) for _ in batches]
    assert weights[0] == 0.0 and weights[10] == 0.5 and weights[19] == 0.95 and weights[20:] == [1.0] * 10
    assert kl_weight(5, 10, 0.0) == 1.0
    x = torch.rand(4, 1, 8, 8)
    logits, mean, logvar = torch.randn(1, 4, 1, 8, 8), torch.randn(4, 3), torch.randn(4, 3)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[0], x, reduction="sum") / 4
    assert torch.isclose(bernoulli_elbo_loss(logits, x, mean, logvar, 0.0), bce)
    assert bernoulli_elbo_loss(logits, x, mean, logvar) > bce  # KL > 0 for these means
    factors = [lr_factor(s, 100, "cosine") for s in range(101)]
    assert factors[0] == 0.04 and factors[10] == 1.0 and abs(factors[55] - 0.5) < 1e-9
    assert factors[100] == 0.0 and all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert lr_factor(37, 100, "constant") == 1.0


def test_conv_lstm_follows_a_shifted_input_with_shifted_predictions():
    """Convolutions share weights across places: away from the border (whose influence
    grows one cell per step), shifting the Z map by one cell shifts the prediction."""
    torch.manual_seed(0)
    model = LatentLSTM(z_dim=2 * 20 * 20, hidden=4, layers=1, dropout=0.0, latent_shape=(2, 20, 20)).eval()
    z = torch.zeros(1, 3, 2, 20, 20)
    z[..., 9:11, 9:11] = torch.randn(1, 3, 2, 2, 2)
    shifted = torch.roll(z, 1, dims=-1)
    with torch.no_grad():
        a = model.unroll(z.flatten(2), 2)["z"][:, -2:].view(1, 2, 2, 20, 20)
        b = model.unroll(shifted.flatten(2), 2)["z"][:, -2:].view(1, 2, 2, 20, 20)
    assert torch.allclose(torch.roll(a, 1, dims=-1)[..., 7:13, 7:13], b[..., 7:13, 7:13], atol=1e-6)
    assert not torch.allclose(a[..., 7:13, 7:13], b[..., 7:13, 7:13], atol=1e-3)


def test_st_cell_hands_its_memory_up_the_layers_and_on_to_the_next_step():
    from models.lstm import STLSTM
    torch.manual_seed(0)
    model = LatentLSTM(z_dim=2 * 6 * 6, hidden=4, layers=2, dropout=0.0, diffs=True, latent_shape=(2, 6, 6),
                       cell="st").eval()
    assert isinstance(model.lstm, STLSTM) and model.args["cell"] == "st"
    z = torch.randn(3, 5, 72)
    with torch.no_grad():
        rolled = model.unroll(z[:, :2], 4)
        # step by step by hand: the memory leaves the top layer and enters the bottom one
        h, c, m = (s.clone() for s in model.initial_state(3))
        x, outs = z[:, 0], []
        for t in range(5):
            inp = x.view(3, 2, 6, 6)
            for i, cell in enumerate(model.lstm.cells):
                h[i], c[i], m[0] = cell(inp, h[i], c[i], m[0])
                inp = h[i]
            out = model._head(inp.unsqueeze(1))[:, 0] + x  # diffs: the change of Z
            outs.append(out)
            x = z[:, t + 1] if t + 1 < 2 else out
    assert torch.allclose(torch.stack(outs, 1), rolled["mean"], atol=1e-5)
    # the memory matters: cutting its path from the top layer to the next step changes the prediction
    with torch.no_grad():
        _, state = model.lstm(z[:, :1], model.initial_state(3))
        kept, _ = model.lstm(z[:, 1:2], state)
        cut, _ = model.lstm(z[:, 1:2], (state[0], state[1], torch.zeros_like(state[2])))
    assert not torch.allclose(kept, cut)


def test_st_cell_learns_a_one_cell_shift_better_than_the_mean():
    torch.manual_seed(0)
    z = torch.zeros(16, 6, 1, 8, 8)
    z[:, 0] = torch.randn(16, 1, 8, 8)
    for t in range(1, 6):
        z[:, t] = torch.roll(z[:, t - 1], 1, dims=-1)  # everything moves one cell right a step
    z = z.flatten(2)
    model = LatentLSTM(z_dim=64, hidden=8, layers=2, dropout=0.0, latent_shape=(1, 8, 8), cell="st")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = (model.unroll(z[:, :3], 3)["mean"] - z[:, 1:]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = model.eval().unroll(z[:, :3], 3)["mean"][:, 2:]
    error = (predicted - z[:, 3:]).pow(2).mean()
    mean_frame = (z[:, 3:] - z[:, 3:].mean(0, keepdim=True)).pow(2).mean()
    assert error < 0.5 * mean_frame, (float(error), float(mean_frame))
