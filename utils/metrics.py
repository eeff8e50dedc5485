"""Prediction quality per predicted step, in the convention of the published tables.

MSE and MAE are per frame: summed over the frame's pixels (values in [0, 1]), then
averaged over sequences. PSNR and SSIM are computed per frame and averaged; SSIM uses a
Gaussian window of 11 with sigma 1.5 and data_range 1 (pytorch-msssim).
"""
import contextlib
import json
import os

import numpy as np
import torch
from pytorch_msssim import ssim

from utils.images import write_history_csv
from utils.runtime import atomic_path

METRICS = ("mse", "mae", "psnr", "ssim")


@contextlib.contextmanager
def plain_convolutions():
    """PyTorch's own CPU convolutions instead of oneDNN's for the block: SSIM's 1 x 11
    Gaussian passes over one or three channels run 1.4-5 times faster so (results equal
    to 1e-6). torch.backends.mkldnn.flags() does the same but warns on recent releases."""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


def frame_scores(prediction, truth):
    """Per-frame scores of float frames in [0, 1], both (N, M, C, H, W).

    Returns {metric: tensor (N, M)}.
    """
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and truth {tuple(truth.shape)} differ")
    prediction, truth = prediction.double().clamp(0, 1), truth.double()
    err = prediction - truth
    mse = err.pow(2).flatten(2).sum(-1)
    mae = err.abs().flatten(2).sum(-1)
    pixel_mse = err.pow(2).flatten(2).mean(-1)
    psnr = 10 * torch.log10(1.0 / pixel_mse.clamp_min(1e-10))
    n, m = prediction.shape[:2]
    # float32 is plenty for SSIM and several times faster than float64 on a CPU
    with plain_convolutions():
        ssim_values = ssim(prediction.flatten(0, 1).float(), truth.flatten(0, 1).float(), data_range=1.0,
                           size_average=False, win_size=11, win_sigma=1.5).view(n, m).double()
    return {"mse": mse, "mae": mae, "psnr": psnr, "ssim": ssim_values}


class StepAverages:
    """Running per-step means of frame_scores over batches of sequences."""

    def __init__(self):
        self.sums, self.count = None, 0

    def add(self, prediction, truth):
        scores = frame_scores(prediction, truth)
        batch = {k: v.sum(0) for k, v in scores.items()}
        self.sums = batch if self.sums is None else {k: self.sums[k] + batch[k] for k in batch}
        self.count += len(prediction)

    def result(self):
        """{metric: [mean at step 1, ..., step M]}"""
        return {k: (v / self.count).tolist() for k, v in self.sums.items()}


def write_report(out_dir, name, report):
    """Write <name>.json, <name>.csv (one row per method and step) and <name>.png."""
    json_path = os.path.join(out_dir, f"{name}.json")
    with atomic_path(json_path) as tmp:
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
    methods = {"model": report["model"], **report["baselines"]}
    rows = {"method": [], "step": [], **{m: [] for m in METRICS}}
    for method, scores in methods.items():
        for step in range(report["horizon"]):
            rows["method"].append(method)
            rows["step"].append(step + 1)
            for m in METRICS:
                rows[m].append(scores[m][step])
    write_history_csv(os.path.join(out_dir, f"{name}.csv"), rows)
    plot_report(os.path.join(out_dir, f"{name}.png"), methods, report)
    return json_path


def plot_report(path, methods, report):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    steps = np.arange(1, report["horizon"] + 1)
    for ax, metric in zip(axes, METRICS):
        for method, scores in methods.items():
            ax.plot(steps, scores[metric], marker="o" if method == "model" else ".",
                    linewidth=2.5 if method == "model" else 1.2, label=method.replace("_", " "))
        ax.set_title(metric.upper() + (" per frame" if metric in ("mse", "mae") else ""))
        ax.set_xlabel("predicted step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{report['context']} frames in, {report['horizon']} predicted, "
                 f"{report['n_sequences']} {report.get('split', 'test')} windows")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
