"""The Moving MNIST stages end to end on tiny settings: what each one writes."""
import csv
import json
import math
import os
import re

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import sample_video
import train_lstm
import train_vcae
from data.h5 import read_frames
from data.sequences import new_mnist_sequences
from models import load_model
from models.codec import load_mnist_codec
from models.losses import prediction_loss, sequence_loss
from models.lstm import LatentLSTM
from tests.conftest import TINY_LSTM, TINY_VAE, argv, run_script
from utils.errors import UserError
from utils import runtime, training
from utils.runtime import atomic_path, autocast, pick_device, pick_precision

CHECKPOINT_KEYS = {"model_kind", "model_args", "model_state", "optimizer_state", "epoch",
                   "history", "best_val_loss", "settings"}


def frames(tiny, n=4):
    return torch.from_numpy(read_frames(tiny["data"], "test", "x")[:1, :n, ]).flatten(0, 1).float() / 255


def test_vae_checkpoint_describes_itself_and_reloads_identically(tiny):
    ckpt = torch.load(tiny["vae"], weights_only=True)
    assert CHECKPOINT_KEYS <= set(ckpt) and ckpt["model_kind"] == "ConvVAE"
    assert ckpt["model_args"]["latent_channels"] == 2 and ckpt["epoch"] == 1
    assert ckpt["settings"]["base_width"] == 4 and len(ckpt["history"]["val_loss"]) == 1
    trained, reloaded = tiny["vae_model"].eval(), load_model(ckpt)
    x = frames(tiny)
    with torch.no_grad():
        for a, b in zip(trained.encode(x), reloaded.encode(x)):
            assert torch.equal(a, b)
        assert trained.z_dim == 2 * 8 * 8 and trained.latent_shape == (2, 8, 8)  # 64 px / 2**3
        assert torch.equal(trained.decode(torch.ones(2, 128)), reloaded.decode(torch.ones(2, 128)))


def test_vae_writes_grid_and_loss_history(tiny):
    grid = Image.open(os.path.join(tiny["out"], "mm_vcae_reconstructions.png"))
    assert grid.size == (10 * 66 - 2, 2 * 66 - 2)  # originals on top, reconstructions below
    rows = list(csv.reader(open(os.path.join(tiny["out"], "vae_loss.csv"))))
    assert rows[0] == ["epoch", "train_loss", "val_loss", "seconds", "train_seconds", "lr"] and len(rows) == 2
    assert 100 < float(rows[1][2]) < 64 * 64  # nats per frame (summed over pixels), finite
    assert Image.open(os.path.join(tiny["out"], "vae_loss.png")).size[0] > 100


def test_lstm_checkpoint_records_its_vae_and_reloads_identically(tiny):
    ckpt = torch.load(tiny["lstm"], weights_only=True)
    assert CHECKPOINT_KEYS <= set(ckpt) and ckpt["model_kind"] == "LatentLSTM"
    assert ckpt["vae_checkpoint"] == tiny["vae"] and ckpt["data_path"] == tiny["data"]
    assert ckpt["model_args"] == dict(z_dim=128, hidden=8, layers=1, dropout=0.0, output="mean",
                                      components=5, diffs=True, latent_shape=[2, 8, 8], flow=False,
                                      flow_prior=[0.0], cell="st", decoder=tiny["vae_model"].args)
    assert ckpt["settings"]["rollout"] is True and ckpt["settings"]["train_context"] == 4
    assert ckpt["settings"]["cell"] == "st" and ckpt["settings"]["pixel_frames"] == 4
    z = torch.randn(3, 5, 128)
    reloaded = load_model(ckpt)
    assert torch.equal(tiny["lstm_model"].eval().unroll(z, 4)["z"], reloaded.unroll(z, 4)["z"])
    # its own copy of the VAE's decoder, trained on from the VAE's: reloaded as trained
    with torch.no_grad():
        tuned = reloaded.decoder.decode(z[0])
        assert torch.equal(tuned, tiny["lstm_model"].decoder.decode(z[0]))
        assert not torch.allclose(tuned, tiny["vae_model"].eval().decode(z[0]), atol=1e-3)


@pytest.mark.parametrize("options", [dict(loss="kl"), dict(loss="mdn", components=3), dict(diffs=False),
                                     dict(seq_len=4), dict(rollout=False), dict(pixel_frames=0),
                                     dict(cell="dense", hidden=16)])
def test_lstm_options_train(tiny, tmp_path, options):
    path = tmp_path / "lstm.pt"
    model = train_lstm.main(argv(data_path=tiny["data"], vae_checkpoint=tiny["vae"], checkpoint=path,
                                 out_dir=tmp_path, **{**TINY_LSTM, "train_context": 3, **options}))
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["settings"]["loss"] == options.get("loss", "mse")
    assert model.args["output"] == {"mse": "mean", "kl": "gaussian", "mdn": "mdn"}[options.get("loss", "mse")]
    assert model.args["diffs"] == options.get("diffs", True)
    assert all(math.isfinite(v) for v in ckpt["history"]["train_loss"])
    sample_video.main(argv(lstm_checkpoint=path, out_dir=tmp_path, n_sequences=1, context=3, horizon=4,
                           n_eval=4, temperature=0.5))
    assert (tmp_path / "mm_sample_000.gif").exists() and (tmp_path / "metrics.json").exists()


def test_weight_decay_reaches_adamw_and_zero_is_plain_adam(tiny, tmp_path):
    from data.branches import BRANCHES
    def train(name, **options):
        return train_lstm.main(argv(data_path=tiny["data"], vae_checkpoint=tiny["vae"],
                                    checkpoint=tmp_path / f"{name}.pt", out_dir=tmp_path,
                                    **{**TINY_LSTM, **options}))
    record = BRANCHES["mnist"].weight_decay
    assert record > 0  # the branch's default decays
    default, tenth = train("default"), train("tenth", weight_decay=record)
    plain, decayed = train("plain", weight_decay=0.0), train("decayed", weight_decay=20.0)
    saved = lambda name: torch.load(tmp_path / f"{name}.pt", weights_only=True)
    assert saved("default")["settings"]["weight_decay"] == record
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), tenth.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), plain.state_dict().values()))
    norm = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()]).norm()
    assert norm(decayed) < 0.9 * norm(plain)
    # the optimizer's saved state holds the decay it trained with; 0 is plain Adam, no decay
    plain_group = saved("plain")["optimizer_state"]["param_groups"][0]
    assert plain_group["weight_decay"] == 0 and not plain_group.get("decoupled_weight_decay", False)
    assert saved("decayed")["optimizer_state"]["param_groups"][0]["weight_decay"] == 20.0


def test_bfloat16_precision_runs_the_model_in_bfloat16_and_trains_like_float32(tiny, tmp_path):
    conv = torch.nn.Conv2d(1, 2, 3)
    with autocast(conv, "bfloat16"):
        assert conv(torch.ones(1, 1, 5, 5)).dtype == torch.bfloat16
    with autocast(conv, "float32"):
        assert conv(torch.ones(1, 1, 5, 5)).dtype == torch.float32
    with autocast(torch.device("cpu"), "bfloat16"):  # a device, as the LSTM stage's encoding passes
        assert conv(torch.ones(1, 1, 5, 5)).dtype == torch.bfloat16
    losses = {}
    for precision in ("float32", "bfloat16"):
        path = tmp_path / f"{precision}.pt"
        train_lstm.main(argv(data_path=tiny["data"], vae_checkpoint=tiny["vae"], checkpoint=path,
                             out_dir=tmp_path, precision=precision, **TINY_LSTM))
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["settings"]["precision"] == precision
        losses[precision] = ckpt["history"]["train_loss"][0], ckpt["history"]["val_loss"][0]
    for a, b in zip(losses["float32"], losses["bfloat16"]):
        assert a != b and abs(a - b) < 0.02 * a  # rounded differently, trained the same
    with pytest.raises(UserError, match="precision"):
        train_vcae.main(argv(data_path=tiny["data"], precision="float16"))


def test_precision_auto_picks_bfloat16_only_where_the_hardware_runs_it_natively(tiny, tmp_path,
                                                                              monkeypatch, capsys):
    cpu = torch.device("cpu")
    for flags, expected in (({"avx512f", "avx512_bf16"}, "bfloat16"), ({"amx_bf16"}, "bfloat16"),
                            ({"avx512f", "avx512bw", "avx2"}, "float32"), (set(), "float32")):
        monkeypatch.setattr(runtime, "cpu_flags", lambda flags=flags: flags)
        assert pick_precision("auto", cpu) == expected
        assert f"precision: {expected} (auto: " in capsys.readouterr().out
        # a precision named outright is used as given, whatever the CPU
        assert pick_precision("float32", cpu) == "float32" and pick_precision("bfloat16", cpu) == "bfloat16"
    for capability, expected in (((8, 0), "bfloat16"), ((9, 0), "bfloat16"), ((7, 5), "float32")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert pick_precision("auto", torch.device("cuda")) == expected
    assert pick_precision("auto", torch.device("mps")) == "float32"  # not measured there
    # the stage trains in what auto picked and records it beside the setting
    for flags, expected in (({"avx512_bf16"}, "bfloat16"), ({"avx2"}, "float32")):
        monkeypatch.setattr(runtime, "cpu_flags", lambda flags=flags: flags)
        path = tmp_path / f"{expected}.pt"
        train_vcae.main(argv(data_path=tiny["data"], checkpoint=path, out_dir=tmp_path, device="cpu",
                             **TINY_VAE))
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["settings"]["precision"] == "auto" and ckpt["precision"] == expected
    losses = [torch.load(tmp_path / f"{p}.pt", weights_only=True)["history"]["train_loss"][0]
              for p in ("bfloat16", "float32")]
    assert losses[0] != losses[1]  # bfloat16 really ran


@pytest.mark.parametrize("cell", ["conv", "st"])
def test_an_interrupted_run_resumed_by_the_same_command_continues_its_schedule(tiny, tmp_path, monkeypatch,
                                                                              cell):
    common = dict(data_path=tiny["data"], vae_checkpoint=tiny["vae"], out_dir=tmp_path,
                  **{**TINY_LSTM, "epochs": 3, "cell": cell, "layers": 2})
    train_lstm.main(argv(checkpoint=tmp_path / "straight.pt", **common))
    real_save = training.save_checkpoint

    def save_then_stop(path, state):  # Ctrl-C right after the first epoch's checkpoint
        real_save(path, state)
        raise KeyboardInterrupt
    monkeypatch.setattr(training, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_lstm.main(argv(checkpoint=tmp_path / "parts.pt", **common))
    monkeypatch.undo()
    assert torch.load(tmp_path / "parts.pt", weights_only=True)["epoch"] == 1
    train_lstm.main(argv(checkpoint=tmp_path / "parts.pt", resume=True, **common))
    straight, parts = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("straight", "parts"))
    lrs = straight["history"]["lr"]
    assert len(lrs) == 3 and lrs[0] > lrs[1] > lrs[2] > 0  # the cosine, not restarted on resume
    assert parts["history"]["lr"] == lrs
    assert parts["optimizer_state"]["param_groups"][0]["lr"] == straight["optimizer_state"]["param_groups"][0]["lr"]
    assert all(torch.equal(straight["model_state"][k], parts["model_state"][k]) for k in straight["model_state"])


def test_stored_sequences_are_encoded_once_for_every_epoch(tiny, tmp_path, monkeypatch):
    from models.codec import Codec
    calls, real = [], Codec.encode
    monkeypatch.setattr(Codec, "encode", lambda self, x, desc=None: calls.append(x.shape[1]) or real(self, x, desc))
    train_lstm.main(argv(data_path=tiny["data"], vae_checkpoint=tiny["vae"], checkpoint=tmp_path / "l.pt",
                         out_dir=tmp_path, max_frames=10, **{**TINY_LSTM, "epochs": 3}))
    assert calls == [8 * 8, 24 * 8]  # the test split, then the training split once (max_frames is the film's)


def test_resume_continues_from_the_last_checkpoint(tiny, tmp_path):
    common = dict(data_path=tiny["data"], out_dir=tmp_path, checkpoint=tmp_path / "v.pt", **TINY_VAE)
    train_vcae.main(argv(**common))
    first = torch.load(tmp_path / "v.pt", weights_only=True)
    train_vcae.main(argv(**{**common, "epochs": 2, "resume": True}))
    resumed = torch.load(tmp_path / "v.pt", weights_only=True)
    assert resumed["epoch"] == 2 and len(resumed["history"]["train_loss"]) == 2
    assert resumed["history"]["train_loss"][0] == first["history"]["train_loss"][0]
    # the stage's time adds the first run's to the resumed run's (its epoch at least)
    assert first["stage_seconds"] >= first["history"]["seconds"][0] > 0
    assert resumed["stage_seconds"] >= first["stage_seconds"] + resumed["history"]["seconds"][1]
    with pytest.raises(UserError, match="cannot resume from .*use the same settings"):
        train_vcae.main(argv(**{**common, "epochs": 3, "resume": True, "latent_channels": 3}))


def test_sample_video_writes_gifs_and_strips(tiny, tmp_path):
    sample_video.main(argv(lstm_checkpoint=tiny["lstm"], out_dir=tmp_path, n_sequences=3,
                           context=3, horizon=5, n_eval=0))
    gifs = sorted(p.name for p in tmp_path.glob("*.gif"))
    assert gifs == ["mm_sample_000.gif", "mm_sample_001.gif", "mm_sample_002.gif"]
    gif = Image.open(tmp_path / "mm_sample_001.gif")
    assert gif.n_frames == 8  # 3 context + 5 generated
    assert gif.size == (3 * 128 + 2 * 6, 128 + 14)  # truth | prediction | copy last, 2x, label row
    gif.seek(2)
    last_context = np.asarray(gif.convert("RGB"))
    context_border = tuple(last_context[14, 0])
    gif.seek(7)
    final = np.asarray(gif.convert("RGB"))
    assert context_border[1] > 150 and final[14, 0, 0] > 150  # green, then red
    inner = (slice(14 + 8, 14 + 120), slice(8, 120))  # inside the borders
    copy_column = (inner[0], slice(2 * (128 + 6) + 8, 2 * (128 + 6) + 120))
    assert np.array_equal(final[copy_column], last_context[inner])  # copy last = the last real frame
    assert Image.open(tmp_path / "mm_sample_002.png").size == (8 * 66 - 2, 2 * 66 - 2)
    with pytest.raises(UserError, match="no test window of 9 frames 1 apart"):
        sample_video.main(argv(lstm_checkpoint=tiny["lstm"], out_dir=tmp_path, context=4, horizon=5))


def test_sample_video_scores_the_training_windows_beside_the_test_ones(tiny, tmp_path):
    """--split=train scores the LSTM on windows it trained on, into files of their own."""
    common = dict(lstm_checkpoint=tiny["lstm"], out_dir=tmp_path, n_sequences=2, context=3, horizon=5)
    sample_video.main(argv(**common, n_eval=8))
    sample_video.main(argv(**common, n_eval=20, split="train"))
    test, train = (json.load(open(tmp_path / name)) for name in ("metrics.json", "metrics_train.json"))
    assert (test["split"], test["n_sequences"]) == ("test", 8)  # the tiny test split holds 8
    assert (train["split"], train["n_sequences"]) == ("train", 20)
    assert train["model"]["mse"] != test["model"]["mse"]
    # what made the scored model, upstream first, with each stage's wall time
    stages = test["stages"]
    assert [st["stage"] for st in stages] == ["train_vcae.py", "train_lstm.py", "sample_video.py"]
    assert [st.get("checkpoint") for st in stages[:2]] == [str(tiny["vae"]), str(tiny["lstm"])]
    lstm = torch.load(tiny["lstm"], weights_only=True)
    assert stages[1]["seconds"] == lstm["stage_seconds"] and stages[1]["epochs"] == lstm["epoch"]
    assert all(st["seconds"] > 0 for st in stages)
    assert sorted(p.name for p in tmp_path.glob("mm_sample_train_*.gif")) == [
        "mm_sample_train_000.gif", "mm_sample_train_001.gif"]
    assert (tmp_path / "mm_sample_000.gif").exists()  # the test split's GIFs are still there
    # the copy-last baseline is scored on the training sequences' own frames
    with h5py.File(tiny["data"]) as f:
        frames = f["train/frames"][:20].astype(np.float64) / 255
    copy_last = ((frames[:, 3:8] - frames[:, 2:3]) ** 2).reshape(20, 5, -1).sum(-1).mean(0)
    assert np.allclose(train["baselines"]["copy_last"]["mse"], copy_last, rtol=1e-4)
    with pytest.raises(UserError, match="--split"):
        sample_video.main(argv(**common, split="validation"))


def test_dense_vae_gets_a_dense_lstm_and_refuses_a_conv_one(tiny, tmp_path):
    vae = tmp_path / "dense.pt"
    train_vcae.main(argv(data_path=tiny["data"], checkpoint=vae, out_dir=tmp_path,
                         **{**TINY_VAE, "latent_channels": 0, "z_dim": 8, "n_down": 4}))
    assert load_model(torch.load(vae, weights_only=True)).latent_shape is None
    common = dict(data_path=tiny["data"], vae_checkpoint=vae, out_dir=tmp_path, **TINY_LSTM)
    model = train_lstm.main(argv(checkpoint=tmp_path / "l.pt", cell="dense", layers=2, dropout=0.3, **common))
    assert model.args["latent_shape"] is None and model.args["z_dim"] == 8
    assert isinstance(model.lstm, torch.nn.LSTM) and model.lstm.num_layers == 2 and model.lstm.dropout == 0.3
    with pytest.raises(UserError, match="--cell=st needs a spatial Z.*use --cell=dense"):
        train_lstm.main(argv(checkpoint=tmp_path / "c.pt", **common))
    assert not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize("tuned", [False, True])
def test_pixel_loss_trains_the_lstm_and_leaves_the_vae_alone(tiny, tuned):
    codec = load_mnist_codec(tiny["vae"], "cpu")
    before = [p.clone() for p in codec.vae.parameters()]
    model = LatentLSTM(z_dim=codec.z_dim, hidden=4, layers=1, latent_shape=codec.latent_shape, diffs=True,
                       decoder=codec.vae.args if tuned else None)
    if tuned:  # the model's copy of the decoder decodes, and trains with it
        model.start_decoder(codec.vae)
        codec.use_decoder(model.decoder)
        z = torch.randn(3, codec.z_dim)
        assert torch.equal(model.decoder.decode(z), codec.vae.decode(z))
    window = torch.from_numpy(read_frames(tiny["data"], "train", "x")[:2])  # (2, 8, 1, 64, 64)
    mean, logvar = codec.encode(window)
    options = dict(rollout=True, context=4, pixel_frames=2, loss="mse", codec=codec)
    index = torch.arange(16).view(2, 8)
    loss = sequence_loss(model.train(), (mean, logvar, index), frames=window.flatten(0, 1), **options)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(not p.requires_grad and p.grad is None for p in codec.vae.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, codec.vae.parameters()))
    # evaluating scores every predicted frame, so the loss is the same each time
    model.eval()
    with torch.no_grad():
        scores = [sequence_loss(model, (mean, logvar, index), frames=window.flatten(0, 1), **options)
                  for _ in range(2)]
    assert scores[0] == scores[1] and scores[0] > 0


class Oracle(LatentLSTM):
    """An LSTM that 'predicts' the Z of frame t + 1 + shift from the window it was handed:
    shift 0 is the true next Z, shift -1 repeats the current one (an off-by-one)."""

    def __init__(self, truth, shift, **kwargs):
        super().__init__(**kwargs)
        self.truth, self.shift = truth, shift

    def unroll(self, z, horizon, temperature=0.0, generator=None, truth=None, truth_share=0.0):
        n = z.shape[1] - 1 + horizon
        picked = self.truth[:, 1 + self.shift:1 + self.shift + n]
        return {"mean": picked, "z": picked}


@pytest.mark.parametrize("rollout, pixel_frames", [(True, 4), (True, 0), (False, 0)])
def test_the_sequence_loss_scores_each_prediction_against_the_next_frame(tiny, rollout, pixel_frames):
    codec = load_mnist_codec(tiny["vae"], "cpu")
    window = torch.from_numpy(read_frames(tiny["data"], "val", "x")[:3])  # (3, 8, 1, 64, 64)
    mean, logvar = codec.encode(window)
    index = torch.arange(24).view(3, 8)
    options = dict(loss="mse", context=4, rollout=rollout, pixel_frames=pixel_frames, codec=codec,
                   frames=window.flatten(0, 1))
    padded = torch.cat([mean[:, :1], mean], 1)  # shift -1 reads one step back
    scores = {}
    for shift, truth in ((0, mean), (-1, padded)):
        model = Oracle(truth, shift, z_dim=codec.z_dim, hidden=4, layers=1, latent_shape=codec.latent_shape).eval()
        with torch.no_grad():
            scores[shift] = float(sequence_loss(model, (mean, logvar, index), **options))
    if pixel_frames:  # the true next Z decoded: the codec's own error on frames 5..8, nothing more
        decoded = codec.decode_batch(mean[:, 4:].flatten(0, 1))
        truth = window[:, 4:].flatten(0, 1).float() / 255
        assert math.isclose(scores[0], float((decoded - truth).pow(2).flatten(1).sum(1).mean()), rel_tol=1e-5)
    else:
        assert scores[0] == 0.0
    assert scores[-1] > scores[0]  # an off-by-one scores worse


def test_training_scores_the_frames_sample_video_predicts(tiny):
    codec = load_mnist_codec(tiny["vae"], "cpu")
    model = load_model(torch.load(tiny["lstm"], weights_only=True))
    window = torch.from_numpy(read_frames(tiny["data"], "val", "x")[:2])  # (2, 8, 1, 64, 64)
    mean, logvar = codec.encode(window)
    with torch.no_grad():
        loss = sequence_loss(model, (mean, logvar, torch.arange(16).view(2, 8)), loss="mse", context=4,
                             rollout=True, pixel_frames=4, codec=codec, frames=window.flatten(0, 1))
        on_z = prediction_loss(model.unroll(mean[:, :4], 4), mean[:, 1:], None, "mse")  # steps 2..8
        context_part = prediction_loss({"mean": model.unroll(mean[:, :4], 4)["mean"][:, :3]}, mean[:, 1:4],
                                       None, "mse")
    predicted = sample_video.predict(model, codec, window.numpy(), 4, 4)
    assert predicted.shape == (2, 8, 1, 64, 64)
    pixels = (predicted[:, 4:] - window[:, 4:].float() / 255).pow(2).flatten(2).sum(-1).mean()
    assert math.isclose(float(loss), float(context_part + pixels), rel_tol=1e-5)
    assert not math.isclose(float(loss), float(on_z), rel_tol=1e-3)  # the frames count, not Z alone


def test_no_training_stage_reads_the_test_split(tiny, tmp_path):
    import shutil
    data = tmp_path / "no_test.h5"
    shutil.copy(tiny["data"], data)
    with h5py.File(data, "a") as f:
        del f["test"]
    train_vcae.main(argv(data_path=data, checkpoint=tmp_path / "vae.pt", out_dir=tmp_path, **TINY_VAE))
    train_lstm.main(argv(data_path=data, vae_checkpoint=tmp_path / "vae.pt", checkpoint=tmp_path / "lstm.pt",
                         out_dir=tmp_path, **TINY_LSTM))
    with pytest.raises(UserError, match="has no test/frames"):
        sample_video.main(argv(lstm_checkpoint=tmp_path / "lstm.pt", out_dir=tmp_path, n_sequences=1))
    sample_video.main(argv(lstm_checkpoint=tmp_path / "lstm.pt", out_dir=tmp_path, n_sequences=1,
                           context=4, horizon=4, n_eval=4, split="val"))
    assert json.load(open(tmp_path / "metrics_val.json"))["split"] == "val"


def test_missing_inputs_name_the_script_to_run(tmp_path):
    cases = [
        ("train_vcae.py", [f"--data_path={tmp_path}/none.h5"], "no dataset at", "run moving_mnist.py first"),
        ("train_lstm.py", [f"--vae_checkpoint={tmp_path}/none.pt"], "no checkpoint at", "run train_vcae.py first"),
        ("sample_video.py", [f"--lstm_checkpoint={tmp_path}/none.pt"], "no checkpoint at", "run train_lstm.py first"),
    ]
    for script, args, what, todo in cases:
        r = run_script(script, *args, f"--out_dir={tmp_path}/out", f"--checkpoint={tmp_path}/c.pt"
                       if script != "sample_video.py" else "--n_sequences=1", cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("error: ") and what in r.stderr and todo in r.stderr
        assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_corrupt_checkpoint_is_a_clear_error(tiny, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(open(tiny["vae"], "rb").read()[:1000])
    with pytest.raises(UserError, match="bad.pt cannot be loaded .*run train_vcae.py again"):
        train_lstm.main(argv(data_path=tiny["data"], vae_checkpoint=bad, checkpoint=tmp_path / "l.pt"))
    assert not (tmp_path / "l.pt").exists()


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.bin") as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_device_choice():
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU is visible"):
            pick_device("cuda")
    with pytest.raises(UserError, match="is not a device"):
        pick_device("gpu0")


def test_torchrun_two_processes_write_one_checkpoint_like_a_single_run(tiny, tmp_path):
    import subprocess
    import sys
    from tests.conftest import ROOT
    common = [f"--data_path={tiny['data']}", f"--out_dir={tmp_path}"] + argv(**TINY_VAE)
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(ROOT, "train_vcae.py"), *common]
    first = subprocess.run(run + [f"--checkpoint={tmp_path}/ddp.pt"], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    single = torch.load(tiny["vae"], weights_only=True)
    assert ddp.keys() == single.keys() and ddp["model_args"] == single["model_args"]
    assert {k: v.shape for k, v in ddp["model_state"].items()} == \
        {k: v.shape for k, v in single["model_state"].items()}
    assert load_model(ddp) is not None and len(ddp["history"]["train_loss"]) == 1
    resumed = subprocess.run(run + [f"--checkpoint={tmp_path}/ddp.pt", "--epochs=2", "--resume"],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert again["epoch"] == 2 and again["history"]["train_loss"][0] == ddp["history"]["train_loss"][0]
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]  # rank 1's discarded writes are gone


def test_batches_refresh_their_data_once_per_epoch():
    from utils.batches import Batches
    calls = []

    def refresh(epoch):
        calls.append(epoch)
        return [torch.arange(4 + epoch)]

    b = Batches(None, 2, "cpu", shuffle=True, seed=0, refresh=refresh)
    assert len(b) == 2 and sorted(torch.cat(list(b)).tolist()) == [0, 1, 2, 3]
    b.epoch = 1
    assert len(b) == 3 and sorted(torch.cat(list(b)).tolist()) == [0, 1, 2, 3, 4]
    assert calls == [0, 1]


def test_lstm_draws_new_sequences_every_epoch_and_on_resume(tiny, tmp_path, monkeypatch):
    drawn = []

    def recording(path, n, seed):
        drawn.append((n, seed))
        return new_mnist_sequences(path, n, seed)

    monkeypatch.setattr(train_lstm, "new_mnist_sequences", recording)
    path = tmp_path / "lstm.pt"
    common = dict(data_path=tiny["data"], vae_checkpoint=tiny["vae"], checkpoint=path, out_dir=tmp_path,
                  new_sequences=6)
    train_lstm.main(argv(**{**TINY_LSTM, **common, "epochs": 2}))
    assert drawn == [(6, [1337, 2, 0]), (6, [1337, 2, 1])]
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["settings"]["new_sequences"] == 6 and ckpt["epoch"] == 2
    assert all(math.isfinite(v) for v in ckpt["history"]["train_loss"])
    train_lstm.main(argv(**{**TINY_LSTM, **common, "epochs": 3, "resume": True}))
    assert drawn[2:] == [(6, [1337, 2, 2])]
    with pytest.raises(UserError, match="--new_sequences"):
        train_lstm.main(argv(**{**TINY_LSTM, **common, "dataset": "film"}))


def test_scheduled_sampling_falls_linearly_over_its_share_of_training_and_resumes(tiny, tmp_path, monkeypatch):
    shares = []
    unroll = LatentLSTM.unroll

    def recording(self, z, horizon, temperature=0.0, generator=None, truth=None, truth_share=0.0):
        shares.append((self.training, truth_share))
        return unroll(self, z, horizon, temperature, generator, truth, truth_share)

    def run(name, **settings):
        train_lstm.main(argv(**{**TINY_LSTM, "data_path": tiny["data"], "vae_checkpoint": tiny["vae"],
                                "out_dir": tmp_path, "checkpoint": tmp_path / name, **settings}))
        training = [share for trains, share in shares if trains]
        assert {share for trains, share in shares if not trains} == {0.0}  # validation rolls out on its own
        shares.clear()
        return training

    monkeypatch.setattr(LatentLSTM, "unroll", recording)
    training = run("a.pt", epochs=2, scheduled_sampling=0.5)  # from 1 to 0 over the first epoch
    n = len(training) // 2
    assert n >= 2 and training == [1 - b / n for b in range(n)] + [0.0] * n
    # over all of training, and stopped after the first epoch: the resumed run goes on falling
    run("b.pt", epochs=1, scheduled_sampling=1.0)
    assert run("b.pt", epochs=2, scheduled_sampling=1.0, resume=True) == [1 - b / (2 * n) for b in range(n, 2 * n)]


def test_batches_shard_rows_across_ranks(monkeypatch):
    from utils.batches import Batches
    data = torch.arange(10)
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        b = Batches([data], 2, "cpu", shuffle=True, seed=3)
        seen.append(torch.cat(list(b)).tolist())
        assert len(b) == 3
    assert not set(seen[0]) & set(seen[1]) and len(seen[0]) == len(seen[1]) == 5


def test_checkpoint_records_the_preset_and_the_resolved_settings(tiny, tmp_path):
    preset = tmp_path / "tiny.py"
    preset.write_text("".join(f"{k} = {v!r}\n" for k, v in TINY_VAE.items())
                      + f"train_vcae = dict(checkpoint={str(tmp_path / 'v.pt')!r})\n")
    train_vcae.main([str(preset), f"--data_path={tiny['data']}", f"--out_dir={tmp_path}", "--epochs=2"])
    ckpt = torch.load(tmp_path / "v.pt", weights_only=True)
    assert ckpt["presets"] == [str(preset)] and ckpt["epoch"] == 2
    assert ckpt["settings"]["base_width"] == TINY_VAE["base_width"] and ckpt["settings"]["epochs"] == 2


def test_a_checkpoint_from_the_wrong_stage_is_one_clear_error(tiny, tmp_path):
    cases = [(train_lstm.main, dict(data_path=tiny["data"], vae_checkpoint=tiny["lstm"],
                                    checkpoint=tmp_path / "l.pt", out_dir=tmp_path, **TINY_LSTM),
              "holds a LatentLSTM from train_lstm.py, where a checkpoint from train_vcae.py belongs"),
             (sample_video.main, dict(lstm_checkpoint=tiny["vae"], out_dir=tmp_path),
              "holds a ConvVAE from train_vcae.py, where a checkpoint from train_lstm.py belongs")]
    for main, settings, message in cases:
        with pytest.raises(UserError, match=message):
            main(argv(**settings))
    torch.save(torch.load(tiny["vae"], weights_only=True)["model_state"], tmp_path / "bare.pt")
    with pytest.raises(UserError, match="is not a checkpoint of this project"):
        sample_video.main(argv(lstm_checkpoint=tmp_path / "bare.pt", out_dir=tmp_path))
    assert not (tmp_path / "l.pt").exists()


def test_a_retrained_upstream_checkpoint_is_refused_downstream(tiny, tmp_path):
    import shutil
    vae, lstm = tmp_path / "vae.pt", tmp_path / "lstm.pt"
    shutil.copy(tiny["vae"], vae)
    train_lstm.main(argv(data_path=tiny["data"], vae_checkpoint=vae, checkpoint=lstm, out_dir=tmp_path,
                         **TINY_LSTM))
    assert torch.load(lstm, weights_only=True)["vae_checkpoint_digest"]
    train_vcae.main(argv(data_path=tiny["data"], checkpoint=vae, out_dir=tmp_path,
                         **{**TINY_VAE, "seed": 7}))  # the VAE retrained in place
    with pytest.raises(UserError, match="is not the vae checkpoint that .* was trained on .* run "
                                        "train_lstm.py again"):
        sample_video.main(argv(lstm_checkpoint=lstm, out_dir=tmp_path / "s", n_eval=0))
    assert not (tmp_path / "s").exists()


def test_a_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tiny, tmp_path, capsys):
    common = dict(data_path=tiny["data"], out_dir=tmp_path, **{**TINY_VAE, "input_dropout": 0.3})
    train_vcae.main(argv(checkpoint=tmp_path / "straight.pt", **{**common, "epochs": 2}))
    train_vcae.main(argv(checkpoint=tmp_path / "parts.pt", **{**common, "epochs": 1}))
    train_vcae.main(argv(checkpoint=tmp_path / "parts.pt", resume=True, **{**common, "epochs": 2}))
    straight = torch.load(tmp_path / "straight.pt", weights_only=True)
    parts = torch.load(tmp_path / "parts.pt", weights_only=True)
    assert all(torch.equal(straight["model_state"][k], parts["model_state"][k]) for k in straight["model_state"])
    assert straight["history"]["train_loss"] == parts["history"]["train_loss"]
    capsys.readouterr()
    train_vcae.main(argv(checkpoint=tmp_path / "parts.pt", resume=True, **{**common, "epochs": 1}))
    assert "already trained for 2 epochs (--epochs=1): nothing to do" in capsys.readouterr().out


def test_the_st_cell_rebuilds_from_its_checkpoint_and_samples(tiny, tmp_path):
    trained = train_lstm.main(argv(data_path=tiny["data"], vae_checkpoint=tiny["vae"], out_dir=tmp_path,
                                   checkpoint=tmp_path / "straight.pt", **{**TINY_LSTM, "cell": "st", "layers": 2}))
    straight = torch.load(tmp_path / "straight.pt", weights_only=True)
    assert straight["model_args"]["cell"] == "st" and "m0" in straight["model_state"]
    model = load_model(straight)
    z = torch.randn(2, 4, trained.z_dim)
    assert torch.equal(trained.eval().unroll(z, 3)["z"], model.unroll(z, 3)["z"])
    assert type(model.lstm).__name__ == "STLSTM" and len(model.lstm.cells) == 2
    sample_video.main(argv(lstm_checkpoint=tmp_path / "straight.pt", out_dir=tmp_path, n_sequences=1,
                           context=4, horizon=4, n_eval=4))
    assert json.load(open(tmp_path / "metrics.json"))["model"]["mse"][0] > 0
    # a file from another version of the cell (its output gate reading the memories by 1 x 1): one clear error
    def earlier(state):
        return {k: v.new_zeros(*v.shape[:2], 1, 1) if k.endswith("o_memories.weight") else v for k, v in state.items()}
    torch.save(dict(straight, best_state=earlier(straight["best_state"]), model_state=earlier(straight["model_state"])),
               tmp_path / "earlier.pt")
    refused = "the checkpoint's weights do not fit the LatentLSTM this code builds .* run train_lstm.py again"
    with pytest.raises(UserError, match=refused):
        sample_video.main(argv(lstm_checkpoint=tmp_path / "earlier.pt", out_dir=tmp_path / "earlier", n_sequences=1))
    with pytest.raises(UserError, match=refused):
        train_lstm.main(argv(data_path=tiny["data"], vae_checkpoint=tiny["vae"], out_dir=tmp_path / "earlier",
                             checkpoint=tmp_path / "earlier.pt", resume=True,
                             **{**TINY_LSTM, "cell": "st", "layers": 2, "epochs": 3}))
    assert not (tmp_path / "earlier").exists()  # neither wrote anything


def test_malformed_or_empty_data_is_one_clear_error(tiny, tmp_path):
    import moving_mnist
    from tests.conftest import TINY_DATA
    bad = {"float.h5": lambda f: f.create_dataset("train/frames", data=np.zeros((2, 3, 1, 64, 64), np.float32)),
           "no_channel.h5": lambda f: f.create_dataset("train/frames", data=np.zeros((2, 3, 64, 64), np.uint8)),
           "group.h5": lambda f: f.create_group("train/frames"),
           "empty.h5": lambda f: f.create_dataset("train/frames", data=np.zeros((0, 3, 1, 64, 64), np.uint8))}
    messages = {"float.h5": "train/frames is float32 (2, 3, 1, 64, 64); expected uint8 pixels",
                "no_channel.h5": "expected uint8 pixels (sequences, time, channels, height, width)",
                "group.h5": "has no train/frames dataset", "empty.h5": "has no train sequences"}
    for name, make in bad.items():
        with h5py.File(tmp_path / name, "w") as f:
            make(f)
        with pytest.raises(UserError, match=re.escape(messages[name])):
            train_vcae.main(argv(data_path=tmp_path / name, checkpoint=tmp_path / "v.pt", out_dir=tmp_path))
    small = tmp_path / "small.h5"
    moving_mnist.main(argv(out_path=small, preview_path="", **{**TINY_DATA, "frame_size": 32, "digit_size": 16}))
    with pytest.raises(UserError, match=re.escape("the frames are (1, 32, 32) (channels, height, width) but "
                                                  "the encoder takes (1, 64, 64)")):
        train_lstm.main(argv(data_path=small, vae_checkpoint=tiny["vae"], checkpoint=tmp_path / "l.pt",
                             out_dir=tmp_path, **TINY_LSTM))
    assert not (tmp_path / "v.pt").exists() and not (tmp_path / "l.pt").exists()


def test_outputs_that_cannot_be_written_fail_before_the_work(tiny, tmp_path):
    (tmp_path / "a_file").write_text("x")
    for settings, message in ((dict(checkpoint=""), "--checkpoint is empty: give a path"),
                              (dict(checkpoint=tmp_path / "a_file" / "v.pt"), "--checkpoint=.* cannot be written"),
                              (dict(out_dir=tmp_path / "a_file"), "--out_dir=.* cannot be written"),
                              (dict(checkpoint=tmp_path), "is a folder: give a file path")):
        r = run_script("train_vcae.py", f"--data_path={tiny['data']}", *argv(**settings), cwd=tmp_path)
        assert r.returncode == 2 and re.search(message, r.stderr) and "Traceback" not in r.stderr
        assert "training" not in r.stdout  # stopped before reading the data


@pytest.mark.parametrize("name, code, word", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_sigterm_and_ctrl_c_stop_a_run_during_hdf5_writing_and_leftovers_are_cleared(tmp_path, name, code, word):
    import signal
    import subprocess
    import sys
    import time
    from tests.conftest import ROOT, TINY_DATA
    out = tmp_path / "mm.h5"
    leftover = tmp_path / ".mm.abc123.tmp.h5"  # what a kill -9 leaves behind
    leftover.write_bytes(b"partial")
    args = argv(out_path=out, preview_path="", **{**TINY_DATA, "n_train": 200000, "chunk": 100})
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "moving_mnist.py"), *args], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".mm.*.tmp.h5")) or leftover.exists():
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)  # inside the HDF5 writing
    p.send_signal(getattr(signal, name))
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == code and stderr.strip().splitlines()[-1] == word, stderr
    assert "removed 1 temporary file(s) of" in stdout
    assert list(tmp_path.iterdir()) == []  # neither the output nor any temporary


def test_recorded_paths_are_followed_from_another_working_directory(tiny, tmp_path):
    import shutil
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    shutil.copy(tiny["data"], run / "data" / "mm.h5")
    vae = run_script("train_vcae.py", "--data_path=data/mm.h5", "--checkpoint=ckpt/vae.pt", "--out_dir=out",
                     *argv(**TINY_VAE), cwd=run)
    lstm = run_script("train_lstm.py", "--data_path=data/mm.h5", "--vae_checkpoint=ckpt/vae.pt",
                      "--checkpoint=ckpt/lstm.pt", "--out_dir=out", *argv(**TINY_LSTM), cwd=run)
    assert vae.returncode == 0 and lstm.returncode == 0, vae.stderr + lstm.stderr
    ckpt = torch.load(run / "ckpt" / "lstm.pt", weights_only=True)
    assert ckpt["vae_checkpoint"] == "ckpt/vae.pt" and ckpt["vae_checkpoint_from_here"] == "vae.pt"
    sampled = run_script("sample_video.py", f"--lstm_checkpoint={run / 'ckpt' / 'lstm.pt'}", "--out_dir=s",
                         "--n_sequences=1", "--context=3", "--horizon=5", "--n_eval=4", cwd=tmp_path)
    assert sampled.returncode == 0, sampled.stderr
    assert (tmp_path / "s" / "mm_sample_000.gif").is_file()


def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_weights(tiny, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from tests.conftest import ROOT
    settings = argv(data_path=tiny["data"], out_dir=tmp_path, **{**TINY_VAE, "epochs": 3, "train_frames": 800,
                                                                 "input_dropout": 0.3})
    straight = run_script("train_vcae.py", *settings, f"--checkpoint={tmp_path / 'straight.pt'}", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    killed = tmp_path / "killed.pt"
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "train_vcae.py"), *settings, f"--checkpoint={killed}"],
                         cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not killed.exists():  # the first epoch's checkpoint: the second epoch has begun
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert torch.load(killed, weights_only=True)["epoch"] < 3
    (tmp_path / ".killed.x1y2.tmp.pt").write_bytes(b"half a checkpoint")  # as a kill during a write leaves
    resumed = run_script("train_vcae.py", *settings, f"--checkpoint={killed}", "--resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not (tmp_path / ".killed.x1y2.tmp.pt").exists() and "removed 1 temporary file" in resumed.stdout
    a, b = (torch.load(p, weights_only=True)["model_state"] for p in (tmp_path / "straight.pt", killed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_disk_is_one_clear_error(tiny, tmp_path):
    import subprocess
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        r = run_script("train_vcae.py", f"--data_path={tiny['data']}", f"--checkpoint={full / 'v.pt'}",
                       f"--out_dir={tmp_path / 'out'}", *argv(**TINY_VAE), cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "error: the disk is full:" in r.stderr and "free some space" in r.stderr
        assert list(full.iterdir()) == []  # no partial checkpoint, no temporary
    finally:
        subprocess.run(["umount", str(full)])
