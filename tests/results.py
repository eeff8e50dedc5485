"""Train and score the LSTM variants the README's Results table reports (not a test).

    python tests/results.py                      # Moving MNIST, every variant
    python tests/results.py --dataset=film       # the film branch
    python tests/results.py --epochs=20 --hidden=512

Reuses the branch's trained encoder (run the branch's stages first), trains one LSTM per
variant into checkpoints/results/, scores it with sample_video.py's evaluation into
samples/results/<dataset>_<variant>/, and prints a Markdown table of mean scores over
the predicted steps, which it also writes to samples/results/<dataset>.md.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sample_video  # noqa: E402
import train_lstm  # noqa: E402
from utils.errors import run_cli  # noqa: E402
from utils.runtime import atomic_path  # noqa: E402
from utils.settings import parse_settings  # noqa: E402

# -----------------------------------------------------------------------------
dataset = "mnist"  # mnist or film
variants = ["default", "original", "teacher", "z_loss", "no_diffs", "kl", "mdn"]  # which LSTM variants to train and score (see VARIANTS)
epochs = 0  # LSTM epochs per variant; 0 = train_lstm.py's default
hidden = 0  # LSTM channels or units; 0 = train_lstm.py's default
n_eval = 1000  # test windows scored
out_dir = "samples/results"  # metrics and the table go here
checkpoint_dir = "checkpoints/results"  # one LSTM checkpoint per variant
# -----------------------------------------------------------------------------

VARIANTS = {  # name -> train_lstm.py settings that differ from its defaults
    "default": {},
    "original": {"rollout": False, "pixel_frames": 0, "diffs": False},
    "teacher": {"rollout": False},
    "z_loss": {"pixel_frames": 0},
    "no_diffs": {"diffs": False},
    "kl": {"loss": "kl", "pixel_frames": 0},
    "mdn": {"loss": "mdn", "pixel_frames": 0},
    "dense": {"cell": "dense"},
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
    cfg = parse_settings(__file__, globals(), argv, choices={"dataset": ("mnist", "film"),
                                                            "variants": tuple(VARIANTS)})
    reports, baselines, first = {}, None, None
    for name in cfg.variants:
        ckpt = os.path.join(cfg.checkpoint_dir, f"{cfg.dataset}_{name}.pt")
        out = os.path.join(cfg.out_dir, f"{cfg.dataset}_{name}")
        settings = {"dataset": cfg.dataset, "checkpoint": ckpt, "out_dir": out, **VARIANTS[name]}
        settings.update({k: cfg[k] for k in ("epochs", "hidden") if cfg[k]})
        train_lstm.main([f"--{k}={v}" for k, v in settings.items()])
        sample_video.main([f"--lstm_checkpoint={ckpt}", f"--out_dir={out}", "--n_sequences=4",
                           f"--n_eval={cfg.n_eval}"])
        metrics = "metrics" if cfg.dataset == "mnist" else "film_metrics"
        report = json.load(open(os.path.join(out, f"{metrics}.json")))
        reports[name] = report["model"]
        baselines, first = report["baselines"], first or report
    reports.update(baselines or {})
    text = (f"{cfg.dataset}: {first['context']} frames in, {first['horizon']} predicted, "
            f"{first['n_sequences']} test windows; means over the predicted steps\n\n{table(reports)}\n")
    path = os.path.join(cfg.out_dir, f"{cfg.dataset}.md")
    with atomic_path(path) as tmp:
        open(tmp, "w").write(text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
