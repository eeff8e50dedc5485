"""Writing what a person looks at: image grids, GIFs, loss curves and CSVs.

Every writer goes through a temporary file, so an interrupted run leaves no half file.
"""
import csv

import numpy as np
from PIL import Image, ImageDraw

from utils.runtime import atomic_path

CONTEXT_COLOUR = (40, 200, 60)  # frame border while the model sees real frames
PREDICTED_COLOUR = (230, 40, 40)  # frame border once it feeds on its own output


def to_uint8(frames):
    """Frames (..., C, H, W), float in [0, 1] or uint8, as uint8 (..., H, W, 3) RGB."""
    a = np.asarray(frames.detach().cpu() if hasattr(frames, "detach") else frames)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    a = np.moveaxis(a, -3, -1)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return a


def tile(rows, gap=2, background=255):
    """Frames (R, N, C, H, W) -> one uint8 RGB image (R*H + gaps, N*W + gaps, 3)."""
    a = to_uint8(rows)
    r, n, h, w, _ = a.shape
    out = np.full((r * (h + gap) - gap, n * (w + gap) - gap, 3), background, np.uint8)
    for i in range(r):
        for j in range(n):
            out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = a[i, j]
    return out


def save_png(path, image):
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def save_grid(path, rows, gap=2):
    """Write frames (R, N, C, H, W) as a PNG grid: R rows of N frames."""
    save_png(path, tile(rows, gap))


def bordered(image, colour, width=2):
    """Image (H, W, 3) uint8 with a coloured border of ``width`` px drawn inside."""
    out = image.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


def prediction_panels(columns, context, scale=2):
    """One RGB panel per time step, the ``columns`` side by side.

    Args:
        columns: [(label, frames (T, C, H, W), float in [0, 1] or uint8), ...], e.g.
            truth, prediction, copy of the last context frame.
        context: how many leading frames were real input; their borders are green,
            the generated frames' red, so the switch is visible.
    Returns:
        uint8 (T, H*scale + 14, n*W*scale + 6*(n-1), 3).
    """
    frames = [to_uint8(f) for _, f in columns]
    panels = []
    for t in range(len(frames[0])):
        colour = CONTEXT_COLOUR if t < context else PREDICTED_COLOUR
        tiles = [np.kron(bordered(f[t], colour), np.ones((scale, scale, 1), np.uint8)) for f in frames]
        h, w = tiles[0].shape[:2]
        canvas = Image.new("RGB", (len(tiles) * (w + 6) - 6, h + 14), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        for i, ((label, _), tile_) in enumerate(zip(columns, tiles)):
            canvas.paste(Image.fromarray(tile_), (i * (w + 6), 14))
            draw.text((i * (w + 6) + 2, 1), label, fill=(0, 0, 0) if i == 0 else colour)
        draw.text((len(tiles) * (w + 6) - 6 - 40, 1), f"t={t + 1}", fill=colour)
        panels.append(np.asarray(canvas))
    return np.stack(panels)


def save_gif(path, frames, frames_per_second=4):
    """Write uint8 RGB frames (T, H, W, 3) as a looping GIF, one image per frame."""
    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 / frames_per_second), loop=0, optimize=False)


def save_mp4(path, frames, frames_per_second=4):
    """Write uint8 RGB frames (T, 3, H, W) as an H.264 MP4 (PyAV); odd sizes lose their
    last row or column, which the codec's 4:2:0 colour cannot hold."""
    import av
    frames = frames[..., :frames.shape[-2] // 2 * 2, :frames.shape[-1] // 2 * 2]
    with atomic_path(path) as tmp:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=frames_per_second)
            stream.width, stream.height, stream.pix_fmt = frames.shape[-1], frames.shape[-2], "yuv420p"
            stream.options = {"crf": "12"}  # near-lossless: the file shows what was predicted
            for frame in frames:
                image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.transpose(1, 2, 0)), format="rgb24")
                container.mux(stream.encode(image))
            container.mux(stream.encode())


def write_history_csv(path, history):
    """history: {column: list of values}, all of one length -> CSV with a header row."""
    columns = list(history)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows(zip(*(history[c] for c in columns)))


def plot_history(path, history, title, ylabel="loss"):
    """Line plot of every ``*_loss`` column of ``history`` against its epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for column, values in history.items():
        if column.endswith("_loss"):
            ax.plot(history["epoch"], values, marker="o", label=column.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
