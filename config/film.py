"""The film branch: every film stage, then the LSTM and sampling on the film's Z.

    python extract_pulp_frames.py config/film.py && python train_cae.py config/film.py && \
    python train_deconv.py config/film.py && python train_vae_on_convs.py config/film.py && \
    python train_lstm.py config/film.py && python sample_video.py config/film.py
"""
dataset = "film"
# measured on the bundled clips (the film branch predicts by warping the last frame): 2 epochs
# with the KL loss on Z score best; 4 epochs, or mirrored and reversed windows (augment), fit
# the training shots' motion more and the test's less
train_lstm = dict(loss="kl", epochs=2)
