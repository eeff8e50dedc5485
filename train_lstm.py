"""Stage 3 (Moving MNIST) / 5 (film): train an LSTM to predict the next frame's latent code Z.

Reads the dataset and the trained encoder (the VAE for Moving MNIST; CAE + VAE on conv
features for the film); encodes every frame once, in large batches, to the mean and
log-variance of Z (Moving MNIST can instead draw new training sequences every epoch and
encode those); trains a convolutional LSTM (spatial Z) or a dense one (vector Z) on
windows of Z: after the context frames it runs on its own predictions, and predicted
frames are decoded by the frozen decoder and scored in pixels (the original's
teacher-forced training on Z is a setting away). Film windows use a frame skip of 3, stay
within one shot, and come from several fixed crops of each frame (training) or the centre
crop (validation); the film's frames are predicted by moving the last context frame by
flows the LSTM predicts (warp) on top of part of the motion block matching measures
between the last two context frames (flow_prior), and a film longer than max_frames is
held a part at a time, new parts each epoch. Writes the checkpoint (recording which encoder it was
trained on) and the loss history.
"""
import functools

import numpy as np
import torch

from data.branches import BRANCHES
from data.sequences import mirrored, new_mnist_sequences, sequence_clips, windows
from models.checkpoints import record_inputs
from models.lstm import CELLS, LatentLSTM, sequence_loss
from utils.batches import Batches
from utils.errors import UserError, run_cli
from utils.runtime import PRECISIONS, autocast, check_outputs, pick_device, pick_precision, seed_everything
from utils.settings import parse_settings
from utils.training import fit

# -----------------------------------------------------------------------------
dataset = "mnist"  # which branch: mnist or film (the settings marked * in --help follow it)
data_path = "data/moving_mnist.h5"  # the dataset (film: data/film.h5)
vae_checkpoint = "checkpoints/mm_vcae.pt"  # the encoder (film: checkpoints/film_vae_on_convs.pt)
checkpoint = "checkpoints/mm_lstm.pt"  # checkpoint to write and resume from
out_dir = "samples"  # loss curves go here
loss = "mse"  # how frames are scored on Z: mse, kl (Gaussian KL) or mdn (mixture likelihood)
components = 5  # mdn: Gaussian components per Z dimension [1, inf)
diffs = True  # predict the change of Z between frames, added to the last Z
rollout = True  # after train_context true frames, feed the LSTM its own predictions
skip = False  # decode predictions as the last context frame plus the decoded change (film: True)
warp = False  # predict frames as the last context frame moved by flows the conv LSTM predicts on Z's grid (film: True)
flow_modes = 1  # warp: 1 = one flow per step; K > 1 = per pixel a learned mix of the still last frame and K - 1 flows [1, inf)
flow_prior = 0.0  # warp: every predicted step's flow starts from this fraction of the motion block matching finds between the last two context frames; 0 = from zero (film: 0.4) [0, inf)
flow_decay = 1.0  # warp with flow_prior: each later step's share of that motion is this factor of the one before; 1 = the same every step (measured better on film with the LSTM), 0 = move once and hold [0, 1]
subpixel_motion = True  # warp with flow_prior or motion_inputs: refine the block-matched motion to fractions of a pixel (false: whole pixels)
motion_inputs = False  # warp: the LSTM also reads the motion block matching finds between the last two context frames (flow_prior's), to learn where to trust it
z_weight = 1.0  # warp: weight of the loss on Z beside the predicted frames' pixel loss [0, inf)
frame_inputs = False  # warp: the LSTM also reads the frames' pixels (the context's, then its own predictions)
augment = False  # also train on mirrored frames and on windows played backwards
train_context = 10  # true frames before the predicted ones (film: 5) [1, inf)
pixel_frames = 4  # predicted frames per window decoded and scored in pixels; 0 = all on Z [0, inf)
pixel_error = "mse"  # how decoded frames are scored: mse (squared error, what sample_video.py scores) or likelihood (the Moving MNIST VAE's own, binary cross-entropy; the film codec has none and uses squared error)
cell = "conv"  # conv (a convolutional LSTM on a spatial Z) or dense (the original's LSTM on a vector)
hidden = 64  # channels (conv) or units (dense: 512) per layer [1, inf)
layers = 1  # stacked LSTM layers (dense: 2) [1, inf)
dropout = 0.0  # dropout on the LSTM's input and between layers (dense: 0.3) [0, 1)
seq_len = 20  # frames per training window (film: 10) [2, inf)
frame_skip = 1  # use every n-th frame (film: 3) [1, inf)
film_crops = 1  # fixed crops per frame encoded for training (film: 3) [1, inf)
max_frames = 20000  # film: frames of a split held (and encoded) at once; a longer film is read in blocks, new ones each epoch; 0 = all [0, inf)
train_sequences = 0  # mnist: training sequences to use; 0 = all [0, inf)
new_sequences = 0  # mnist: draw this many new training sequences every epoch; 0 = off [0, inf)
epochs = 7  # passes over the training windows (film: 8) [1, inf)
batch_size = 32  # windows per batch (film: 16) [1, inf)
lr = 4e-3  # Adam's peak learning rate (film: 2e-3) (0, inf)
lr_schedule = "cosine"  # cosine (10% warm-up, then down to 0) or constant
weight_decay = 0.1  # AdamW's decoupled weight decay; 0 = plain Adam (film: 0; the Quick start: 83.8 at 0, 82.7 at 0.05, 82.2 at 0.1, 82.0 at 0.2, 83.5 at 0.4) [0, inf)
grad_clip = 10.0  # gradient-norm clipping; 0 = off [0, inf)
precision = "auto"  # auto (bfloat16 where the hardware runs it natively, else float32), float32, or bfloat16 autocast
channels_last = True  # convolutions in channels-last memory order (faster on CPUs, the results equal to rounding)
resume = False  # continue from the checkpoint if it exists
device = "auto"  # auto = cuda, then mps, else cpu
seed = 1337  # seeds the initial weights and the batch order
# -----------------------------------------------------------------------------


def follow_choices(cfg):
    """The defaults that follow the dataset and the cell (see data/branches.py, CELLS)."""
    defaults = {**BRANCHES[cfg.dataset].lstm_defaults(), **CELLS[cfg.cell]}
    defaults["warp"] = defaults["warp"] and cfg.cell == "conv"  # flows live on a spatial Z
    if not cfg.warp or cfg.frame_inputs:  # the prior moves the warp's flows, without frame inputs
        defaults["flow_prior"] = 0.0
    if not cfg.flow_prior:  # no prior, nothing to decay
        defaults["flow_decay"] = 1.0
    return defaults


def frame_channels(frames, latent_shape):
    """Channels of frames (N, C, H, W) unshuffled onto Z's (c, h, w) grid: C x cell area."""
    return frames.shape[1] * (frames.shape[-1] // latent_shape[2]) ** 2


def encode_windows(codec, cfg, split, clips, precision):
    """Z of every frame of ``clips`` (frames, lengths, cuts; see data/sequences.py) on the
    training device (mean, logvar, each (F, z_dim), encoded under ``precision``), the
    windows into them (W, seq_len) and the frames themselves (uint8 tensor (F, C, H, W))."""
    frames, lengths, cuts, _ = clips
    index = windows(lengths, cuts, cfg.seq_len, cfg.frame_skip)
    if len(index) == 0:
        raise UserError(f"no {split} window of {cfg.seq_len} frames {cfg.frame_skip} apart fits in "
                        f"{cfg.data_path} without crossing a cut: lower --seq_len or --frame_skip")
    with autocast(codec.device, precision):
        mean, logvar = codec.encode(frames[None], desc=f"encoding {split} frames")
    return (mean[0].float().to(codec.device), logvar[0].float().to(codec.device), index,
            torch.from_numpy(frames))


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv, derived=follow_choices,
                         choices={"dataset": tuple(BRANCHES), "loss": ("mse", "kl", "mdn"),
                                  "cell": tuple(CELLS), "lr_schedule": ("cosine", "constant"),
                                  "pixel_error": ("likelihood", "mse"),
                                  "precision": PRECISIONS})
    branch = BRANCHES[cfg.dataset]
    if (cfg.rollout or cfg.pixel_frames) and cfg.train_context >= cfg.seq_len:
        raise UserError(f"--train_context {cfg.train_context} must be below --seq_len "
                        f"{cfg.seq_len}, so that some frames are predicted")
    if cfg.warp and cfg.cell != "conv":
        raise UserError("--warp predicts flows on a spatial Z: use it with --cell=conv")
    if cfg.flow_modes > 1 and not cfg.warp:
        raise UserError(f"--flow_modes={cfg.flow_modes} mixes flows of the warp: use it with --warp=true")
    if cfg.frame_inputs and not cfg.warp:
        raise UserError("--frame_inputs shows the LSTM the frames the warp moves: use it with --warp=true")
    if cfg.flow_prior and (not cfg.warp or cfg.frame_inputs or cfg.train_context < 2):
        raise UserError("--flow_prior starts the warp's flows from the motion between the last two context "
                        "frames: use it with --warp=true, --frame_inputs=false and --train_context of 2 or more")
    if cfg.flow_decay != 1.0 and not cfg.flow_prior:
        raise UserError(f"--flow_decay={cfg.flow_decay} shrinks the flow prior's share step by step: "
                        "use it with --flow_prior above 0")
    if cfg.motion_inputs and (not cfg.warp or cfg.frame_inputs or cfg.train_context < 2):
        raise UserError("--motion_inputs shows the LSTM the motion between the last two context frames: use it "
                        "with --warp=true, --frame_inputs=false and --train_context of 2 or more")
    if cfg.new_sequences and cfg.dataset != "mnist":
        raise UserError("--new_sequences draws new Moving MNIST sequences: use it with --dataset=mnist")
    check_outputs(files={"checkpoint": cfg.checkpoint}, folders={"out_dir": cfg.out_dir})
    seed_everything(cfg.seed)
    dev = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, dev)

    codec = branch.load_codec(cfg.vae_checkpoint, dev)
    if cfg.channels_last:
        codec.channels_last()
    if cfg.cell == "conv" and not codec.latent_shape:
        raise UserError(f"--cell=conv needs a spatial Z, but {cfg.vae_checkpoint} codes each frame as a "
                        "vector: use --cell=dense, or train the VAE with a spatial Z")
    train = {}  # mean, logvar, index, frames of the training split (or of this epoch's new sequences)

    # a film longer than max_frames is held a part at a time: new blocks of it every epoch
    partial = (branch.frame_count is not None
               and 0 < cfg.max_frames < branch.frame_count(cfg.data_path, "train"))

    def load_train(epoch):
        if cfg.new_sequences:
            clips = sequence_clips(new_mnist_sequences(cfg.data_path, cfg.new_sequences,
                                                       [cfg.seed, 2, epoch]))
        else:
            clips = branch.read_clips(cfg.data_path, "train", n_crops=cfg.film_crops,
                                      limit=cfg.train_sequences, max_frames=cfg.max_frames,
                                      rng=np.random.default_rng([cfg.seed, 3, epoch]) if partial else None)
        train.update(zip(("mean", "logvar", "index", "frames"),
                         encode_windows(codec, cfg, "train", mirrored(clips) if cfg.augment else clips,
                                         precision)))
        if cfg.augment:  # motion played backwards is motion too
            train["index"] = torch.cat([train["index"], train["index"].flip(1)])
        return [train["index"]]

    val_mean, val_logvar, val_index, val_frames = encode_windows(
        codec, cfg, "val", branch.read_clips(cfg.data_path, "val", max_frames=cfg.max_frames), precision)
    # the stored split, encoded once for every epoch
    stored = None if cfg.new_sequences or partial else load_train(0)
    train_data = (f"{cfg.new_sequences} new training sequences per epoch" if cfg.new_sequences
                  else f"training windows from {cfg.max_frames} frames drawn anew each epoch" if partial
                  else f"{len(train['index'])} training windows")
    print(f"{train_data} and {len(val_index)} validation windows of {cfg.seq_len} latent codes "
          f"(z_dim {codec.z_dim}, frame skip {cfg.frame_skip}) on {dev}; {cfg.cell} LSTM, loss on "
          f"{f'Z and {cfg.pixel_frames} predicted frames in pixels' if cfg.pixel_frames else 'Z'}")
    model = LatentLSTM(z_dim=codec.z_dim, hidden=cfg.hidden, layers=cfg.layers,
                       dropout=cfg.dropout, output={"mse": "mean", "kl": "gaussian", "mdn": "mdn"}[cfg.loss],
                       components=cfg.components, diffs=cfg.diffs,
                       latent_shape=codec.latent_shape if cfg.cell == "conv" else None,
                       flow=cfg.warp, flow_modes=cfg.flow_modes if cfg.warp else 1,
                       frame_channels=frame_channels(val_frames, codec.latent_shape) if cfg.frame_inputs else 0,
                       flow_prior=cfg.flow_prior, flow_decay=cfg.flow_decay,
                       motion_inputs=cfg.motion_inputs,
                       subpixel_motion=cfg.subpixel_motion and bool(cfg.flow_prior or cfg.motion_inputs)).to(dev)
    if cfg.skip:  # start from "no change": with the skip, exactly a copy of the last frame
        torch.nn.init.zeros_(model.head.weight)
        torch.nn.init.zeros_(model.head.bias)
    optimizer = (torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
                 if cfg.weight_decay else torch.optim.Adam(model.parameters(), lr=cfg.lr))
    train_batches = Batches(stored, cfg.batch_size, dev, shuffle=True, seed=cfg.seed,
                            refresh=None if stored else load_train,
                            transform=lambda i: (train["mean"][i], train["logvar"][i], i))
    val_batches = Batches([val_index], cfg.batch_size, dev,
                          transform=lambda i: (val_mean[i], val_logvar[i], i))
    score = functools.partial(sequence_loss, loss=cfg.loss, context=cfg.train_context,
                              rollout=cfg.rollout, pixel_frames=cfg.pixel_frames, codec=codec,
                              skip=cfg.skip, z_weight=cfg.z_weight, squared=cfg.pixel_error == "mse")

    fit(model, optimizer, train_batches, val_batches,
        lambda m, batch: score(m, batch, frames=train["frames"] if m.training else val_frames),
        epochs=cfg.epochs, lr=cfg.lr, lr_schedule=cfg.lr_schedule, grad_clip=cfg.grad_clip,
        precision=precision, channels_last=cfg.channels_last, resume=cfg.resume, checkpoint=cfg.checkpoint,
        made_by="train_lstm.py", out_dir=cfg.out_dir, settings=cfg,
        extra={"dataset": cfg.dataset, "precision": precision, "frame_skip": cfg.frame_skip, "skip": cfg.skip,
               **record_inputs(cfg.checkpoint, data_path=cfg.data_path, vae_checkpoint=cfg.vae_checkpoint)})
    print(f"wrote {cfg.checkpoint}")
    return model


if __name__ == "__main__":
    run_cli(main)
