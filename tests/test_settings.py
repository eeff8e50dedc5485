"""The shared settings parser: names and comments from the ruler block, typed overrides,
presets, declared ranges and defaults that follow the dataset."""
import glob
import importlib
import os
import re

import pytest

from tests.conftest import ROOT, run_script
from utils.errors import UserError
from utils.settings import parse_settings, read_preset, read_script_settings, read_setting_block

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


PRESETS = sorted(glob.glob(os.path.join(ROOT, "config", "*.py")))
STAGES = ["moving_mnist", "extract_pulp_frames", "train_vcae", "train_cae", "train_deconv",
          "train_vae_on_convs", "train_lstm", "sample_video"]


@pytest.mark.parametrize("preset", PRESETS, ids=os.path.basename)
def test_every_preset_parses_and_names_only_known_settings(preset):
    assert len(PRESETS) >= 3
    applied = 0
    for stem in STAGES:
        module = importlib.import_module(stem)
        spec = read_script_settings(module.__file__)
        given = read_preset(preset, stem, spec, ROOT)
        cfg = parse_settings(module.__file__, vars(module), [preset])
        assert cfg.presets == [preset]
        assert all(cfg[name] == (list(value) if isinstance(value, tuple) else value) for name, value in given.items())
        applied += len(given)
    assert applied > 0  # a preset that sets nothing anywhere is a mistake


def test_preset_scopes_order_and_errors(tmp_path):
    import train_lstm
    import train_vcae
    preset = tmp_path / "run.py"
    preset.write_text('"""A run."""\nprecision = "bfloat16"\nepochs = 3\n'
                      'train_lstm = dict(epochs=5, hidden=96, lr=1)\n')
    lstm = parse_settings(train_lstm.__file__, vars(train_lstm), [str(preset), "--hidden=7"])
    assert (lstm.precision, lstm.epochs, lstm.hidden, lstm.lr) == ("bfloat16", 5, 7, 1.0)
    assert isinstance(lstm.lr, float)
    vae = parse_settings(train_vcae.__file__, vars(train_vcae), [f"--config={preset}"])
    assert (vae.precision, vae.epochs) == ("bfloat16", 3)  # the train_lstm entries stay there
    film = train_lstm.read_settings(["--dataset=film"])
    assert (film.seq_len, film.frame_skip, film.data_path) == (10, 3, "data/film.h5")
    bad = {"unknown.py": ("epochz = 3\n", "no stage script has a setting 'epochz' (did you mean epochs?)"),
           "scoped.py": ("train_vcae = dict(hidden=3)\n", "train_vcae.py has no setting 'hidden'"),
           "typed.py": ("epochs = 'many'\n", "epochs = 'many' should be an int"),
           "code.py": ("import os\n", "a preset holds only 'name = value' lines"),
           "call.py": ("epochs = len('ab')\n", "the value of epochs is not a literal")}
    for name, (text, message) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError) as e:
            parse_settings(train_lstm.__file__, vars(train_lstm), [str(tmp_path / name)])
        assert message in str(e.value)
    with pytest.raises(UserError, match="give the preset .* before any --name=value"):
        parse_settings(train_lstm.__file__, vars(train_lstm), ["--epochs=2", str(preset)])
    with pytest.raises(UserError, match="no preset file at"):
        parse_settings(train_lstm.__file__, vars(train_lstm), [str(tmp_path / "none.py")])


@pytest.mark.parametrize("args, message", [
    (["--lr=-1"], "--lr must be in (0, inf), got -1.0"),
    (["--lr=nan"], "--lr must be in (0, inf), got nan"),
    (["--dropout=1.5"], "--dropout must be in [0, 1), got 1.5"),
    (["--hidden=-5"], "--hidden must be in [1, inf), got -5"),
    (["--components=0"], "--components must be in [1, inf), got 0"),
    (["--seq_len=1"], "--seq_len must be in [2, inf), got 1"),
])
def test_ranges_declared_beside_each_setting_are_checked(args, message):
    import train_lstm
    with pytest.raises(UserError) as e:
        parse_settings(train_lstm.__file__, vars(train_lstm), args)
    assert message in str(e.value)


def test_help_shows_real_values_and_marks_those_that_follow_the_dataset(capsys):
    import train_lstm
    with pytest.raises(SystemExit):
        train_lstm.read_settings(["--dataset=film", "--help"])
    out = capsys.readouterr().out
    assert "--seq_len=10" in out and "--frame_skip=3" in out and "--hidden=" in out
    assert "--warp=True " in out and "--data_path='data/film.h5' " in out  # the film's values, not the script's
    assert "* frames per training window" in out and "* the dataset" in out
    assert "* loss curves go here" not in out  # what does not follow the dataset is not marked


def test_list_values_split_at_commas_unless_escaped_and_are_never_empty(script):
    path, g = script
    assert parse_settings(path, g, ["--video=a\\,b.mp4,c.mp4"]).video == ["a,b.mp4", "c.mp4"]
    assert parse_settings(path, g, ["--video", "x,y.mp4"]).video == ["x", "y.mp4"]
    with pytest.raises(UserError, match="--video needs at least one value"):
        parse_settings(path, g, ["--video="])


def test_lstm_defaults_follow_the_dataset_record_unless_given():
    import train_lstm
    from data.branches import BRANCHES
    parse = train_lstm.read_settings
    for name in ("mnist", "film"):  # every value in the record reaches the script, and only there
        cfg = parse([f"--dataset={name}"])
        record = BRANCHES[name].lstm_defaults()
        assert {k: cfg[k] for k in record} == record
    given = parse(["--dataset=film", "--lr=1e-3", "--epochs=3", "--cell=st"])
    assert (given.epochs, given.lr, given.cell, given.hidden) == (3, 1e-3, "st", 64)
    # a preset's value wins over the dataset's default too
    assert parse(["config/mm_long.py"]).lr == 4e-3
    assert parse(["config/mm_long.py", "--weight_decay=0"]).weight_decay == 0
    # the film preset is the film branch: --dataset=film trains the same model
    assert dict(parse(["config/film.py"])) == dict(parse(["--dataset=film"]))


@pytest.mark.parametrize("args, message", [
    (["--dataset=film", "--cell=dense"], "--warp predicts flows on a spatial Z"),
    (["--dataset=film", "--skip=true"], "--skip decodes predicted Z, which --warp does not"),
    (["--dataset=film", "--pixel_frames=2"], "leave --pixel_frames out with --warp"),
    (["--flow_prior=0.3"], "use it with --warp=true"),
    (["--dataset=film", "--train_context=1"], "--train_context of 2 or more"),
    (["--components=3"], "--components sizes the mixture of --loss=mdn, not --loss=mse"),
    (["--dataset=film", "--new_sequences=10"], "use it with --dataset=mnist"),
    (["--train_context=20"], "must be below --seq_len 20"),
    (["--scheduled_sampling=0.5", "--rollout=false"], "use it with --rollout=true"),
    (["--dataset=film", "--tune_decoder=0.2"], "trains Moving MNIST's VAE decoder further"),
    (["--pixel_frames=0", "--tune_decoder=0.2"], "--pixel_frames=0 does not score: use --tune_decoder=0"),
])
def test_settings_that_would_do_nothing_are_an_error_before_any_work(args, message):
    import train_lstm
    with pytest.raises(UserError, match=re.escape(message)):
        train_lstm.read_settings(args)
    train_lstm.read_settings(["--loss=mdn", "--components=3"])  # where it does something, it is fine


def test_setting_comments_are_short_and_hold_no_scores():
    for stem in STAGES:
        for name, comment in read_script_settings(importlib.import_module(stem).__file__).items():
            assert len(comment) <= 110, f"{stem}.{name}: {len(comment)} characters"
