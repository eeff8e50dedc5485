"""The film branch as the original built it: a CAE with a dense 512 bottleneck (three
conv layers), a dense 256-d Z from a fully connected VAE, a dense LSTM, no skip from the
last frame. Its checkpoints go to checkpoints/film_dense/, its pictures to
samples/film_dense/ (the dataset is the film branch's data/film.h5).

    python train_cae.py config/film_dense.py && python train_deconv.py config/film_dense.py
    python train_vae_on_convs.py config/film_dense.py
    python train_lstm.py config/film_dense.py && python sample_video.py config/film_dense.py
"""
dataset = "film"
out_dir = "samples/film_dense"
train_cae = dict(checkpoint="checkpoints/film_dense/cae.pt", widths=[32, 64, 64], bottleneck=512)
train_deconv = dict(cae_checkpoint="checkpoints/film_dense/cae.pt",
                    checkpoint="checkpoints/film_dense/deconv.pt")
train_vae_on_convs = dict(cae_checkpoint="checkpoints/film_dense/cae.pt",
                          deconv_checkpoint="checkpoints/film_dense/deconv.pt",
                          checkpoint="checkpoints/film_dense/vae_on_convs.pt", latent_channels=0,
                          hidden=1500)
train_lstm = dict(vae_checkpoint="checkpoints/film_dense/vae_on_convs.pt",
                  checkpoint="checkpoints/film_dense/lstm.pt", cell="dense", hidden=512,
                  layers=2, dropout=0.3, warp=False, flow_prior=[0.0], loss="mse",
                  epochs=8)
sample_video = dict(lstm_checkpoint="checkpoints/film_dense/lstm.pt")
