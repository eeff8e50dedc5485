"""The longer Moving MNIST run: 20,000 stored sequences, a VAE on three times the frames,
PredRNN's spatiotemporal LSTM (two layers of 64 channels) trained on 20,000 new sequences
every epoch, in one cosine schedule of 10 epochs to a peak lr of 4e-3, with AdamW's
decoupled weight decay of 0.1, scheduled sampling over the first 80% of its steps and a
copy of the VAE's decoder trained on with it (the default tune_decoder, 0.2): 54.8 MSE per
frame (54.0 on val; 56.5 on val with the decoder frozen), the four stages in 1 h 12 min on
a 2-core Zen 5 EPYC with AVX512-BF16 (LSTM epochs of 372-429 s). On a Zen 4 EPYC the
preset before scheduled sampling and the trained decoder took 2 h 15 min (61.7; LSTM
epochs of 675-766 s); scheduled sampling adds no work and the decoder makes a step 1.04x
as costly, so about 2 h 20 min there. The cell, its size, the rate and the decoder were chosen
on val at these sizes (docs/results.md); ten epochs are what fits 2.5 hours on the Zen 4.
Stop it at any point; the same command with --resume=true goes on where it stopped, on
the same schedule. Its files sit beside the defaults' (data/mm_long.h5,
checkpoints/long/, samples/long/).

    python moving_mnist.py config/mm_long.py
    python train_vcae.py config/mm_long.py
    python train_lstm.py config/mm_long.py
    python sample_video.py config/mm_long.py
"""
data_path = "data/mm_long.h5"
out_dir = "samples/long"
moving_mnist = dict(n_train=20000, out_path="data/mm_long.h5",
                    preview_path="samples/long/moving_mnist_preview.png")
train_vcae = dict(checkpoint="checkpoints/long/mm_vcae.pt", train_frames=120000, epochs=4)
train_lstm = dict(vae_checkpoint="checkpoints/long/mm_vcae.pt",
                  checkpoint="checkpoints/long/mm_lstm.pt", cell="st", hidden=64, layers=2,
                  epochs=10, new_sequences=20000, lr=4e-3, weight_decay=0.1, scheduled_sampling=0.8)
sample_video = dict(lstm_checkpoint="checkpoints/long/mm_lstm.pt")
