"""Last stage, both branches: predict video. Prime the LSTM on real frames, then let it
run on its own output.

For n_sequences test windows: encode the first `context` frames to Z, feed them to the
LSTM, then feed back its own predictions for `horizon` steps; decode every Z to a frame.
Writes a GIF per window (truth, prediction and a copy of the last context frame side by
side; green border while the model sees real frames, red once it generates) and a PNG
strip (truth row above prediction row), and scores n_eval test windows against the
baselines. With --video it predicts the continuation of any video file instead.
Everything else it needs comes from the LSTM checkpoint: encoder, dataset, frame skip.
"""
import os
import time

import numpy as np
import torch

from data.branches import BRANCHES
from data.sequences import window_clips, windows
from data.video import open_video, read_window
from models.checkpoints import check_lineage, load_checkpoint, load_model, recorded_path, stage_times
from models.flow import constant_velocity, oracle_warp
from models.predict import constant_velocity_share, predict_full_size, predict_window
from utils.errors import UserError, run_cli
from utils.images import prediction_panels, save_gif, save_grid, save_mp4
from utils.metrics import StepAverages, frame_scores, write_report
from utils.runtime import check_outputs, pick_device, seed_everything
from utils.settings import parse_settings

# -----------------------------------------------------------------------------
dataset = "mnist"  # which branch: mnist or film (the settings marked * in --help follow it)
lstm_checkpoint = "checkpoints/mm_lstm.pt"  # LSTM from train_lstm.py
data_path = ""  # dataset to draw test windows from; empty = the one the LSTM was trained on
vae_checkpoint = ""  # encoder/decoder; empty = the one the LSTM was trained on
out_dir = "samples"  # GIFs, PNG strips and the metrics report go here
prefix = "mm_sample"  # file names <prefix>_<n>.gif/.png
split = "test"  # windows to score and sample: test, val or train (val and train write *_val, *_train files)
n_sequences = 8  # windows to predict [1, inf)
first_sequence = 0  # skip this many windows [0, inf)
context = 10  # real frames fed before generating [1, inf)
horizon = 10  # frames generated from the LSTM's own output [1, inf)
eval_crops = 1  # film: crops of each frame scored and sampled, left to right [1, inf)
temperature = 0.0  # 0 = feed back the predicted mean; > 0 = sample (kl, mdn) at this temperature [0, inf)
n_eval = 1000  # windows scored for the metrics report; 0 = none [0, inf)
eval_batch = 250  # windows per batch while scoring [1, inf)
max_frames = 20000  # film: frames of a split read at once; a longer film is scored on evenly spaced blocks; 0 = all [0, inf)
video = ""  # a video file to continue instead of the test windows (see video_start)
video_start = -1  # its first context frame; -1 = the last frames of the file (nothing to score) [-1, inf)
short_side = 0  # --video, film: predict at the file's own size, short side capped at this; 0 = no cap [0, inf)
frames_per_second = 4  # GIF speed (0, inf)
gif_scale = 2  # GIF pixels per frame pixel [1, inf)
device = "auto"  # auto = cuda, then mps, else cpu
seed = 1337  # seeds anything random in sampling
# -----------------------------------------------------------------------------

BASELINES = ("copy_last", "mean_frame", "last_reconstruction", "autoencoder")
MOTION_BASELINES = ("constant_velocity", "motion_mean", "oracle_warp")  # for models that move the last frame


def predict(model, codec, sequences, context, horizon, temperature=0.0, skip=False):
    """Prime on ``context`` real frames of ``sequences`` uint8 (N, T, C, H, W), generate
    ``horizon`` more (models/predict.py, the path training scores). Returns float frames
    (N, context + horizon, C, H, W): the codec's reconstructions of the context frames
    followed by the predicted frames."""
    seen = torch.from_numpy(np.ascontiguousarray(sequences[:, :context]))
    mean, _ = codec.encode(seen)
    future = predict_window(model, codec, mean, seen[:, -2:].float() / 255.0, horizon, skip, temperature)
    return torch.cat([codec.decode(mean), future], dim=1)


def mean_training_frame(branch, data_path, max_frames=0):
    """Pixel-wise mean of (up to 1000 sequences or ``max_frames`` film frames of) the
    training frames, float (C, H, W) in [0, 1]."""
    frames = branch.read_clips(data_path, "train", limit=1000, max_frames=max_frames).frames
    total = torch.zeros(frames.shape[1:], dtype=torch.float64)
    for s in range(0, len(frames), 4096):
        total += torch.from_numpy(frames[s:s + 4096]).double().sum(0)
    return (total / len(frames) / 255.0).float()


def score(model, codec, frames, groups, context, horizon, mean_frame, batch_size, temperature=0.0,
          skip=False):
    """Per-step metrics of the model and the baselines on uint8 windows (N, context + horizon,
    ...), over all windows and per group (``groups``: a name per window, e.g. its source file).

    Baselines: copy_last (the last context frame, repeated), mean_frame (the mean training
    frame), last_reconstruction (the last context frame through encode -> decode,
    repeated: what a model that learned no motion would give) and autoencoder (the true
    future frames through encode -> decode: the ceiling of any prediction in Z); for a model
    that moves the last frame, also constant_velocity (its flow prior alone at one share,
    models/predict.py's constant_velocity_share, on Z's grid), for one that blends several
    shares motion_mean (the plain mean of the last frame moved on at each of them: its
    prior alone, nothing learned) and oracle_warp (the last frame
    warped by the motion measured against the true future: the headroom of warping).
    Returns ({group or "all": {method: {metric: [per step]}}, ...}, {method: MSE per window,
    averaged over its steps})."""
    names = ["all"] + sorted(set(groups))
    motion = tuple(m for m in MOTION_BASELINES if m != "motion_mean" or len(model.flow_prior) > 1)
    methods = ("model",) + BASELINES + (motion if model.flow else ())
    acc = {g: {m: StepAverages() for m in methods} for g in names}
    errors = {m: [] for m in methods}
    groups = np.asarray(groups)
    grid = tuple(codec.latent_shape[1:]) if codec.latent_shape else None
    for s in range(0, len(frames), batch_size):
        window = frames[s:s + batch_size]
        truth = torch.from_numpy(window[:, context:]).float() / 255.0
        last = torch.from_numpy(window[:, context - 1:context]).float() / 255.0
        last_z = codec.encode(window[:, context - 1:context])[0]
        outputs = {
            "model": predict(model, codec, window, context, horizon, temperature, skip)[:, context:],
            "copy_last": last.expand_as(truth),
            "mean_frame": mean_frame.expand_as(truth),
            "last_reconstruction": codec.decode(last_z).expand_as(truth),
            "autoencoder": codec.decode(codec.encode(window[:, context:])[0]),
        }
        if model.flow:
            prev = torch.from_numpy(window[:, context - 2]).float() / 255.0
            outputs["constant_velocity"] = constant_velocity(prev, last[:, 0], horizon,
                                                             constant_velocity_share(model), grid)
            if "motion_mean" in methods:
                outputs["motion_mean"] = constant_velocity(prev, last[:, 0], horizon, model.flow_prior, grid)
            outputs["oracle_warp"] = oracle_warp(last[:, 0], truth, grid)
        for method, out in outputs.items():
            errors[method] += (out - truth).pow(2).flatten(2).sum(-1).mean(1).tolist()
        for g in names:
            rows = np.ones(len(window), bool) if g == "all" else groups[s:s + batch_size] == g
            if rows.any():
                for method, out in outputs.items():
                    acc[g][method].add(out[rows], truth[rows])
    return {g: {m: a.result() for m, a in methods.items()} for g, methods in acc.items()}, errors


def held_out_windows(clips, data_path, steps, frame_skip, first, count, split="test", n_crops=1):
    """Windows of ``steps`` frames ``frame_skip`` apart from the ``split`` ``clips`` (read
    from ``data_path``, ``n_crops`` crops of each frame as consecutive clips): uint8
    (count, steps, C, H, W), the name of the clip each one comes from, and which distinct
    window it is (the same for every crop of it). Every start counts (windows overlap),
    first window of each clip first."""
    index = windows(clips.lengths, clips.cuts, steps, frame_skip)[first:first + count]
    if len(index) == 0:
        raise UserError(f"no {split} window of {steps} frames {frame_skip} apart (after skipping "
                        f"{first}) in {data_path}: lower --context or --horizon")
    clip = window_clips(clips.lengths, index)
    starts = np.concatenate([[0], np.cumsum(clips.lengths)])[clip]
    distinct = [(c // n_crops, int(s)) for c, s in zip(clip, index[:, 0].numpy() - starts)]
    return clips.frames[index.numpy()], [clips.names[c] for c in clip], distinct


def ratio_intervals(errors, distinct, reference="copy_last", draws=1000, seed=0):
    """Each method's mean MSE over ``reference``'s, with a 95% bootstrap interval that
    resamples distinct windows (all crops of a window together). ``errors``: {method: MSE
    per window, averaged over its steps}; ``distinct``: which distinct window each is."""
    keys = {k: i for i, k in enumerate(sorted(set(distinct)))}
    rows = np.asarray([keys[k] for k in distinct])
    sums = {m: np.bincount(rows, weights=np.asarray(e), minlength=len(keys)) for m, e in errors.items()}
    picks = np.random.default_rng(seed).integers(0, len(keys), (draws, len(keys)))
    out = {}
    for method, total in sums.items():
        if method == reference:
            continue
        ratios = total[picks].sum(1) / sums[reference][picks].sum(1)
        out[method] = {"ratio": float(total.sum() / sums[reference].sum()),
                       "interval": [float(q) for q in np.percentile(ratios, [2.5, 97.5])]}
    return {"reference": reference, "distinct_windows": len(keys), **out}


def write_samples(cfg, prefix, truth, predicted, context):
    """A GIF (truth | prediction | copy of the last context frame) and a PNG strip per window."""
    for i in range(len(truth)):
        name = os.path.join(cfg.out_dir, f"{prefix}_{cfg.first_sequence + i:03d}")
        copy_last = torch.cat([truth[i, :context], truth[i, context - 1:context].expand_as(truth[i, context:])])
        panels = prediction_panels([("truth", truth[i]), ("model", predicted[i]), ("copy last", copy_last)],
                                   context, cfg.gif_scale)
        save_gif(name + ".gif", panels, cfg.frames_per_second)
        save_grid(name + ".png", torch.stack([truth[i], predicted[i]]))


def continue_video(cfg, model, codec, frame_skip, skip):
    """Predict the continuation of ``cfg.video``; score it where the file has the frames.
    A model that moves the last frame predicts at the file's own size (short side capped
    at ``cfg.short_side``) and writes an MP4 too; others predict the centre crop at their
    own size."""
    channels, size = codec.frame_shape[0], codec.frame_shape[-1]
    stem = os.path.splitext(os.path.basename(cfg.video))[0]
    if not model.flow:
        frames = read_window(cfg.video, cfg.video_start, cfg.context, cfg.horizon, frame_skip, size)
        if channels == 1:
            frames = np.round(frames.mean(1, keepdims=True)).astype(np.uint8)
        predicted = predict(model, codec, frames[None, :cfg.context], cfg.context, cfg.horizon,
                            cfg.temperature, skip)[0, cfg.context:]
        steady = None
    else:
        with open_video(cfg.video) as container:
            native = min(container.streams.video[0].codec_context.width, container.streams.video[0].codec_context.height)
        frames = read_window(cfg.video, cfg.video_start, cfg.context, cfg.horizon, frame_skip,
                             min(native, cfg.short_side or native), crop=False)
        predicted, steady = predict_full_size(model, codec, frames[:cfg.context], cfg.horizon)
    seen = torch.from_numpy(frames).float() / 255.0
    truth = torch.zeros((cfg.context + cfg.horizon,) + seen.shape[1:])  # black where the file has no frame
    truth[:len(seen)] = seen
    shown = torch.cat([seen[:cfg.context], predicted])
    name = os.path.join(cfg.out_dir, f"{stem}_continued")
    written = [f"{name}_{cfg.first_sequence:03d}.gif"]
    if model.flow:
        save_mp4(name + ".mp4", shown.mul(255).round().to(torch.uint8).numpy(), cfg.frames_per_second)
        written.append(name + ".mp4")
        small = min(shown.shape[-2:]) // (2 * size) or 1  # the GIF at about twice the model's size
        truth, shown = truth[..., ::small, ::small], shown[..., ::small, ::small]
    write_samples(cfg, f"{stem}_continued", truth[None], shown[None], cfg.context)
    print(f"wrote {' and '.join(written)} ({cfg.context} frames of {cfg.video} every {frame_skip} at "
          f"{seen.shape[-1]}x{seen.shape[-2]}, {cfg.horizon} predicted)")
    if len(seen) == cfg.context + cfg.horizon:
        future = seen[cfg.context:]
        methods = {"model": predicted, "copy_last": seen[cfg.context - 1:cfg.context].expand_as(future)}
        if steady is not None:
            methods["constant_velocity"] = steady
        scores = {m: {k: v[0].tolist() for k, v in frame_scores(out[None], future[None]).items()}
                  for m, out in methods.items()}
        report = {"split": "video", "video": cfg.video, "video_start": cfg.video_start, "context": cfg.context,
                  "horizon": cfg.horizon, "frame_skip": frame_skip, "n_sequences": 1,
                  "height": seen.shape[-2], "width": seen.shape[-1], "model": scores.pop("model"),
                  "baselines": scores, "lstm_checkpoint": cfg.lstm_checkpoint}
        path = write_report(cfg.out_dir, f"{stem}_continued_metrics", report)
        print("against the file's own frames: MSE per frame " + ", ".join(
            f"{m.replace('_', ' ')} {np.mean(s['mse']):.1f}" for m, s in [("model", report["model"]),
                                                                         *report["baselines"].items()])
              + f"; SSIM {np.mean(report['model']['ssim']):.3f} (copy last "
              f"{np.mean(report['baselines']['copy_last']['ssim']):.3f}); wrote {path}")


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv, choices={"dataset": tuple(BRANCHES),
                                                             "split": ("test", "val", "train")},
                         derived=lambda c: BRANCHES[c.dataset].sample_defaults())
    check_outputs(folders={"out_dir": cfg.out_dir})
    seed_everything(cfg.seed)
    dev = pick_device(cfg.device)

    lstm_ckpt = load_checkpoint(cfg.lstm_checkpoint, "train_lstm.py")
    if lstm_ckpt.get("dataset") != cfg.dataset:
        raise UserError(f"{cfg.lstm_checkpoint} was trained on {lstm_ckpt.get('dataset')!r}, not "
                        f"{cfg.dataset!r}: pass --dataset={lstm_ckpt.get('dataset')} (or its preset)")
    branch = BRANCHES[cfg.dataset]
    context, horizon, prefix = cfg.context, cfg.horizon, cfg.prefix
    metrics_name = branch.metrics_name
    if cfg.split != "test":  # beside the test split's files, not over them
        prefix, metrics_name = f"{prefix}_{cfg.split}", f"{metrics_name}_{cfg.split}"
    frame_skip, skip = lstm_ckpt["frame_skip"], lstm_ckpt.get("skip", False)
    data_path = cfg.data_path or recorded_path(lstm_ckpt, cfg.lstm_checkpoint, "data_path")
    vae_checkpoint = cfg.vae_checkpoint or recorded_path(lstm_ckpt, cfg.lstm_checkpoint, "vae_checkpoint")
    codec = branch.load_codec(vae_checkpoint, dev)
    check_lineage(lstm_ckpt, cfg.lstm_checkpoint, "vae_checkpoint", vae_checkpoint, "train_lstm.py")
    model = load_model(lstm_ckpt, dev)
    if hasattr(model, "decoder"):  # the VAE's decoder as the LSTM stage trained it on
        codec.use_decoder(model.decoder)
    if model.flow and context < 2:
        raise UserError(f"{cfg.lstm_checkpoint} moves the last frame, scored beside the motion between the "
                        "last two context frames: use --context=2 or more")
    if cfg.video:
        continue_video(cfg, model, codec, frame_skip, skip)
        return

    # read once, for both uses
    clips = branch.read_clips(data_path, cfg.split, n_crops=cfg.eval_crops, max_frames=cfg.max_frames)
    if cfg.n_eval > 0:
        frames, groups, distinct = held_out_windows(clips, data_path, context + horizon, frame_skip, 0,
                                                    cfg.n_eval, cfg.split, cfg.eval_crops)
        scores, errors = score(model, codec, frames, groups, context, horizon,
                               mean_training_frame(branch, data_path, cfg.max_frames), cfg.eval_batch,
                               cfg.temperature, skip)
        overall = scores.pop("all")
        report = {"split": cfg.split, "context": context, "horizon": horizon, "n_sequences": len(frames),
                  "frame_skip": frame_skip, "eval_crops": cfg.eval_crops, "skip": skip,
                  "model": overall.pop("model"), "baselines": overall, "dataset": cfg.dataset,
                  "lstm_checkpoint": cfg.lstm_checkpoint,
                  "per_source": {g: {"windows": groups.count(g), **s} for g, s in scores.items()}
                  if len(scores) > 1 else {},
                  "mse_ratios": ratio_intervals(errors, distinct),
                  "stages": stage_times(lstm_ckpt, cfg.lstm_checkpoint)
                  + [{"stage": "sample_video.py", "presets": list(cfg.presets),
                      "seconds": round(time.time() - cfg.started, 2)}]}
        path = write_report(cfg.out_dir, metrics_name, report)
        base = report["baselines"]
        print(f"scored {len(frames)} {cfg.split} windows ({context} in, {horizon} predicted, frame skip "
              f"{frame_skip}): mean MSE per frame {np.mean(report['model']['mse']):.1f} (copy last "
              f"{np.mean(base['copy_last']['mse']):.1f}, mean frame {np.mean(base['mean_frame']['mse']):.1f}, "
              f"last frame reconstructed {np.mean(base['last_reconstruction']['mse']):.1f}, "
              f"autoencoder {np.mean(base['autoencoder']['mse']):.1f}); SSIM "
              f"{np.mean(report['model']['ssim']):.3f} (copy last {np.mean(base['copy_last']['ssim']):.3f}); "
              f"wrote {path}")
        ratios = report["mse_ratios"]
        print(f"  MSE over copy last's, 95% bootstrap interval over {ratios['distinct_windows']} distinct windows: "
              + "; ".join(f"{m} {r['ratio']:.3f} ({r['interval'][0]:.3f}-{r['interval'][1]:.3f})"
                          for m, r in ratios.items() if m in ("model",) + MOTION_BASELINES))
        print("  wall time per stage: " + ", ".join(
            f"{st['stage']} {st['seconds']:.0f} s" if st["seconds"] is not None else f"{st['stage']} not recorded"
            for st in report["stages"]) + " (the dataset's own stage is not timed)")
        for g, s in report["per_source"].items():
            print(f"  {g}: {s['windows']} windows, MSE {np.mean(s['model']['mse']):.1f} (copy last "
                  f"{np.mean(s['copy_last']['mse']):.1f}), SSIM {np.mean(s['model']['ssim']):.3f} "
                  f"(copy last {np.mean(s['copy_last']['ssim']):.3f})")

    test = held_out_windows(clips, data_path, context + horizon, frame_skip, cfg.first_sequence,
                            cfg.n_sequences, cfg.split)[0]
    predicted = predict(model, codec, test, context, horizon, cfg.temperature, skip)
    write_samples(cfg, prefix, torch.from_numpy(test).float() / 255.0, predicted, context)
    print(f"wrote {len(test)} GIFs and PNG strips to {cfg.out_dir}/ ({prefix}_*.gif, *.png)")


if __name__ == "__main__":
    run_cli(main)
