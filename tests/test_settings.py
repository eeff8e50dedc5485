"""The shared settings parser: names and comments from the ruler block, typed overrides."""
import pytest

from tests.conftest import run_script
from utils.errors import UserError
from utils.settings import parse_settings, read_setting_block

SOURCE = '''import os
# -----------------------------------------------------------------------------
epochs = 3  # passes over the data
lr = 1e-3  # learning rate
name = "mm"  # a name
resume = False  # continue training
video = ["a.mp4"]  # one path or several
# -----------------------------------------------------------------------------
not_a_setting = 5
'''


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "stage.py"
    path.write_text(SOURCE)
    defaults = dict(epochs=3, lr=1e-3, name="mm", resume=False, video=["a.mp4"], not_a_setting=5)
    return str(path), defaults


def test_block_names_and_comments():
    block = read_setting_block(SOURCE)
    assert list(block) == ["epochs", "lr", "name", "resume", "video"]
    assert block["lr"] == "learning rate"


def test_defaults_and_both_override_forms(script):
    path, g = script
    assert parse_settings(path, g, []) == dict(epochs=3, lr=1e-3, name="mm", resume=False, video=["a.mp4"])
    cfg = parse_settings(path, g, ["--epochs=7", "--lr", "0.5", "--resume", "--name=x"])
    assert (cfg.epochs, cfg.lr, cfg.resume, cfg.name) == (7, 0.5, True, "x")
    assert isinstance(cfg.epochs, int) and isinstance(cfg.lr, float)
    assert parse_settings(path, g, ["--resume=false"]).resume is False
    assert parse_settings(path, g, ["--lr=3"]).lr == 3.0


def test_lists_take_several_values(script):
    path, g = script
    assert parse_settings(path, g, ["--video", "b.mp4", "c.mp4"]).video == ["b.mp4", "c.mp4"]
    assert parse_settings(path, g, ["--video=b.mp4,c.mp4", "--video=d.mp4"]).video == ["b.mp4", "c.mp4", "d.mp4"]


@pytest.mark.parametrize("args, message", [
    (["--epoch=2"], "unknown setting --epoch (did you mean --epochs?)"),
    (["--not_a_setting=1"], "unknown setting --not_a_setting"),
    (["--epochs=2.5"], "--epochs expects an int, got '2.5'"),
    (["--lr=fast"], "--lr expects a float, got 'fast'"),
    (["--resume=maybe"], "--resume expects true or false, got 'maybe'"),
    (["--epochs"], "--epochs needs a value"),
    (["epochs=2"], "unexpected argument 'epochs=2'"),
    (["--epochs", "1", "2"], "unexpected argument '2'"),
    (["--name=zz"], "--name must be one of mm, x; got 'zz'"),
])
def test_bad_overrides_are_one_clear_error(script, args, message):
    path, g = script
    with pytest.raises(UserError) as e:
        parse_settings(path, g, args, choices={"name": ("mm", "x")})
    assert message in str(e.value)


def test_help_lists_settings_with_defaults_and_comments(script, capsys):
    path, g = script
    with pytest.raises(SystemExit) as e:
        parse_settings(path, g, ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--epochs=3" in out and "passes over the data" in out and "not_a_setting" not in out


@pytest.mark.parametrize("script_name", ["moving_mnist.py", "train_vcae.py", "train_lstm.py",
                                         "sample_video.py"])
def test_every_script_rejects_unknown_and_mistyped_settings(script_name, tmp_path):
    unknown = run_script(script_name, "--no_such_setting=1", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: unknown setting --no_such_setting; --help lists them"]
    wrong = run_script(script_name, "--seed=abc", cwd=tmp_path)
    assert wrong.returncode == 2 and "--seed expects an int, got 'abc'" in wrong.stderr
    assert list(tmp_path.iterdir()) == []  # stopped before any work
    helped = run_script(script_name, "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "--seed=1337" in helped.stdout
