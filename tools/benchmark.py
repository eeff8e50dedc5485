"""Speed and memory of every stage, each figure a ratio against a reference measured in
the same run (on a shared machine absolute times drift, ratios much less).

    python -m tools.benchmark            # prints a table, writes benchmark.json here
    python -m tools.benchmark --only=film_memory,speed_options   # some parts only

Figures, with the floor each is held to:
- generation_speedup: moving_mnist's vectorised generator vs a naive port that pastes
  digits frame by frame with Pillow (target >= 10).
- train_loop_ratio: each training script's training loop (real HDF5 data, real logging,
  timed by the script itself; its fastest epoch after the first) vs a bare loop of the
  same model and loss on tensors already in memory (target >= 0.85).
- extract_decode_ratio: raw PyAV decoding time (its defaults) over extract_pulp_frames.py's
  time on the same file (target >= 0.8); the extraction lets FFmpeg decode in threads, so the
  ratio to a threaded raw decode is printed beside it (what the work around decoding costs); extract_memory_ratio: its peak traced memory on a 10x longer
  video over the short one (target <= 1.2).
- sample_video: GIFs per second and seconds to the first GIF.
- models: parameter count and the GFLOP/s a bare training loop achieves under the default
  precision and memory layout.
- speed_options: training steps per second of the Moving MNIST VAE and LSTM with
  bfloat16 autocast over float32 and with channels-last over contiguous convolutions
  (what precision=auto and channels_last decide), and which precision auto picks here.
- film_memory: peak resident memory of every film stage (its own process) on a synthetic
  video four times longer than another, both longer than the stages' max_frames; with
  the frames held in blocks, film_memory_ratio (long over short, largest over the
  stages) stays near 1 (target <= 1.2), however long the film.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import torch

import extract_pulp_frames
import moving_mnist
import sample_video
import train_cae
import train_deconv
import train_lstm
import train_vae_on_convs
import train_vcae
from data.mnist_digits import load_digits
from data.video import bundled_clips
from data.h5 import read_frames
from models.checkpoints import load_checkpoint, load_model
from models.codec import load_mnist_codec
from models.losses import sequence_loss
from models.vcae import vae_loss
from models.film import pixel_mse
from utils.runtime import autocast, pick_precision
from utils.settings import Settings


def timed(fn, *args, **kwargs):
    began = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - began, out


def naive_moving_mnist(digits, n_sequences, rng, seq_len=20, size=64, digit=28):
    """What a straightforward port does: Python loops, one Pillow paste per digit per frame."""
    from PIL import Image, ImageChops
    out = np.empty((n_sequences, seq_len, 1, size, size), np.uint8)
    free = size - digit
    for n in range(n_sequences):
        images = [Image.fromarray(digits[i]) for i in rng.integers(0, len(digits), 2)]
        state = []
        for _ in images:
            angle = rng.uniform(0, 2 * math.pi)
            state.append([rng.uniform(0, 1), rng.uniform(0, 1), math.sin(angle) * 0.1, math.cos(angle) * 0.1])
        for t in range(seq_len):
            canvas = Image.new("L", (size, size))
            for image, s in zip(images, state):
                layer = Image.new("L", (size, size))
                layer.paste(image, (int(round(s[1] * free)), int(round(s[0] * free))))
                canvas = ImageChops.lighter(canvas, layer)
                for k in (0, 1):
                    s[k] += s[k + 2]
                    if not 0 <= s[k] <= 1:
                        s[k] = min(max(s[k], 0.0), 1.0)
                        s[k + 2] = -s[k + 2]
            out[n, t, 0] = np.asarray(canvas)
    return out


def bench_generation(folder):
    """The generator itself (trajectories and rendering, frames in memory) against the naive
    port on the same digits; the whole script (CSV digits, gzip HDF5) reported beside it."""
    from utils.settings import parse_settings
    digits = load_digits(os.path.join(folder, "none"), download=False)
    cfg = parse_settings(moving_mnist.__file__, vars(moving_mnist), [])
    n_naive, n_fast = 200, 10000
    # best of three for both: the first pass of either pays for fresh memory pages
    t_naive = min(timed(naive_moving_mnist, digits["train"], n_naive, np.random.default_rng(0))[0]
                  for _ in range(3))
    t_fast = min(timed(lambda: [f for f in moving_mnist.generate(np.random.default_rng(0), digits["train"],
                                                                 digits["train_index"], n_fast, cfg)])[0]
                 for _ in range(3))
    t_script, _ = timed(moving_mnist.main, [f"--out_path={folder}/gen.h5", "--download=false",
                                            f"--mnist_dir={folder}/none", f"--n_train={n_fast}",
                                            "--n_val=0", "--n_test=0", "--preview_path="])
    return (n_fast / t_fast) / (n_naive / t_naive), {
        "naive_sequences_per_second": n_naive / t_naive, "sequences_per_second": n_fast / t_fast,
        "whole_script_sequences_per_second": n_fast / t_script}


def bare_loop(model, loss_fn, batches, lr, grad_clip, precision="float32", warm_up=True):
    """The same optimisation steps on tensors already in memory: no reading, no logging.
    A first pass over two batches warms up (the script's first epoch is not timed)."""
    if warm_up:
        bare_loop(model, loss_fn, batches[:2], lr, grad_clip, precision, warm_up=False)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    began = time.perf_counter()
    for batch in batches:
        with autocast(model, precision):
            loss = loss_fn(model, batch).float()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
    return time.perf_counter() - began


def flops_per_step(model, loss_fn, batch):
    """Forward and backward FLOPs of one step. The flop counter does not see the fused
    kernel of the dense LSTM (the convolutional one it sees), so its are counted by hand: 8 (in + hidden) hidden
    FLOPs (4 gates, multiply and add) per layer and step forward, twice that backward."""
    if type(model).__name__ == "LatentLSTM" and model.latent_shape is None:
        a = model.args
        b, t = batch[0].shape[:2]
        per_step = sum(8 * (i + a["hidden"]) * a["hidden"] for i in [a["z_dim"]] + [a["hidden"]] * (a["layers"] - 1))
        head = 2 * a["hidden"] * model.head.out_features
        return 3 * b * (t - 1) * (per_step + head)
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        loss_fn(model, batch).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def script_rate(ckpt_path, n_items):
    """Items per second of the script's fastest epoch after the first, timed by the script
    (train part only)."""
    ckpt = load_checkpoint(ckpt_path, "benchmark")
    return n_items / min(ckpt["history"]["train_seconds"][1:]), ckpt


def compare(name, ckpt_path, n_items, loss_fn, batches, cfg_lr, cfg_clip, results, models, passes=1):
    """The script's training rate over a bare loop's, each the best of its timed epochs
    (``passes`` of the bare loop): short epochs, like the film stages' on one clip, are
    otherwise at the mercy of whatever else the machine does for that second."""
    rate, ckpt = script_rate(ckpt_path, n_items)
    model = load_model(ckpt).train()  # in the memory layout it was trained in
    precision = ckpt.get("precision", "float32")
    seconds = min(bare_loop(model, loss_fn, batches, cfg_lr, cfg_clip, precision, warm_up=not p)
                  for p in range(passes))
    bare_rate = n_items / seconds
    results[name] = rate / bare_rate
    flops = flops_per_step(model, loss_fn, batches[0]) * len(batches)
    models[ckpt["model_kind"]] = {"parameters": sum(p.numel() for p in model.parameters()),
                                  "gflops_per_second": flops / seconds / 1e9,
                                  "precision": ckpt.get("precision", "float32"),
                                  "channels_last": bool(ckpt.get("channels_last"))}


def float_batches(tensor, batch_size, scale, shift=0.0):
    return [tensor[s:s + batch_size].float().div(scale).sub(shift)
            for s in range(0, len(tensor), batch_size)]


def bench_training(folder, results, models):
    mm = f"{folder}/mm.h5"
    moving_mnist.main([f"--out_path={mm}", "--download=false", f"--mnist_dir={folder}/none",
                       "--n_train=1000", "--n_val=100", "--n_test=100", "--preview_path="])
    out = f"{folder}/out"
    # Moving MNIST VAE: 8000 frames, three epochs (the faster of the last two counts)
    n = 8000
    train_vcae.main([f"--data_path={mm}", f"--checkpoint={folder}/vae.pt", f"--out_dir={out}",
                     f"--train_frames={n}", "--val_frames=500", "--epochs=3"])
    frames = torch.from_numpy(read_frames(mm, "train", "x").reshape(-1, 1, 64, 64)[:n].copy())
    compare("train_vcae.py", f"{folder}/vae.pt", n, lambda m, x: vae_loss(m, x, 1),
            float_batches(frames, 128, 255.0), train_vcae.lr, train_vcae.grad_clip, results, models, passes=2)
    # LSTM on the VAE's codes: 1000 sequences
    train_lstm.main([f"--data_path={mm}", f"--vae_checkpoint={folder}/vae.pt", f"--checkpoint={folder}/lstm.pt",
                     f"--out_dir={out}", "--epochs=3"])
    cfg = Settings(load_checkpoint(f"{folder}/lstm.pt", "x")["settings"])
    codec = load_mnist_codec(f"{folder}/vae.pt", "cpu")
    sequences = torch.from_numpy(read_frames(mm, "train", "x"))
    mean, logvar = codec.encode(sequences)
    index = torch.arange(sequences.shape[0] * sequences.shape[1]).view(sequences.shape[:2])
    b = cfg.batch_size
    lstm_batches = [(mean[s:s + b], logvar[s:s + b], index[s:s + b]) for s in range(0, len(index), b)]

    def lstm_loss(m, batch):
        codec.use_decoder(getattr(m, "decoder", codec.vae))  # the decoder the script trained, if it did
        return sequence_loss(m, batch, loss=cfg.loss, context=cfg.train_context, rollout=cfg.rollout,
                             pixel_frames=cfg.pixel_frames, codec=codec, frames=sequences.flatten(0, 1))
    compare("train_lstm.py", f"{folder}/lstm.pt", len(index), lstm_loss,
            lstm_batches, train_lstm.lr, train_lstm.grad_clip, results, models, passes=2)
    # film stages on the bundled bikes clip
    clip = [c for c in bundled_clips() if c.endswith("bikes.mp4")] or bundled_clips()[:1]
    film = f"{folder}/film.h5"
    extract_pulp_frames.main([f"--out_path={film}", "--preview_path=", f"--video={clip[0]}"])
    from data.film import frame_tensor
    crops = frame_tensor(film, "train", 64)
    n_film = len(crops)
    common = [f"--data_path={film}", f"--out_dir={out}", "--epochs=4"]  # epochs of about a second
    train_cae.main(common + [f"--checkpoint={folder}/cae.pt"])
    compare("train_cae.py", f"{folder}/cae.pt", n_film, lambda m, x: pixel_mse(m(x), x),
            float_batches(crops, train_cae.batch_size, 255.0, 0.5), train_cae.lr, train_cae.grad_clip,
            results, models, passes=3)
    cae = load_model(load_checkpoint(f"{folder}/cae.pt", "x"))
    train_deconv.main(common + [f"--cae_checkpoint={folder}/cae.pt", f"--checkpoint={folder}/deconv.pt"])
    compare("train_deconv.py", f"{folder}/deconv.pt", n_film,
            lambda m, x: pixel_mse(m(cae.features(x)), x),
            float_batches(crops, train_deconv.batch_size, 255.0, 0.5), train_deconv.lr,
            train_deconv.grad_clip, results, models, passes=3)
    train_vae_on_convs.main(common + [f"--cae_checkpoint={folder}/cae.pt", f"--deconv_checkpoint={folder}/deconv.pt",
                                      f"--checkpoint={folder}/fvae.pt"])
    compare("train_vae_on_convs.py", f"{folder}/fvae.pt", n_film,
            lambda m, x: m.loss(cae.features(x), 2),
            float_batches(crops, train_vae_on_convs.batch_size, 255.0, 0.5), train_vae_on_convs.lr,
            train_vae_on_convs.grad_clip, results, models, passes=3)
    return f"{folder}/lstm.pt"


def bench_extract(folder):
    import av
    clip = [c for c in bundled_clips() if c.endswith("bigbuckbunny.mp4")] or bundled_clips()[:1]
    def raw(thread_type=None):
        with av.open(clip[0]) as c:
            if thread_type:
                c.streams.video[0].thread_type = thread_type
            for _ in c.decode(video=0):
                pass
    def extract():
        extract_pulp_frames.main([f"--out_path={folder}/x.h5", "--preview_path=", f"--video={clip[0]}"])
    # the three are timed in turn, nine rounds, best of each: a load that comes and goes
    # during the run then slows all three alike instead of whichever ran at the time.
    # Extraction lets FFmpeg decode in threads; the threaded raw decode says what is left
    # once the reference does too
    rounds = [(timed(raw)[0], timed(raw, "AUTO")[0], timed(extract)[0]) for _ in range(9)]
    t_raw, t_raw_threaded, t_extract = (min(r[i] for r in rounds) for i in range(3))
    from data.synthetic import write_video
    def traced_peak(video, out):
        tracemalloc.start()
        extract_pulp_frames.main([f"--out_path={out}", "--preview_path=", f"--video={video}"])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak
    # the highest of three runs: whether the compression worker still holds a chunk when the
    # next one is ready depends on timing, which moves a single run's peak by about a chunk
    peaks = []
    for n in (200, 2000):
        video = write_video(f"{folder}/v{n}.mp4", n, width=320, height=180)
        peaks.append(max(traced_peak(video, f"{folder}/m{n}.h5") for _ in range(3)))
    return t_raw / t_extract, peaks[1] / peaks[0], {
        "raw_decode_seconds": t_raw, "threaded_decode_seconds": t_raw_threaded, "extract_seconds": t_extract,
        "ratio_to_threaded_decode": t_raw_threaded / t_extract, "peak_traced_bytes": peaks}


def bench_sampling(folder, lstm):
    t_first, _ = timed(sample_video.main, [f"--lstm_checkpoint={lstm}", f"--out_dir={folder}/s1",
                                           "--n_sequences=1", "--n_eval=0"])
    t_all, _ = timed(sample_video.main, [f"--lstm_checkpoint={lstm}", f"--out_dir={folder}/s8",
                                         "--n_sequences=8", "--n_eval=0"])
    return {"gifs_per_second": 8 / t_all, "seconds_to_first_gif": t_first}


# Runs a script as __main__ and then reports the peak resident memory of this process
# image: VmHWM counts only the memory of the program after exec, while the rusage of a
# child (os.wait4, getrusage) also counts the forking parent's resident memory, which
# here is the benchmark's own (over a gigabyte after its training part).
_PEAK_RUNNER = """
import runpy, sys
script, report = sys.argv[1], sys.argv[2]
sys.argv = [script] + sys.argv[3:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    with open("/proc/self/status") as status, open(report, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])
"""


def peak_memory(script, *args):
    """Peak resident memory (MiB) of ``script`` run as its own process (Linux: /proc)."""
    with tempfile.NamedTemporaryFile("r", suffix=".kib") as report:
        done = subprocess.run([sys.executable, "-c", _PEAK_RUNNER, script, report.name, *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            raise RuntimeError(f"{script} {' '.join(args)} failed: {done.stderr[-2000:]}")
        return int(report.read()) / 1024  # KiB


def bench_film_memory(folder, lengths=(1000, 4000), max_frames=512):
    """Every film stage on two synthetic videos (frames of 64 x 114, one cut each), both
    longer than ``max_frames``: peak memory of each stage on each, one epoch each."""
    from data.synthetic import write_video
    peaks = {}
    for n in lengths:
        d = f"{folder}/mem{n}"
        video = write_video(f"{d}.mp4", n, width=228, height=128, cut_at=n // 2)
        common = [f"--data_path={d}.h5", f"--out_dir={d}", "--epochs=1", f"--max_frames={max_frames}"]
        cae, deconv, vae, lstm = (f"--{k}={d}/{k}.pt" for k in ("cae_checkpoint", "deconv_checkpoint",
                                                                   "vae_checkpoint", "lstm_checkpoint"))
        runs = {"extract_pulp_frames.py": [f"--video={video}", f"--out_path={d}.h5", "--preview_path="],
                "train_cae.py": common + [f"--checkpoint={d}/cae_checkpoint.pt"],
                "train_deconv.py": common + [cae, f"--checkpoint={d}/deconv_checkpoint.pt"],
                "train_vae_on_convs.py": common + [cae, deconv, f"--checkpoint={d}/vae_checkpoint.pt"],
                "train_lstm.py": common + ["--dataset=film", vae, f"--checkpoint={d}/lstm_checkpoint.pt"],
                "sample_video.py": ["--dataset=film", lstm, f"--out_dir={d}", "--n_sequences=2",
                                    "--n_eval=100", f"--max_frames={max_frames}"]}
        for script, args in runs.items():
            peaks.setdefault(script, []).append(round(peak_memory(script, *args)))
    ratio = max(long / short for short, long in peaks.values())
    return ratio, {"frames": list(lengths), "max_frames": max_frames, "peak_mib": peaks}


def bench_speed_options():
    """bfloat16 over float32 and channels-last over contiguous steps per second, for the
    Moving MNIST VAE and LSTM (tools/speed_options.py's measurements)."""
    from tools.speed_options import lstm_setup, steps_per_second, vae_setup
    out = {"auto_precision": pick_precision("auto", torch.device("cpu"))}
    for name, setup in (("train_vcae", vae_setup), ("train_lstm", lstm_setup)):
        base = steps_per_second(*setup())[0]
        out[name] = {"bfloat16_ratio": steps_per_second(*setup(), bf16=True)[0] / base,
                     "channels_last_ratio": steps_per_second(*setup(torch.channels_last))[0] / base}
    return out


PARTS = ("generation", "training", "extract", "film_memory", "speed_options")


def table(report):
    """The printed rows of the figures ``report`` holds."""
    rows = []
    if "generation_speedup" in report:
        rows += [("generation_speedup (>= 10)", f"{report['generation_speedup']:.1f}x")]
    if "train_loop_ratio" in report:
        rows += [(f"train_loop_ratio {k} (>= 0.85)", f"{v:.2f}") for k, v in report["train_loop_ratio"].items()]
        rows += [("sample_video GIFs per second", f"{report['sample_video']['gifs_per_second']:.2f}"),
                 ("sample_video seconds to first GIF", f"{report['sample_video']['seconds_to_first_gif']:.2f}")]
        rows += [(f"{k}: parameters, GFLOP/s ({v['precision']}{', channels last' if v['channels_last'] else ''})",
                  f"{v['parameters']:,}, {v['gflops_per_second']:.1f}") for k, v in report["models"].items()]
    if "extract_decode_ratio" in report:
        rows += [("extract_decode_ratio (>= 0.8)", f"{report['extract_decode_ratio']:.2f}"),
                 ("  the same against FFmpeg's threaded decoding",
                  f"{report['extract']['ratio_to_threaded_decode']:.2f}"),
                 ("extract_memory_ratio (<= 1.2)", f"{report['extract_memory_ratio']:.2f}")]
    if "film_memory" in report:
        memory = report["film_memory"]
        rows += [("film_memory_ratio (<= 1.2)", f"{report['film_memory_ratio']:.2f}")]
        rows += [(f"  {k}: peak MiB at {memory['frames'][0]} / {memory['frames'][1]} frames", f"{a} / {b}")
                 for k, (a, b) in memory["peak_mib"].items()]
    if "speed_options" in report:
        options = report["speed_options"]
        rows += [("precision=auto picks", options["auto_precision"])]
        rows += [(f"{k}: bfloat16 / float32, channels_last / contiguous steps per second",
                  f"{options[k]['bfloat16_ratio']:.2f}, {options[k]['channels_last_ratio']:.2f}")
                 for k in ("train_vcae", "train_lstm")]
    return rows


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description="Speed and memory of every stage, as ratios.")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run (default all): {', '.join(PARTS)}")
    parts = parser.parse_args(argv).only.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    began = time.time()
    report = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as folder:
        if "generation" in parts:
            report["generation_speedup"], report["generation"] = bench_generation(folder)
        if "training" in parts:  # the training stages, then sampling from the LSTM they trained
            report["train_loop_ratio"], report["models"] = {}, {}
            lstm = bench_training(folder, report["train_loop_ratio"], report["models"])
            report["sample_video"] = bench_sampling(folder, lstm)
        if "extract" in parts:
            report["extract_decode_ratio"], report["extract_memory_ratio"], report["extract"] = bench_extract(folder)
        if "film_memory" in parts:
            report["film_memory_ratio"], report["film_memory"] = bench_film_memory(folder)
    if "speed_options" in parts:
        report["speed_options"] = bench_speed_options()
    report["seconds"] = round(time.time() - began, 1)
    with open("benchmark.json", "w") as f:
        json.dump(report, f, indent=1)
    rows = table(report)
    width = max(len(r[0]) for r in rows)
    print("\n" + "\n".join(f"{a.ljust(width)}  {b}" for a, b in rows))
    print(f"\nwrote benchmark.json ({report['seconds']} s)")


if __name__ == "__main__":
    main()
