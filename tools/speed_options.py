"""Does channels_last, torch.compile, a thread count or autocast speed up training here?

    python -m tools.speed_options        # prints a table, writes speed_options.json here

Times the two Moving MNIST training steps at their default
settings (the spatial VAE at batch 128; the LSTM with its pixel loss through the
decoder it trains on, at batch 32) on random data, each option against plain eager float32 on
the same machine in the same run, and says whether each gave the same loss; then
train_lstm's encoding of frames to Z in float32 and in bfloat16. An option is worth
keeping only with a ratio clearly above 1. It also splits an LSTM step's time, in
float32 and in bfloat16: the rollout's forward, its backward, and the pixel loss's
decoding (lstm_step_parts).
"""
import json
import time

import torch

import train_lstm
import train_vcae
from data.branches import BRANCHES
from models.codec import VAECodec
from models.losses import sequence_loss
from models.lstm import LatentLSTM
from models.vcae import ConvVAE, vae_loss
from utils.runtime import autocast, to_channels_last

STEPS = 12


def to_format(model, memory_format):
    """``model`` with its convolutions in ``memory_format`` (channels-last as the stages do it)."""
    return to_channels_last(model) if memory_format == torch.channels_last else model


def vae_setup(memory_format=torch.contiguous_format):
    torch.manual_seed(0)
    model = to_format(ConvVAE(base_width=train_vcae.base_width, n_down=train_vcae.n_down,
                              latent_channels=train_vcae.latent_channels), memory_format)
    x = (torch.rand(128, 1, 64, 64) > 0.85).float().contiguous(memory_format=memory_format)
    return model, lambda m: vae_loss(m, x, 1)


def lstm_setup(memory_format=torch.contiguous_format, pixel_frames=4):
    torch.manual_seed(0)
    vae = to_format(ConvVAE(base_width=train_vcae.base_width, n_down=train_vcae.n_down,
                            latent_channels=train_vcae.latent_channels), memory_format)
    codec = VAECodec(vae, "cpu")
    quick = BRANCHES["mnist"]  # the cell and width the Quick start trains
    tuned = quick.tune_decoder and pixel_frames  # its decoder trained on, as train_lstm.py does
    model = to_format(LatentLSTM(z_dim=vae.z_dim, hidden=quick.hidden, layers=train_lstm.layers, dropout=0.0,
                                 diffs=True, latent_shape=vae.latent_shape, cell=quick.cell,
                                 decoder=vae.args if tuned else None), memory_format)
    if tuned:
        model.start_decoder(vae)
        codec.use_decoder(model.decoder)
    frames = (torch.rand(32 * 20, 1, 64, 64) > 0.85).to(torch.uint8) * 255
    mean, logvar = torch.randn(32, 20, vae.z_dim), torch.zeros(32, 20, vae.z_dim)
    index = torch.arange(32 * 20).view(32, 20)

    def loss(m):
        torch.manual_seed(1)  # the same pick of pixel frames every step
        return sequence_loss(m, (mean, logvar, index), loss="mse", context=10, rollout=True,
                             pixel_frames=pixel_frames, codec=codec, frames=frames)
    return model, loss


def seconds_per_call(fn, calls=STEPS):
    """Mean seconds of ``fn()`` after two warm-up calls."""
    fn(), fn()
    began = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - began) / calls


def lstm_step_parts(bf16=False):
    """Where a train_lstm.py step's time goes, at the Quick start's sizes (lstm_setup) in
    channels-last as train_lstm.py runs: seconds of the LSTM's rollout forward, of
    its backward and the update (a step whose loss is on Z only, less that forward), and
    of what the pixel loss adds (decoding the predicted frames, their loss and backward:
    a full step less the step on Z)."""
    precision = "bfloat16" if bf16 else "float32"
    model, z_loss = lstm_setup(torch.channels_last, pixel_frames=0)
    with torch.no_grad(), autocast(model, precision):
        forward = seconds_per_call(lambda: z_loss(model))
    on_z = 1 / steps_per_second(model, z_loss, bf16)[0]
    full = 1 / steps_per_second(*lstm_setup(torch.channels_last), bf16)[0]
    parts = {"rollout forward": forward, "rollout backward and update": on_z - forward,
             "pixel frames: decoding, loss, backward": full - on_z}
    return {"step_seconds": round(full, 4), **{k: round(v, 4) for k, v in parts.items()}}


def steps_per_second(model, loss_fn, bf16=False):
    """Returns (steps per second, first loss) of Adam steps on ``loss_fn(model)``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        with autocast(model, "bfloat16" if bf16 else "float32"):
            loss = loss_fn(model)
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()
        return loss.item()
    first = step()  # warm-up (and, for torch.compile, the compilation)
    return 1 / seconds_per_call(step), first


def encoding(frames=8192):
    """train_lstm's encoding of frames to Z (codec.encode, batches of 1024) in float32 and
    under bfloat16 autocast: frames per second of each, and the mean absolute difference
    of the bfloat16 Z from the float32 one, relative to the mean absolute Z."""
    torch.manual_seed(0)
    codec = VAECodec(ConvVAE(base_width=train_vcae.base_width, n_down=train_vcae.n_down,
                             latent_channels=train_vcae.latent_channels), torch.device("cpu"))
    x = ((torch.rand(frames, 1, 1, 64, 64) > 0.85).to(torch.uint8) * 255).numpy()
    out = {}
    for precision in ("float32", "bfloat16"):
        with autocast(codec.device, precision):
            codec.encode(x[:1024])  # warm-up
            began = time.perf_counter()
            out[precision] = (codec.encode(x)[0].float(), frames / (time.perf_counter() - began))
    (z32, fps32), (z16, fps16) = out["float32"], out["bfloat16"]
    return {"frames_per_second": {"float32": round(fps32), "bfloat16": round(fps16)},
            "ratio": round(fps16 / fps32, 3),
            "relative_z_difference": float((z16 - z32).abs().mean() / z32.abs().mean())}


def main():
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": {}}
    threads = torch.get_num_threads()
    for name, setup in (("train_vcae", vae_setup), ("train_lstm", lstm_setup)):
        base, base_loss = steps_per_second(*setup())
        rows = {"eager float32": (base, base_loss)}
        rows["channels_last"] = steps_per_second(*setup(torch.channels_last))
        model, loss_fn = setup()
        rows["torch.compile"] = steps_per_second(torch.compile(model), loss_fn)
        rows["bfloat16 autocast"] = steps_per_second(*setup(), bf16=True)
        if threads > 1:
            torch.set_num_threads(1)
            rows["1 thread"] = steps_per_second(*setup())
            torch.set_num_threads(threads)
        report["steps"][name] = {k: {"steps_per_second": round(v[0], 3), "ratio": round(v[0] / base, 3),
                                     "loss_difference": abs(v[1] - base_loss)} for k, v in rows.items()}
        print(f"\n{name}: training steps per second, and the ratio to eager float32")
        for k, v in report["steps"][name].items():
            print(f"  {k.ljust(18)} {v['steps_per_second']:7.2f}/s  x{v['ratio']:.2f}  "
                  f"first loss differs by {v['loss_difference']:.3g}")
    report["lstm_step_parts"] = {p: lstm_step_parts(p == "bfloat16") for p in ("float32", "bfloat16")}
    print("\ntrain_lstm step, where the time goes:")
    for precision, parts in report["lstm_step_parts"].items():
        step = parts["step_seconds"]
        print(f"  {precision}: {step:.3f} s a step; " + ", ".join(
            f"{k} {100 * v / step:.0f}%" for k, v in parts.items() if k != "step_seconds"))
    report["encoding"] = encoding()
    e = report["encoding"]
    print(f"\ntrain_lstm encoding: {e['frames_per_second']['float32']} frames/s in float32, "
          f"{e['frames_per_second']['bfloat16']} under bfloat16 autocast (x{e['ratio']:.2f}); "
          f"Z differs by {100 * e['relative_z_difference']:.2g}% of its mean magnitude")
    with open("speed_options.json", "w") as f:
        json.dump(report, f, indent=1)
    print("\nwrote speed_options.json")


if __name__ == "__main__":
    main()
