"""Synthetic video clips written with PyAV: for tests and benchmarks that need a real
encoded file of known content (moving texture, optional hard cut, optional noise)."""
import numpy as np


def scene(t, kind, width, height, noise=0):
    """A textured frame over a left-to-right brightness ramp that moves with t (the camera
    pans 3 px right and 2 px up per step). Kinds: 0 and 1 differ in colour; 2 has kind
    0's colours, mirrored ramp and another texture (a cut between shots of one palette).
    ``noise`` adds random speckle, which makes every encoded frame large."""
    y, x = np.mgrid[0:height, 0:width]
    ramp = 2.0 * x / (width - 1) - 1.0
    if kind == 2:
        ramp, wave = -ramp, np.cos((x - 2 * t) / 4.0) * np.sin((y + t) / 9.0 + 1.0)
    else:
        wave = np.sin((x + 3 * t) / 7.0) * np.cos((y - 2 * t) / 5.0)
    base = (np.array([30, 90, 220]) if kind == 1 else np.array([170, 90, 70]))
    speckle = np.random.default_rng(t).normal(0, noise, (height, width, 1)) if noise else 0
    return np.clip(base[None, None] + 35 * wave[..., None] + 50 * ramp[..., None] + speckle,
                   0, 255).astype(np.uint8)


def write_video(path, n_frames, width=160, height=96, cut_at=None, fps=25, noise=0, cut_kind=1,
                speed=1):
    """Encode a synthetic clip with PyAV (mpeg4); frames from ``cut_at`` on are scene
    ``cut_kind`` (see scene); ``speed`` times the pan."""
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(n_frames):
            kind = cut_kind if cut_at is not None and t >= cut_at else 0
            frame = av.VideoFrame.from_ndarray(scene(speed * t, kind, width, height, noise), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)
