"""The longer Moving MNIST run: 20,000 stored sequences, a VAE on three times the frames,
a two-layer conv LSTM of 96 channels per layer trained on 20,000 new sequences every
epoch, in one cosine schedule of 18 epochs with AdamW's decoupled weight decay of 0.1:
2 h 3 min on a 2-core EPYC with AVX512-BF16, 57.7 MSE per frame (stop it at any point;
the same command with --resume=true goes on where it stopped, on the same schedule).
Its files sit beside the defaults' (data/mm_long.h5, checkpoints/long/, samples/long/).

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
                  checkpoint="checkpoints/long/mm_lstm.pt", hidden=96, layers=2, epochs=18,
                  new_sequences=20000, lr=2e-3, weight_decay=0.1)
sample_video = dict(lstm_checkpoint="checkpoints/long/mm_lstm.pt")
