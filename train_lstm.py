"""Stage 3 (Moving MNIST) / 5 (film): train an LSTM to predict the next frame's latent code Z.

Reads the dataset and the trained encoder (the VAE for Moving MNIST; CAE + VAE on conv
features for the film); encodes every frame once, in large batches, to the mean and
log-variance of Z (Moving MNIST can instead draw new training sequences every epoch and
encode those); trains an LSTM on windows of Z (on a spatial Z, PredRNN's spatiotemporal
cell for Moving MNIST and a convolutional one for the film; a dense one on a vector Z):
after the context frames it runs on its own predictions (early in training fed ever fewer
true codes instead: scheduled sampling), and predicted frames are scored in pixels (the
original's teacher-forced training on Z is a setting away; on Moving MNIST a copy of the
VAE's decoder, kept in the LSTM's checkpoint, trains on with it). Film windows use a
frame skip of 3, stay within one shot, and come from several fixed crops of each frame
(training) or the centre crop (validation); the film's frames are predicted by moving
the last context frame by flows the LSTM predicts (warp), on top of part of the motion
block matching measures between the last two context frames (flow_prior; with several
shares, the moved frames blended per cell by a learned head), and training windows are
also played backwards (reverse). Validates on the val split; writes the checkpoint
(recording which encoder it was trained on) and the loss history.
"""
import functools

import numpy as np
import torch

from data.branches import BRANCHES
from data.sequences import new_mnist_sequences, sequence_clips, windows
from models.checkpoints import record_inputs
from models.losses import sequence_loss
from models.lstm import CELLS, LatentLSTM
from utils.batches import Batches
from utils.errors import UserError, run_cli
from utils.runtime import PRECISIONS, autocast, check_outputs, pick_device, pick_precision, seed_everything
from utils.settings import parse_settings
from utils.training import fit

# -----------------------------------------------------------------------------
dataset = "mnist"  # which branch: mnist or film (the settings marked * in --help follow it)
data_path = "data/moving_mnist.h5"  # the dataset
vae_checkpoint = "checkpoints/mm_vcae.pt"  # the encoder (Moving MNIST's VAE, or the film's VAE on conv features)
checkpoint = "checkpoints/mm_lstm.pt"  # checkpoint to write and resume from
out_dir = "samples"  # loss curves go here
loss = "mse"  # how predictions are scored on Z: mse, kl (Gaussian KL) or mdn (mixture likelihood)
components = 5  # mdn: Gaussian components per Z dimension [1, inf)
diffs = True  # predict the change of Z between frames, added to the last Z
rollout = True  # after train_context true frames, feed the LSTM its own predictions
scheduled_sampling = 0.8  # rollout: fed true Z at odds falling from 1 to 0 over this share of training [0, 1]
tune_decoder = 0.2  # train the VAE's decoder on predicted frames at this share of lr (kept with the LSTM); 0 = frozen [0, inf)
skip = False  # decode predictions as the last context frame plus the decoded change (not with warp)
warp = False  # predict frames as the last context frame moved by flows predicted on Z's grid (spatial Z)
flow_prior = [0.0]  # warp: flows start from this share of the context's motion (below 0: back); several: blended (-inf, inf)
train_context = 10  # true frames before the predicted ones [1, inf)
reverse = False  # also train on every training window played backwards (twice the windows)
pixel_frames = 4  # predicted frames per window decoded and scored in pixels; 0 = all on Z [0, inf)
cell = "st"  # spatial Z: conv (ConvLSTM) or st (PredRNN's spatiotemporal LSTM); dense: the original's
hidden = 52  # channels (conv, st) or units (dense) per layer [1, inf)
layers = 1  # stacked LSTM layers [1, inf)
dropout = 0.0  # dropout on the LSTM's input and between layers [0, 1)
seq_len = 20  # frames per training window [2, inf)
frame_skip = 1  # use every n-th frame [1, inf)
max_frames = 20000  # film: frames of a split held (and encoded) at once, new blocks each epoch; 0 = all [0, inf)
new_sequences = 0  # mnist: draw this many new training sequences every epoch; 0 = the stored ones [0, inf)
epochs = 4  # passes over the training windows [1, inf)
batch_size = 32  # windows per batch [1, inf)
lr = 6e-3  # peak learning rate of the cosine schedule (10% warm-up, then down to 0) (0, inf)
weight_decay = 0.1  # AdamW's decoupled weight decay; 0 = plain Adam [0, inf)
grad_clip = 10.0  # gradient-norm clipping; 0 = off [0, inf)
precision = "auto"  # auto (bfloat16 where the hardware runs it natively, else float32), float32, or bfloat16
channels_last = True  # convolutions in channels-last memory order (faster on most CPUs, equal to rounding)
resume = False  # continue from the checkpoint if it exists
device = "auto"  # auto = cuda, then mps, else cpu
seed = 1337  # seeds the initial weights and the batch order
# -----------------------------------------------------------------------------


def check(cfg):
    """Combinations that would do nothing, or could not run, stop here before any work."""
    if (cfg.rollout or cfg.pixel_frames) and cfg.train_context >= cfg.seq_len:
        raise UserError(f"--train_context {cfg.train_context} must be below --seq_len "
                        f"{cfg.seq_len}, so that some frames are predicted")
    if cfg.warp and cfg.cell == "dense":
        raise UserError("--warp predicts flows on a spatial Z: use it with --cell=conv or st, or --warp=false")
    if cfg.warp and cfg.skip:
        raise UserError("--skip decodes predicted Z, which --warp does not: use one of them")
    if cfg.warp and "pixel_frames" in cfg.given:
        raise UserError("--pixel_frames picks which decoded frames are scored; --warp scores every moved "
                        "frame: leave --pixel_frames out with --warp")
    if any(cfg.flow_prior) and (not cfg.warp or cfg.train_context < 2):
        raise UserError("--flow_prior starts the warp's flows from the motion between the last two context "
                        "frames: use it with --warp=true and --train_context of 2 or more")
    if "scheduled_sampling" in cfg.given and cfg.scheduled_sampling and not cfg.rollout:
        raise UserError("--scheduled_sampling mixes true Z into the LSTM's rollout: use it with --rollout=true, "
                        "or --scheduled_sampling=0")
    if "components" in cfg.given and cfg.loss != "mdn":
        raise UserError(f"--components sizes the mixture of --loss=mdn, not --loss={cfg.loss}")
    if "tune_decoder" in cfg.given and cfg.tune_decoder:
        if cfg.dataset != "mnist":
            raise UserError("--tune_decoder trains Moving MNIST's VAE decoder further: use it with --dataset=mnist")
        if cfg.warp or not cfg.pixel_frames:
            raise UserError("--tune_decoder trains the decoder on the predicted frames it decodes, which "
                            f"{'--warp does not decode' if cfg.warp else '--pixel_frames=0 does not score'}"
                            ": use --tune_decoder=0")
    if cfg.new_sequences and cfg.dataset != "mnist":
        raise UserError("--new_sequences draws new Moving MNIST sequences: use it with --dataset=mnist")


def encode_windows(codec, cfg, split, clips, precision, reverse=False):
    """Z of every frame of ``clips`` (frames, lengths, cuts; see data/sequences.py) on the
    training device (mean, logvar, each (F, z_dim), encoded under ``precision``), the
    windows into them (W, seq_len), followed with ``reverse`` by the same windows played
    backwards, and the frames themselves (uint8 tensor (F, C, H, W))."""
    frames, lengths, cuts, _ = clips
    index = windows(lengths, cuts, cfg.seq_len, cfg.frame_skip)
    if reverse:
        index = torch.cat([index, index.flip(1)])
    if len(index) == 0:
        raise UserError(f"no {split} window of {cfg.seq_len} frames {cfg.frame_skip} apart fits in "
                        f"{cfg.data_path} without crossing a cut: lower --seq_len or --frame_skip")
    with autocast(codec.device, precision):
        mean, logvar = codec.encode(frames[None], desc=f"encoding {split} frames")
    return (mean[0].float().to(codec.device), logvar[0].float().to(codec.device), index,
            torch.from_numpy(frames))


def read_settings(argv=None):
    """The run's settings: defaults, the dataset's own (data/branches.py), presets, the shell."""
    cfg = parse_settings(__file__, globals(), argv, derived=lambda c: BRANCHES[c.dataset].lstm_defaults(),
                         choices={"dataset": tuple(BRANCHES), "loss": ("mse", "kl", "mdn"),
                                  "cell": CELLS, "precision": PRECISIONS})
    check(cfg)
    return cfg


def main(argv=None):
    cfg = read_settings(argv)
    branch = BRANCHES[cfg.dataset]
    check_outputs(files={"checkpoint": cfg.checkpoint}, folders={"out_dir": cfg.out_dir})
    seed_everything(cfg.seed)
    dev = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, dev)

    codec = branch.load_codec(cfg.vae_checkpoint, dev)
    if cfg.channels_last:
        codec.channels_last()
    if cfg.cell != "dense" and not codec.latent_shape:
        raise UserError(f"--cell={cfg.cell} needs a spatial Z, but {cfg.vae_checkpoint} codes each frame as a "
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
            clips = branch.read_clips(cfg.data_path, "train", n_crops=branch.training_crops,
                                      max_frames=cfg.max_frames,
                                      rng=np.random.default_rng([cfg.seed, 3, epoch]) if partial else None)
        train.update(zip(("mean", "logvar", "index", "frames"), encode_windows(codec, cfg, "train", clips,
                                                                                precision, cfg.reverse)))
        return [train["index"]]

    val_mean, val_logvar, val_index, val_frames = encode_windows(
        codec, cfg, "val", branch.read_clips(cfg.data_path, "val", max_frames=cfg.max_frames), precision)
    # the stored split, encoded once for every epoch
    stored = None if cfg.new_sequences or partial else load_train(0)
    train_data = (f"{cfg.new_sequences} new training sequences per epoch" if cfg.new_sequences
                  else f"training windows from {cfg.max_frames} frames drawn anew each epoch" if partial
                  else f"{len(train['index'])} training windows")
    scored = ("Z and the moved frames in pixels" if cfg.warp
              else f"Z and {cfg.pixel_frames} predicted frames in pixels" if cfg.pixel_frames else "Z")
    print(f"{train_data} and {len(val_index)} validation windows of {cfg.seq_len} latent codes "
          f"(z_dim {codec.z_dim}, frame skip {cfg.frame_skip}) on {dev}; {cfg.cell} LSTM, loss on {scored}")
    tune = cfg.tune_decoder if cfg.pixel_frames and not cfg.warp else 0.0  # else nothing would train it
    model = LatentLSTM(z_dim=codec.z_dim, hidden=cfg.hidden, layers=cfg.layers,
                       dropout=cfg.dropout, output={"mse": "mean", "kl": "gaussian", "mdn": "mdn"}[cfg.loss],
                       components=cfg.components, diffs=cfg.diffs,
                       latent_shape=codec.latent_shape if cfg.cell != "dense" else None,
                       flow=cfg.warp, flow_prior=cfg.flow_prior, cell="st" if cfg.cell == "st" else "conv",
                       decoder=codec.vae.args if tune else None).to(dev)
    if tune:  # the VAE's decoder, trained on from here; predictions decode through it
        model.start_decoder(codec.vae)
        codec.use_decoder(model.decoder)
    if cfg.skip or cfg.warp:  # start from "no change": with the skip, or a flow of zero, a copy of the last frame
        torch.nn.init.zeros_(model.head.weight)
        torch.nn.init.zeros_(model.head.bias)
    groups = [{"params": [p for name, p in model.named_parameters() if not name.startswith("decoder.")]}]
    if tune:  # a trained decoder, refined at a share of the rate, without weight decay
        groups.append({"params": list(model.decoder.parameters()), "lr_scale": tune, "weight_decay": 0.0})
    optimizer = (torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
                 if cfg.weight_decay else torch.optim.Adam(groups, lr=cfg.lr))
    train_batches = Batches(stored, cfg.batch_size, dev, shuffle=True, seed=cfg.seed,
                            refresh=None if stored else load_train,
                            transform=lambda i: (train["mean"][i], train["logvar"][i], i))
    val_batches = Batches([val_index], cfg.batch_size, dev,
                          transform=lambda i: (val_mean[i], val_logvar[i], i))
    score = functools.partial(sequence_loss, loss=cfg.loss, context=cfg.train_context,
                              rollout=cfg.rollout, pixel_frames=cfg.pixel_frames, codec=codec, skip=cfg.skip)

    def truth_share():
        """Scheduled sampling: the chance that a rolled-out step is fed the true Z, falling
        linearly from 1 at the first training batch to 0 at scheduled_sampling of them."""
        if not cfg.scheduled_sampling:
            return 0.0
        return max(0.0, 1.0 - train_batches.step / (cfg.scheduled_sampling * cfg.epochs * len(train_batches)))

    fit(model, optimizer, train_batches, val_batches,
        lambda m, batch: score(m, batch, frames=train["frames"] if m.training else val_frames,
                               truth_share=truth_share()),
        epochs=cfg.epochs, lr=cfg.lr, lr_schedule="cosine", grad_clip=cfg.grad_clip,
        precision=precision, channels_last=cfg.channels_last, resume=cfg.resume, checkpoint=cfg.checkpoint,
        made_by="train_lstm.py", out_dir=cfg.out_dir, settings=cfg,
        extra={"dataset": cfg.dataset, "precision": precision, "frame_skip": cfg.frame_skip, "skip": cfg.skip,
               **record_inputs(cfg.checkpoint, data_path=cfg.data_path, vae_checkpoint=cfg.vae_checkpoint)})
    print(f"wrote {cfg.checkpoint}")
    return model


if __name__ == "__main__":
    run_cli(main)
