"""Synthetic video clips written with PyAV: for tests and benchmarks that need a real
encoded file of known content (moving texture, optional hard cut, optional noise)."""
import numpy as np


def scene(t, kind, width, height, noise=0):
    """A textured frame that moves with t; two kinds with different colours make a hard cut.
    ``noise`` adds random speckle, which makes every encoded frame large."""
    y, x = np.mgrid[0:height, 0:width]
    wave = np.sin((x + 3 * t) / 7.0) * np.cos((y - 2 * t) / 5.0)
    base = (np.array([200, 60, 40]) if kind == 0 else np.array([30, 90, 220]))
    speckle = np.random.default_rng(t).normal(0, noise, (height, width, 1)) if noise else 0
    return np.clip(base[None, None] + 50 * wave[..., None] + speckle, 0, 255).astype(np.uint8)


def write_video(path, n_frames, width=160, height=96, cut_at=None, fps=25, noise=0):
    """Encode a synthetic clip with PyAV (mpeg4); frames from cut_at on are another scene."""
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(n_frames):
            kind = int(cut_at is not None and t >= cut_at)
            frame = av.VideoFrame.from_ndarray(scene(t, kind, width, height, noise), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)
