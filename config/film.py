"""The film branch: every film stage, then the LSTM and sampling on the film's Z.

    python extract_pulp_frames.py config/film.py && python train_cae.py config/film.py && \
    python train_deconv.py config/film.py && python train_vae_on_convs.py config/film.py && \
    python train_lstm.py config/film.py && python sample_video.py config/film.py
"""
dataset = "film"  # the film branch's own defaults (data/branches.py) do the rest
