"""Moving MNIST at the sizes a GPU affords: more stored sequences, the VAE on every
training frame, a wider two-layer conv LSTM on new sequences every epoch.
Not yet measured. Its files: data/mm_gpu.h5, checkpoints/gpu/, samples/gpu/.

    python moving_mnist.py config/gpu.py
    python train_vcae.py config/gpu.py
    python train_lstm.py config/gpu.py
    python sample_video.py config/gpu.py
"""
data_path = "data/mm_gpu.h5"
out_dir = "samples/gpu"
moving_mnist = dict(n_train=20000, out_path="data/mm_gpu.h5",
                    preview_path="samples/gpu/moving_mnist_preview.png")
train_vcae = dict(checkpoint="checkpoints/gpu/mm_vcae.pt", train_frames=0, epochs=10,
                  base_width=64)
train_lstm = dict(vae_checkpoint="checkpoints/gpu/mm_vcae.pt",
                  checkpoint="checkpoints/gpu/mm_lstm.pt", cell="conv", hidden=256, layers=2, epochs=200,
                  batch_size=64, new_sequences=20000, lr=2e-3)
sample_video = dict(lstm_checkpoint="checkpoints/gpu/mm_lstm.pt")
