"""The film branch trained on three of the bundled clips (bikes and both carphone clips)
and scored on the fourth, Big Buck Bunny, which no stage sees before sample_video.py: the
same settings as config/film.py. Its files: data/film_3clips.h5 (training), data/film_bbb.h5
(Big Buck Bunny, all but its first 1% scored), checkpoints/film_heldout/,
samples/film_heldout/.

    python extract_pulp_frames.py config/film_heldout.py
    python extract_pulp_frames.py config/film_heldout.py --video=bigbuckbunny.mp4 --test_fraction=0.99 --val_fraction=0 --out_path=data/film_bbb.h5 --preview_path=samples/film_heldout/preview_bbb.png
    python train_cae.py config/film_heldout.py && python train_deconv.py config/film_heldout.py
    python train_vae_on_convs.py config/film_heldout.py && python train_lstm.py config/film_heldout.py
    python sample_video.py config/film_heldout.py
"""
dataset = "film"
data_path = "data/film_3clips.h5"
out_dir = "samples/film_heldout"
extract_pulp_frames = dict(video=["bikes.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4"],
                           out_path="data/film_3clips.h5", preview_path="samples/film_heldout/preview.png")
train_cae = dict(checkpoint="checkpoints/film_heldout/cae.pt")
train_deconv = dict(cae_checkpoint="checkpoints/film_heldout/cae.pt",
                    checkpoint="checkpoints/film_heldout/deconv.pt")
train_vae_on_convs = dict(cae_checkpoint="checkpoints/film_heldout/cae.pt",
                          deconv_checkpoint="checkpoints/film_heldout/deconv.pt",
                          checkpoint="checkpoints/film_heldout/vae_on_convs.pt")
train_lstm = dict(vae_checkpoint="checkpoints/film_heldout/vae_on_convs.pt",
                  checkpoint="checkpoints/film_heldout/lstm.pt", loss="kl", epochs=2)
sample_video = dict(lstm_checkpoint="checkpoints/film_heldout/lstm.pt", data_path="data/film_bbb.h5")
