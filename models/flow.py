"""Moving frames by flows on a coarse grid: warping, block-matched motion, and the motion
prior the film branch's predictions start from.

A flow is given in pixels, x then y, on Z's grid (B, 2, h, w) and upsampled bilinearly to
the frame: each pixel p of the moved frame takes the value at p + flow(p).
"""
import torch
import torch.nn.functional as F

SUBPIXEL_STEPS = 2  # Lucas-Kanade steps after block matching (docs/results.md: 1 to 3 score alike on val)
GRADIENT_FLOOR = 1e-4  # added to the gradient's squares: no shift where a window has no texture


def warp(frames, flow):
    """Frames (B, C, H, W) moved by ``flow`` (B, 2, h, w): each pixel p takes the value at
    p + flow(p) (x, then y, in pixels; bilinear), the flow given on a coarser grid (Z's)
    and upsampled bilinearly. Pixels fetched from beyond the edge repeat the edge."""
    b, _, height, width = frames.shape
    flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=frames.dtype, device=frames.device),
                            torch.arange(width, dtype=frames.dtype, device=frames.device), indexing="ij")
    grid = torch.stack([(xs + flow[:, 0] + 0.5) * (2.0 / width) - 1.0,
                        (ys + flow[:, 1] + 0.5) * (2.0 / height) - 1.0], dim=-1)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)


def box_mean(t, box):
    """The mean of ``t`` (B, C, H, W) over the ``box`` x ``box`` window around each pixel
    (the part of it inside the frame)."""
    return F.avg_pool2d(t, box, stride=1, padding=box // 2, count_include_pad=False)


@torch.no_grad()
def block_motion(prev, last, radius=6, box=9, grid=None, subpixel=False, chunk=32):
    """How far the content of ``last`` (B, C, H, W) moved since ``prev``, per pixel, by
    block matching: the shift d (x, y in pixels, |d| <= ``radius``) for which ``prev`` at
    p + d looks most like ``last`` at p, in grey over a ``box`` x ``box`` window, then
    averaged over such a window (and, with ``grid`` (h, w), over each cell of that grid).
    ``subpixel``: the whole-pixel shifts are then refined by SUBPIXEL_STEPS Lucas-Kanade
    steps (least squares on the brightness gradient of ``prev`` moved so far, over the
    same window; at most a pixel each), which, unlike a curve fitted to the matching
    costs, does not pull shifts towards whole pixels; otherwise whole pixels. In warp's
    convention (B, 2, H, W) or (B, 2, h, w): the same motion once more gives the next
    frame as warp(last, d). Works on ``chunk`` frames at a time (its costs take chunk x
    (2 radius + 1)^2 x H x W floats)."""
    if len(last) > chunk:
        return torch.cat([block_motion(p, q, radius, box, grid, subpixel, chunk)
                          for p, q in zip(prev.split(chunk), last.split(chunk))])
    grey_prev, grey_last = prev.mean(1, keepdim=True), last.mean(1, keepdim=True)
    height, width = last.shape[-2:]
    padded = F.pad(grey_prev, (radius,) * 4, mode="replicate")
    side = 2 * radius + 1
    costs = torch.stack([
        box_mean((padded[..., radius + dy:radius + dy + height, radius + dx:radius + dx + width]
                  - grey_last).abs(), box)[:, 0]
        + 1e-4 * (dx * dx + dy * dy)  # ties: the shorter
        for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)], dim=1)
    best = costs.argmin(1, keepdim=True)  # the first of equal costs, dy then dx ascending
    row, col = best // side, best % side
    motion = torch.cat([col, row], dim=1).to(last.dtype) - radius
    motion = box_mean(motion, box)
    if subpixel:
        motion = refine_motion(grey_prev, grey_last, motion, box)
    return motion if grid is None else F.adaptive_avg_pool2d(motion, tuple(grid))


def refine_motion(prev, last, motion, box):
    """``motion`` (B, 2, H, W) from grey ``prev`` to grey ``last`` (B, 1, H, W), refined by
    SUBPIXEL_STEPS Lucas-Kanade steps: each moves ``prev`` by the motion so far and solves,
    per pixel over a ``box`` x ``box`` window, the least-squares shift that its brightness
    gradient says would match ``last`` (at most a pixel a step); then the motion is
    averaged over the window again, as block_motion's whole pixels are."""
    for _ in range(SUBPIXEL_STEPS):
        moved = warp(prev, motion)  # prev at p + motion(p)
        gx, gy = torch.zeros_like(moved), torch.zeros_like(moved)
        gx[..., 1:-1] = (moved[..., 2:] - moved[..., :-2]) / 2
        gy[..., 1:-1, :] = (moved[..., 2:, :] - moved[..., :-2, :]) / 2
        error = moved - last
        xx, xy, yy = (box_mean(g, box) for g in (gx * gx, gx * gy, gy * gy))
        xx, yy = xx + GRADIENT_FLOOR, yy + GRADIENT_FLOOR
        ex, ey = box_mean(gx * error, box), box_mean(gy * error, box)
        det = xx * yy - xy * xy  # > 0: the floor keeps flat windows (no gradient) from moving
        step = torch.cat([(xy * ey - yy * ex) / det, (xy * ex - xx * ey) / det], dim=1)
        motion = motion + step.clamp(-1.0, 1.0)
    return box_mean(motion, box)


def warp_rollout(last, flows):
    """The frames after ``last`` (B, C, H, W): each is ``last`` moved by the sum of the
    flows ``flows`` (B, T, 2, h, w) up to its step, resampled once (resampling each frame
    from the one before would blur a little more with every step): (B, T, C, H, W)."""
    total, out = torch.zeros_like(flows[:, 0]), []
    for t in range(flows.shape[1]):
        total = total + flows[:, t]
        out.append(warp(last, total))
    return torch.stack(out, dim=1)


def blend(moved, logits):
    """The weighted mean of K moved versions of the same frames, ``moved`` (a list of K
    tensors (B, T, C, H, W)), weighted per pixel by the softmax over K of ``logits``
    (B, T, K, h, w), given on a coarser grid (Z's) and upsampled bilinearly: where the
    motion is uncertain, the mean over its hypotheses (what squared error asks for).
    (B, T, C, H, W) in ``moved``'s dtype."""
    b, t, k = logits.shape[:3]
    height, width = moved[0].shape[-2:]
    weights = torch.softmax(F.interpolate(logits.flatten(0, 1), size=(height, width), mode="bilinear",
                                          align_corners=False), dim=1)
    weights = weights.to(moved[0].dtype).view(b, t, k, 1, height, width)
    return sum(weights[:, :, i] * m for i, m in enumerate(moved))


def with_prior(flows, motion, fraction):
    """Each step's flow ``flows`` (B, T, 2, h, w) plus ``fraction`` of ``motion`` (B, 2, h, w),
    the block-matched motion between the last two context frames: constant velocity at that
    share, which a predictor adds its own corrections to; ``flows`` itself when 0. The sum
    keeps ``flows``' dtype (bfloat16 under autocast)."""
    return flows + (fraction * motion.unsqueeze(1)).to(flows.dtype) if fraction else flows


@torch.no_grad()
def constant_velocity(prev, last, steps, fraction, grid):
    """The frames after ``last`` (B, C, H, W) if it goes on moving by ``fraction`` of the
    motion block matching finds from ``prev`` to it (sub-pixel, on ``grid``) at every step:
    the flow prior alone, no training. With a list of fractions, the plain mean of the
    frames each of them gives. (B, steps, C, H, W) in [0, 1]."""
    motion = block_motion(prev, last, grid=grid, subpixel=True)
    still = motion.new_zeros((len(last), steps, 2) + tuple(motion.shape[-2:]))
    fractions = fraction if isinstance(fraction, (list, tuple)) else [fraction]
    moved = sum(warp_rollout(last, with_prior(still, motion, f)) for f in fractions) / len(fractions)
    return moved.clamp(0.0, 1.0)


@torch.no_grad()
def oracle_motion(last, future, grid=None):
    """The motion block matching measures from ``last`` (B, C, H, W) to each true future
    frame (B, T, C, H, W) (sub-pixel; on ``grid``, or per pixel without one), in warp's
    convention: (B, T, 2, h, w)."""
    b, t = future.shape[:2]
    motion = block_motion(last.repeat_interleave(t, 0), future.flatten(0, 1), grid=grid, subpixel=True)
    return motion.view(b, t, *motion.shape[1:])


@torch.no_grad()
def oracle_warp(last, future, grid):
    """``last`` (B, C, H, W) warped towards each true future frame (B, T, C, H, W) by the
    motion block matching measures between them (sub-pixel, on ``grid``): about the best a
    warp of the last frame on that grid can do, knowing the future. (B, T, C, H, W)."""
    t = future.shape[1]
    moved = warp(last.repeat_interleave(t, 0), oracle_motion(last, future, grid).flatten(0, 1))
    return moved.clamp(0.0, 1.0).view(future.shape)
