"""Train and score the LSTM variants of the Results tables.

    python -m tools.results                                # Moving MNIST, every variant
    python -m tools.results --preset=config/film.py         # the film branch, with its preset
    python -m tools.results --variants=default,kl --lstm=epochs=20,hidden=96

Reuses the branch's trained encoder (run the branch's stages first), trains one LSTM per
variant into checkpoints/results/, scores it with sample_video.py's evaluation into
samples/results/<dataset>_<variant>/, and prints a Markdown table of mean scores over
the predicted steps, which it also writes to samples/results/<dataset>.md.
"""
import json
import os

import sample_video
import train_lstm
from data.branches import BRANCHES
from utils.errors import run_cli
from utils.runtime import atomic_path
from utils.settings import parse_settings

# -----------------------------------------------------------------------------
preset = ""  # a preset from config/ that train_lstm.py and sample_video.py take first; empty = none
variants = ["default", "original", "teacher", "z_loss", "no_diffs", "kl", "mdn"]  # LSTM variants to train and score
lstm = [""]  # train_lstm.py settings for every variant, e.g. epochs=20,hidden=96
split = "val"  # windows scored: val (where variants are compared) or test (to report a chosen one)
n_eval = 1000  # windows scored [1, inf)
out_dir = "samples/results"  # metrics and the table go here
checkpoint_dir = "checkpoints/results"  # one LSTM checkpoint per variant
# -----------------------------------------------------------------------------

NO_WARP = {"warp": False, "flow_prior": [0.0]}  # a no-op on Moving MNIST; on film, Z decoded instead of a warp
VARIANTS = {  # name -> train_lstm.py settings that differ from its defaults
    "default": {},
    "original": {"rollout": False, "pixel_frames": 0, "diffs": False, **NO_WARP},
    "teacher": {"rollout": False},
    "z_loss": {"pixel_frames": 0, **NO_WARP},
    "no_diffs": {"diffs": False},
    "kl": {"loss": "kl", "pixel_frames": 0, **NO_WARP},
    "mdn": {"loss": "mdn", "pixel_frames": 0, **NO_WARP},
    "dense": {"cell": "dense", **NO_WARP},
}
LABELS = {"default": "LSTM, default: own rollouts, 4 predicted frames scored in pixels, Z differences",
          "original": "LSTM, the original's training: teacher forcing, MSE on Z, Z itself",
          "teacher": "LSTM, teacher forcing (`--rollout=false`)",
          "z_loss": "LSTM, every frame scored on Z, MSE (`--pixel_frames=0`)",
          "no_diffs": "LSTM, predicting Z itself (`--diffs=false`)",
          "kl": "LSTM, KL loss on Z (`--loss=kl --pixel_frames=0`)",
          "mdn": "LSTM, mixture density on Z, 5 components, temperature 0 (`--loss=mdn --pixel_frames=0`)",
          "dense": "LSTM, dense cell on the flattened Z (`--cell=dense`)",
          "copy_last": "baseline: copy the last context frame",
          "mean_frame": "baseline: mean training frame",
          "autoencoder": "ceiling: true future frames through the autoencoder"}


def mean(values):
    return sum(values) / len(values)


def table(reports):
    lines = ["| method | MSE / frame | MAE / frame | PSNR | SSIM | MSE at last step |",
             "|---|---|---|---|---|---|"]
    for name, scores in reports.items():
        lines.append(f"| {LABELS.get(name, name)} | {mean(scores['mse']):.1f} | {mean(scores['mae']):.1f} "
                     f"| {mean(scores['psnr']):.2f} | {mean(scores['ssim']):.3f} | {scores['mse'][-1]:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv, choices={"variants": tuple(VARIANTS), "split": ("val", "test")})
    presets = [cfg.preset] if cfg.preset else []
    common = [f"--{item}" for item in cfg.lstm if item]
    dataset = train_lstm.read_settings(presets + common).dataset
    suffix = "" if cfg.split == "test" else f"_{cfg.split}"
    reports, baselines, first = {}, None, None
    for name in cfg.variants:
        ckpt = os.path.join(cfg.checkpoint_dir, f"{dataset}_{name}.pt")
        out = os.path.join(cfg.out_dir, f"{dataset}_{name}")
        train_lstm.main(presets + [f"--checkpoint={ckpt}", f"--out_dir={out}"] + common
                        + [f"--{k}={v}" for k, v in VARIANTS[name].items()])
        sample_video.main(presets + [f"--lstm_checkpoint={ckpt}", f"--out_dir={out}",
                                     "--n_sequences=4", f"--n_eval={cfg.n_eval}", f"--split={cfg.split}"])
        with open(os.path.join(out, f"{BRANCHES[dataset].metrics_name}{suffix}.json")) as f:
            report = json.load(f)
        reports[name] = report["model"]
        baselines, first = report["baselines"], first or report
    reports.update(baselines or {})
    text = (f"{dataset}: {first['context']} frames in, {first['horizon']} predicted, "
            f"{first['n_sequences']} {cfg.split} windows; means over the predicted steps\n\n{table(reports)}\n")
    path = os.path.join(cfg.out_dir, f"{dataset}{suffix}.md")
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
