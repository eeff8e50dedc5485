"""The two datasets ("branches") in one place: each one's files, its defaults for the
sequence stages (train_lstm.py, sample_video.py), how its frames are read and how its
frames are encoded to Z. Scripts ask ``BRANCHES[dataset]``; nothing else branches on the
dataset's name.
"""
from dataclasses import dataclass
from typing import Callable, Optional

from data.film import MADE_BY as FILM_MADE_BY
from data.sequences import MNIST_MADE_BY, film_clips, film_frame_count, mnist_clips
from models.codec import load_film_codec, load_mnist_codec


@dataclass(frozen=True)
class Branch:
    name: str
    made_by: str  # the script that writes its dataset
    data_path: str  # where that script writes it by default
    encoder_checkpoint: str  # the encoder train_lstm.py reads
    lstm_checkpoint: str  # where train_lstm.py writes by default
    seq_len: int  # frames per LSTM training window
    frame_skip: int  # use every n-th frame
    cell: str  # the LSTM's cell: conv, st or dense (train_lstm.py)
    hidden: int  # its channels (conv, st) or units (dense) per layer
    batch_size: int  # LSTM windows per batch
    epochs: int  # LSTM training epochs
    lr: float  # the LSTM's peak learning rate
    weight_decay: float  # the LSTM's decoupled weight decay (AdamW); 0 = plain Adam
    loss: str  # how the LSTM's predictions are scored on Z: mse, kl or mdn
    context: int  # true frames before the predicted ones (training and sampling)
    horizon: int  # frames sample_video.py predicts
    warp: bool  # predict frames by moving the last context frame by predicted flows
    flow_prior: list  # the warp's flows start from these fractions of the block-matched motion (several: blended)
    reverse: bool  # the LSTM also trains on its training windows played backwards
    scheduled_sampling: float  # share of the LSTM's training over which its rollout is fed ever fewer true Z
    tune_decoder: float  # the VAE's decoder trained with the LSTM at this share of its lr; 0 = frozen
    training_crops: int  # crops per frame encoded for LSTM training (film: fixed crops)
    eval_crops: int  # crops per test frame sample_video.py scores
    sample_prefix: str  # sample_video.py's file names
    metrics_name: str  # sample_video.py's report: <metrics_name>.json/.csv/.png
    read_clips: Callable  # (data_path, split, n_crops=1, limit=0, max_frames=0, rng=None) -> clips (data/sequences.py)
    # (data_path, split) -> frames in the split, for a dataset read in part when longer than
    # max_frames; None: always read whole (Moving MNIST: new_sequences bounds it)
    frame_count: Optional[Callable]
    load_codec: Callable  # (encoder checkpoint, device) -> Codec (see models/codec.py)

    def lstm_defaults(self):
        """train_lstm.py's settings that follow the dataset."""
        return dict(data_path=self.data_path, vae_checkpoint=self.encoder_checkpoint,
                    checkpoint=self.lstm_checkpoint, seq_len=self.seq_len, frame_skip=self.frame_skip,
                    cell=self.cell, hidden=self.hidden, batch_size=self.batch_size, epochs=self.epochs,
                    lr=self.lr, weight_decay=self.weight_decay, loss=self.loss, train_context=self.context,
                    warp=self.warp, flow_prior=self.flow_prior, reverse=self.reverse,
                    scheduled_sampling=self.scheduled_sampling, tune_decoder=self.tune_decoder)

    def sample_defaults(self):
        """sample_video.py's settings that follow the dataset."""
        return dict(lstm_checkpoint=self.lstm_checkpoint, prefix=self.sample_prefix,
                    context=self.context, horizon=self.horizon, eval_crops=self.eval_crops)


BRANCHES = {  # the reasons for these values, and their validation scores: docs/results.md
    "mnist": Branch(name="mnist", made_by=MNIST_MADE_BY, data_path="data/moving_mnist.h5",
                    encoder_checkpoint="checkpoints/mm_vcae.pt", lstm_checkpoint="checkpoints/mm_lstm.pt",
                    seq_len=20, frame_skip=1, cell="st", hidden=52, batch_size=32, epochs=4, lr=6e-3,
                    weight_decay=0.1, loss="mse",
                    context=10, horizon=10, warp=False, flow_prior=[0.0], reverse=False,
                    scheduled_sampling=0.8, tune_decoder=0.2, training_crops=1,
                    eval_crops=1,
                    sample_prefix="mm_sample", metrics_name="metrics",
                    read_clips=mnist_clips, frame_count=None, load_codec=load_mnist_codec),
    "film": Branch(name="film", made_by=FILM_MADE_BY, data_path="data/film.h5",
                   encoder_checkpoint="checkpoints/film_vae_on_convs.pt", lstm_checkpoint="checkpoints/film_lstm.pt",
                   seq_len=10, frame_skip=3, cell="conv", hidden=64, batch_size=16, epochs=2, lr=2e-3,
                   weight_decay=0.0, loss="kl",
                   context=5, horizon=5, warp=True, flow_prior=[-0.4, 0.0, 0.4, 0.8, 1.2], reverse=True,
                   scheduled_sampling=0.0, tune_decoder=0.0, training_crops=3, eval_crops=4,
                   sample_prefix="film_sample", metrics_name="film_metrics",
                   read_clips=film_clips, frame_count=film_frame_count, load_codec=load_film_codec),
}
