"""Stage 3 (Moving MNIST) / 5 (film): train an LSTM to predict the next frame's latent code Z.

Reads the dataset and the trained encoder (the VAE for Moving MNIST; CAE + VAE on conv
features for the film); encodes every frame once, in large batches, to the mean and
log-variance of Z (Moving MNIST can instead draw new training sequences every epoch and
encode those); trains a convolutional LSTM (spatial Z) or a dense one (vector Z) on
windows of Z: after the context frames it runs on its own predictions, and predicted
frames are decoded by the frozen decoder and scored in pixels (the original's
teacher-forced training on Z is a setting away). Film windows use a frame skip of 3, stay
within one shot, and come from several fixed crops of each frame (training) or the centre
crop (validation). Writes the checkpoint (recording which encoder it was trained on) and
the loss history.
"""
import torch

from data.sequences import fill_branch_defaults, new_mnist_sequences, sequence_clips, split_clips, windows
from models.codec import load_codec
from models.lstm import LatentLSTM, prediction_loss
from utils.errors import UserError, run_cli
from utils.runtime import pick_device, seed_everything
from utils.settings import parse_settings
from utils.training import Batches, autocast, fit

# -----------------------------------------------------------------------------
dataset = "mnist"  # which branch: mnist or film
data_path = ""  # "" = data/moving_mnist.h5 (mnist) or data/film.h5 (film)
vae_checkpoint = ""  # "" = checkpoints/mm_vcae.pt or checkpoints/film_vae_on_convs.pt
checkpoint = ""  # checkpoint to write; "" = checkpoints/mm_lstm.pt or checkpoints/film_lstm.pt
out_dir = "samples"  # loss curves go here
loss = "mse"  # mse (squared error on Z), kl (predicted Gaussian vs the encoder's) or mdn (mixture likelihood)
components = 5  # mdn: Gaussian components per Z dimension
diffs = True  # predict the change of Z between frames (added to Z) instead of Z itself
rollout = True  # after train_context true frames, feed the LSTM its own predictions (False: teacher forcing throughout, as the original)
train_context = 0  # true frames before the predicted ones; 0 = the sampling context (10 mnist, 5 film)
pixel_frames = 4  # predicted frames per window scored in pixels through the frozen decoder (a random pick each batch; the frames before them are scored on Z); 0 = every frame scored on Z (the original)
cell = "auto"  # conv (a convolutional LSTM, needs a spatial Z) or dense (the original's LSTM); auto = conv for a spatial Z
hidden = 0  # channels (conv) or units (dense) per layer; 0 = 64 (conv) or 512 (dense; the original: 1024)
layers = 0  # stacked LSTM layers; 0 = 1 (conv) or 2 (dense)
dropout = -1.0  # dropout on the LSTM's input and between layers; -1 = 0 (conv; measured better) or 0.3 (dense, the original)
seq_len = 0  # frames per training window; 0 = 20 (mnist) or 10 (film)
frame_skip = 0  # use every n-th frame; 0 = 1 (mnist) or 3 (film)
film_crops = 3  # film: fixed crops per frame encoded for training (1 = centre only)
train_sequences = 0  # mnist: training sequences to use; 0 = all
new_sequences = 0  # mnist: draw this many new training sequences every epoch (the dataset's dynamics and training digits, a random stream per seed and epoch) instead of reusing its stored ones; 0 = off
epochs = 8  # passes over the training windows
batch_size = 0  # windows per batch; 0 = 32 (mnist) or 16 (film)
lr = 2e-3  # Adam's peak learning rate (the original: 1e-4, constant)
lr_schedule = "cosine"  # cosine (warm up over the first 10% of the steps, then down to 0) or constant
grad_clip = 10.0  # gradient-norm clipping; 0 = off
precision = "float32"  # float32, or bfloat16 (autocast: about twice as fast on CPUs with AMX or AVX512-BF16, and on recent GPUs)
resume = False  # continue from the checkpoint if it exists
device = "auto"  # auto = cuda, then mps, else cpu
seed = 1337  # seeds the initial weights and the batch order
# -----------------------------------------------------------------------------


def encode_windows(codec, cfg, split, clips):
    """Z of every frame of ``clips`` (frames, lengths, cuts; see split_clips) on the
    training device (mean, logvar, each (F, z_dim), encoded under ``precision``), the
    windows into them (W, seq_len) and the frames themselves (uint8 tensor (F, C, H, W))."""
    frames, lengths, cuts = clips
    index = windows(lengths, cuts, cfg.seq_len, cfg.frame_skip)
    if len(index) == 0:
        raise UserError(f"no {split} window of {cfg.seq_len} frames {cfg.frame_skip} apart fits in "
                        f"{cfg.data_path} without crossing a cut: lower --seq_len or --frame_skip")
    with autocast(codec.device, cfg.precision):
        mean, logvar = codec.encode(frames[None], desc=f"encoding {split} frames")
    return (mean[0].float().to(codec.device), logvar[0].float().to(codec.device), index,
            torch.from_numpy(frames))


def pick_cell(cfg, codec):
    """Fill cell, hidden, layers and dropout for the codec's kind of Z (see the settings)."""
    if cfg.cell == "auto":
        cfg.cell = "conv" if codec.latent_shape else "dense"
    if cfg.cell == "conv" and not codec.latent_shape:
        raise UserError(f"--cell=conv needs a spatial Z, but {cfg.vae_checkpoint} codes each frame as a "
                        "vector: use --cell=dense, or train the VAE with train_vcae.py --latent_channels=16")
    cfg.hidden = cfg.hidden or (64 if cfg.cell == "conv" else 512)
    cfg.layers = cfg.layers or (1 if cfg.cell == "conv" else 2)
    if cfg.dropout < 0:
        cfg.dropout = 0.0 if cfg.cell == "conv" else 0.3


def sequence_loss(model, batch, cfg, codec=None, frames=None):
    """Loss of predicting Z[t+1] for every t of a window; batch = (mean, logvar) of Z, each
    (B, T, z_dim), and the window's frame indices (B, T).

    With ``rollout``, ``train_context`` true frames are fed, then the LSTM's own predictions.
    With ``pixel_frames`` > 0 the predictions of frames train_context+1..T are scored in
    pixels (the codec's reconstruction loss of the decoded prediction against the true
    frame; ``pixel_frames`` of them picked at random per batch while training, all of them
    when evaluating) and the earlier ones on Z; else all of them on Z (``loss``)."""
    mean, logvar, index = batch
    out = model.unroll(mean, cfg.train_context if cfg.rollout else mean.shape[1])
    if not cfg.pixel_frames:
        return prediction_loss(out, mean[:, 1:], logvar[:, 1:], cfg.loss)
    first = cfg.train_context - 1  # out[:, first] predicts the first frame after the context
    loss = prediction_loss({k: v[:, :first] for k, v in out.items()}, mean[:, 1:first + 1],
                           logvar[:, 1:first + 1], cfg.loss) if first else 0.0
    n = out["mean"].shape[1] - first
    steps = torch.randperm(n)[:cfg.pixel_frames] if model.training else torch.arange(n)
    steps = steps.to(mean.device) + first
    z = out["mean"][:, steps].flatten(0, 1)
    target = frames[index[:, steps + 1].flatten().cpu()].to(mean.device)
    return loss + codec.pixel_loss(z, target)


def main(argv=None):
    cfg = parse_settings(__file__, globals(), argv,
                         choices={"dataset": ("mnist", "film"), "loss": ("mse", "kl", "mdn"),
                                  "cell": ("auto", "conv", "dense"),
                                  "lr_schedule": ("cosine", "constant"),
                                  "precision": ("float32", "bfloat16")})
    fill_branch_defaults(cfg, {"checkpoint": "lstm_checkpoint", "train_context": "context"})
    if cfg.seq_len < 2 or cfg.frame_skip < 1 or cfg.epochs < 1 or cfg.batch_size < 1 or cfg.film_crops < 1:
        raise UserError("--seq_len must be at least 2; --frame_skip, --epochs, --batch_size "
                        "and --film_crops at least 1")
    if (cfg.rollout or cfg.pixel_frames) and not 1 <= cfg.train_context < cfg.seq_len:
        raise UserError(f"--train_context {cfg.train_context} must be at least 1 and below --seq_len "
                        f"{cfg.seq_len}, so that some frames are predicted")
    if cfg.pixel_frames < 0:
        raise UserError("--pixel_frames must be 0 (loss on Z only) or more")
    if cfg.new_sequences < 0 or (cfg.new_sequences and cfg.dataset != "mnist"):
        raise UserError("--new_sequences must be 0, or a positive count with --dataset=mnist")
    seed_everything(cfg.seed)
    dev = pick_device(cfg.device)

    codec = load_codec(cfg.dataset, cfg.vae_checkpoint, dev)
    pick_cell(cfg, codec)
    train = {}  # mean, logvar, index, frames of the training split (or of this epoch's new sequences)

    def load_train(epoch):
        if cfg.new_sequences:
            clips = sequence_clips(new_mnist_sequences(cfg.data_path, cfg.new_sequences,
                                                       [cfg.seed, 2, epoch]))
        else:
            clips = split_clips(cfg.dataset, cfg.data_path, "train",
                                n_crops=cfg.film_crops if cfg.dataset == "film" else 1,
                                limit=cfg.train_sequences)
        train.update(zip(("mean", "logvar", "index", "frames"),
                         encode_windows(codec, cfg, "train", clips)))
        return [train["index"]]

    val_mean, val_logvar, val_index, val_frames = encode_windows(
        codec, cfg, "test", split_clips(cfg.dataset, cfg.data_path, "test"))
    stored = None if cfg.new_sequences else load_train(0)  # the stored split, encoded once for every epoch
    train_data = (f"{cfg.new_sequences} new training sequences per epoch" if cfg.new_sequences
                  else f"{len(train['index'])} training windows")
    print(f"{train_data} and {len(val_index)} validation windows of {cfg.seq_len} latent codes "
          f"(z_dim {codec.z_dim}, frame skip {cfg.frame_skip}) on {dev}; {cfg.cell} LSTM, loss on "
          f"{f'Z and {cfg.pixel_frames} predicted frames in pixels' if cfg.pixel_frames else 'Z'}")
    model = LatentLSTM(z_dim=codec.z_dim, hidden=cfg.hidden, layers=cfg.layers,
                       dropout=cfg.dropout, output={"mse": "mean", "kl": "gaussian", "mdn": "mdn"}[cfg.loss],
                       components=cfg.components, diffs=cfg.diffs,
                       latent_shape=codec.latent_shape if cfg.cell == "conv" else None).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    train_batches = Batches(stored, cfg.batch_size, dev, shuffle=True, seed=cfg.seed,
                            refresh=None if stored else load_train,
                            transform=lambda i: (train["mean"][i], train["logvar"][i], i))
    val_batches = Batches([val_index], cfg.batch_size, dev,
                          transform=lambda i: (val_mean[i], val_logvar[i], i))

    def loss_fn(m, batch):
        frames = train["frames"] if m.training else val_frames
        return sequence_loss(m, batch, cfg, codec, frames)

    fit(model, optimizer, train_batches, val_batches, loss_fn, cfg, cfg.checkpoint, "train_lstm.py",
        cfg.out_dir, extra={"dataset": cfg.dataset, "data_path": cfg.data_path,
                            "vae_checkpoint": cfg.vae_checkpoint, "frame_skip": cfg.frame_skip})
    print(f"wrote {cfg.checkpoint}")
    return model


if __name__ == "__main__":
    run_cli(main)
