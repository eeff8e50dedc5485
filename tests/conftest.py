"""Shared fixtures: a tiny Moving MNIST pipeline (data -> VAE -> LSTM) built once per session."""
import os
import subprocess
import sys

import pytest

import moving_mnist
import train_lstm
import train_vcae

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def argv(**settings):
    """{'epochs': 1} -> ['--epochs=1']"""
    return [f"--{k}={v}" for k, v in settings.items()]


def run_script(script, *args, cwd=None):
    """Run a stage script as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=600)


TINY_DATA = dict(n_train=24, n_val=8, n_test=8, seq_len=8, download=False, mnist_dir="no-such-dir",
                 chunk=10, preview_sequences=2)
TINY_VAE = dict(epochs=1, base_width=4, latent_channels=2, train_frames=96, val_frames=32, batch_size=32)
TINY_LSTM = dict(epochs=1, hidden=8, batch_size=8, seq_len=8, train_context=4)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Paths of a tiny dataset, VAE and LSTM checkpoint, made by the real scripts."""
    d = tmp_path_factory.mktemp("tiny")
    paths = {"root": d, "data": str(d / "mm.h5"), "vae": str(d / "ckpt" / "vae.pt"),
             "lstm": str(d / "ckpt" / "lstm.pt"), "out": str(d / "out")}
    moving_mnist.main(argv(out_path=paths["data"], preview_path=d / "out" / "preview.png", **TINY_DATA))
    paths["vae_model"] = train_vcae.main(argv(data_path=paths["data"], checkpoint=paths["vae"],
                                              out_dir=paths["out"], **TINY_VAE))
    paths["lstm_model"] = train_lstm.main(argv(data_path=paths["data"], vae_checkpoint=paths["vae"],
                                               checkpoint=paths["lstm"], out_dir=paths["out"],
                                               **TINY_LSTM))
    return paths
