"""Moving Fashion-MNIST: the earlier Quick start's sizes and settings (without scheduled
sampling) on Fashion-MNIST's 60,000 training and 10,000 test images (two bouncing clothing
items per sequence instead of two digits). Its files: data/moving_fashion.h5,
checkpoints/fashion/, samples/fashion/. The idx files come from Debian's
dataset-fashion-mnist package (or the Fashion-MNIST repository, into mnist_dir).

    python moving_mnist.py config/fashion.py
    python train_vcae.py config/fashion.py
    python train_lstm.py config/fashion.py
    python sample_video.py config/fashion.py
"""
data_path = "data/moving_fashion.h5"
out_dir = "samples/fashion"
# 10,000 stored sequences, a VAE of 4 epochs, a conv LSTM of 64 channels for 8 epochs at 2e-3 with plain Adam,
# the VAE's decoder left as it was trained
moving_mnist = dict(digit_set="fashion", n_train=10000, mnist_dir="/usr/share/datasets/fashion-mnist",
                    out_path="data/moving_fashion.h5",
                    preview_path="samples/fashion/moving_mnist_preview.png")
train_vcae = dict(checkpoint="checkpoints/fashion/mm_vcae.pt", epochs=4)
train_lstm = dict(vae_checkpoint="checkpoints/fashion/mm_vcae.pt",
                  checkpoint="checkpoints/fashion/mm_lstm.pt", cell="conv", hidden=64, epochs=8, lr=2e-3,
                  weight_decay=0.0, scheduled_sampling=0.0, tune_decoder=0.0)
sample_video = dict(lstm_checkpoint="checkpoints/fashion/mm_lstm.pt")
