"""Settings: plain module-level variables between two ruler comments, overridable from
presets and from the shell.

A stage script starts like this::

    # -----------------------------------------------------------------------------
    batch_size = 128  # frames per batch [1, inf)
    lr = 1e-3         # Adam learning rate (0, inf)
    # -----------------------------------------------------------------------------

and its ``main(argv)`` calls ``parse_settings(__file__, globals(), argv)``. That reads
the names (and the comments, for ``--help``) from the source between the rulers, takes
the defaults from the module's own values, and applies, in order:

1. presets: ``python train_lstm.py config/film.py`` or ``--config=config/film.py``;
2. ``--name=value`` or ``--name value`` overrides.

A comment that ends in an interval (``[1, inf)``, ``[0, 1)``, ``(0, inf)``) declares the
setting's range, checked here for every value however it was given.

A preset is a file of plain ``name = value`` lines with literal values, read with
``ast`` (nothing is executed). One preset describes a whole run: a top-level name
applies to every stage script that has that setting, and ``train_lstm = dict(...)``
applies its entries to ``train_lstm.py`` alone. A name no stage script knows is an error.
"""
import ast
import difflib
import glob
import io
import math
import os
import re
import sys
import time
import tokenize

from utils.errors import UserError

RULER = re.compile(r"^# -{20,}\s*$")
TRUE_WORDS = {"true", "yes", "on", "1"}
FALSE_WORDS = {"false", "no", "off", "0"}
NUMBER = r"-?(?:inf|\d+(?:\.\d*)?(?:e-?\d+)?)"
INTERVAL = re.compile(rf"([\[(])\s*({NUMBER})\s*,\s*({NUMBER})\s*([\])])\s*$")


class Settings(dict):
    """A dict of setting name -> value, also readable and writable as attributes (``cfg.lr``).

    ``presets`` (an attribute, not a setting) lists the preset files that were applied;
    ``given``, the names a preset or the shell set (the rest hold their defaults);
    ``started``, when the settings were read (the stage's start, for its recorded time)."""

    presets = ()
    given = frozenset()
    started = 0.0

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        if name in ("presets", "given", "started"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value


def read_setting_block(source):
    """Names and comments of the settings between the first two ruler lines.

    Returns an ordered dict {name: comment}.
    """
    lines = source.splitlines()
    rulers = [i + 1 for i, line in enumerate(lines) if RULER.match(line)]
    if len(rulers) < 2:
        raise ValueError("a settings block needs two ruler comments ('# ' and 20+ dashes)")
    first, last = rulers[0], rulers[1]
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and first < tok.start[0] < last:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    names = {}
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and first < node.lineno < last
                and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            names[node.targets[0].id] = comments.get(node.lineno, "")
    return names


def read_script_settings(path):
    with open(path, encoding="utf-8") as f:
        return read_setting_block(f.read())


def stage_settings(folder):
    """{script stem: {setting: comment}} for every stage script (a top-level .py file
    with a settings block) in ``folder``."""
    stages = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.py"))):
        try:
            stages[os.path.splitext(os.path.basename(path))[0]] = read_script_settings(path)
        except ValueError:
            continue
    return stages


def value_range(comment):
    """(low, low_closed, high, high_closed) from an interval at the end of a comment, or None."""
    m = INTERVAL.search(comment)
    if not m:
        return None
    return float(m.group(2)), m.group(1) == "[", float(m.group(3)), m.group(4) == "]"


def _type_name(value):
    return {bool: "true or false", int: "an int", float: "a float", str: "a string"}.get(
        type(value), type(value).__name__)


def convert(name, text, default):
    """Turn the shell text for setting ``name`` into the type of its default."""
    if isinstance(default, bool):
        word = text.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise UserError(f"--{name} expects {_type_name(default)}, got {text!r}")
    if isinstance(default, (int, float)):
        kind = type(default)
        try:
            return kind(text)
        except ValueError:
            raise UserError(f"--{name} expects {_type_name(default)}, got {text!r}") from None
    if isinstance(default, str):
        return text
    raise TypeError(f"setting {name} has a default of unsupported type {type(default).__name__}")


def check_value(name, value, default, where):
    """A preset's literal ``value`` for setting ``name``, checked against the default's type."""
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)):
            value = [value]
        item = default[0] if default else value[0] if value else ""
        return [check_value(name, v, item, where) for v in value]
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise UserError(f"{where}: {name} = {value!r} should be {_type_name(default)}")
    return value


def check_range(name, value, comment):
    bounds = value_range(comment)
    if bounds is None:
        return
    low, low_closed, high, high_closed = bounds
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        inside = (not math.isnan(v) and (v >= low if low_closed else v > low)
                  and (v <= high if high_closed else v < high))
        if not inside:
            shown = INTERVAL.search(comment).group(0).strip()
            raise UserError(f"--{name} must be in {shown}, got {v!r}")


def read_preset(path, script, spec, folder):
    """The settings a preset file gives ``script`` (a stem such as ``train_lstm``).

    Checks every name against every stage script in ``folder`` and every value's type
    against this script's defaults; returns {name: literal value} for this script."""
    if not os.path.isfile(path):
        raise UserError(f"no preset file at {path}: presets live in config/ (ls config)")
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (SyntaxError, UnicodeDecodeError) as e:
        raise UserError(f"preset {path} is not plain 'name = value' lines: {e}") from None
    stages = stage_settings(folder)
    known = {name for names in stages.values() for name in names}
    mine, scoped = {}, {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise UserError(f"{path}, line {node.lineno}: a preset holds only 'name = value' lines")
        name = node.targets[0].id
        if _is_dict_call(node.value):
            value = _dict_entries(node.value, path)
        else:
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise UserError(f"{path}, line {node.lineno}: the value of {name} is not a literal "
                                "(numbers, strings, True/False, lists, dict(...))") from None
        if isinstance(value, dict) or name in stages:
            if name not in stages:
                raise UserError(f"{path}, line {node.lineno}: {name} = dict(...) names no stage script")
            entries = value
            if not isinstance(entries, dict):
                raise UserError(f"{path}, line {node.lineno}: {name} should be dict(setting=value, ...)")
            for key in entries:
                if key not in stages[name]:
                    raise UserError(f"{path}: {name}.py has no setting {key!r}"
                                    f"{_did_you_mean(key, stages[name])}")
            if name == script:
                scoped.update(entries)
            continue
        if name not in known:
            raise UserError(f"{path}, line {node.lineno}: no stage script has a setting {name!r}"
                            f"{_did_you_mean(name, known)}")
        if name in spec:
            mine[name] = value
    mine.update(scoped)
    return mine


def _is_dict_call(node):
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict"
            and not node.args)


def _dict_entries(node, path):
    try:
        return {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
    except ValueError:
        raise UserError(f"{path}, line {node.lineno}: dict(...) entries must be literals") from None


def _did_you_mean(name, names):
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def format_help(script, spec, cfg, derived_names, presets):
    def shown(value):
        return ",".join(map(str, value)) if isinstance(value, list) else repr(value)
    rows = [(f"--{name}={shown(cfg[name])}", ("* " if name in derived_names else "") + comment)
            for name, comment in spec.items()]
    width = max(len(r[0]) for r in rows) + 2
    out = [f"usage: python {script} [preset.py ...] [--name=value | --name value ...]", "",
           "settings (edit them at the top of the script, set them in a preset, or override here)"
           + (f"; presets applied: {', '.join(presets)}" if presets else "") + ":"]
    out += [f"  {flag.ljust(width)}{comment}" for flag, comment in rows]
    if derived_names:
        out += ["", "* follows the choices above it (shown here for the current ones); "
                "give it to fix it"]
    return "\n".join(out)


def parse_settings(script_path, module_globals, argv=None, choices=None, derived=None):
    """Read the settings block of ``script_path``, apply presets and ``argv`` overrides.

    Args:
        script_path: the stage script's ``__file__``.
        module_globals: its ``globals()``, holding the default values.
        argv: shell arguments (``None`` means ``sys.argv[1:]``): preset files first
            (``config/x.py`` or ``--config=config/x.py``), then ``--name=value``.
        choices: optional {name: allowed values} for settings with a fixed set.
        derived: optional function(settings) -> {name: value}: defaults that follow a
            choice (e.g. the dataset's own sequence length, from its record in
            data/branches.py); applied once, to every name the presets and the shell left alone.
    Returns:
        Settings with every setting's value; ``.presets`` lists the presets applied.
    Raises:
        UserError for an unknown name, a missing value, a wrong type, a value out of its
        range or a bad choice; SystemExit(0) after printing the list for ``--help``.
    """
    started = time.time()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    choices = choices or {}
    script = os.path.basename(script_path)
    folder = os.path.dirname(os.path.abspath(script_path))
    spec = read_script_settings(script_path)
    defaults = {name: module_globals[name] for name in spec}
    cfg = Settings({k: (list(v) if isinstance(v, list) else v) for k, v in defaults.items()})
    given, from_shell, presets, want_help = set(), set(), [], False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            want_help = True
            i += 1
            continue
        preset = arg[len("--config="):] if arg.startswith("--config=") else (
            arg if not arg.startswith("-") and arg.endswith(".py") else None)
        if preset is None and arg == "--config" and i + 1 < len(argv):
            preset, i = argv[i + 1], i + 1
        if preset is not None:
            if from_shell:
                raise UserError(f"give the preset {preset} before any --name=value override")
            for name, value in read_preset(preset, os.path.splitext(script)[0], spec, folder).items():
                cfg[name] = check_value(name, value, defaults[name], preset)
                given.add(name)
            presets.append(preset)
            i += 1
            continue
        if not arg.startswith("--") or arg == "--":
            raise UserError(f"unexpected argument {arg!r}: give settings as --name=value "
                            "(see --help)")
        name, has_eq, text = arg[2:].partition("=")
        name = name.replace("-", "_")
        if name not in spec:
            hint = _did_you_mean(name, spec).replace("(did you mean ", "(did you mean --")
            raise UserError(f"unknown setting --{name}{hint}; --help lists them")
        default = defaults[name]
        values = [text] if has_eq else []
        # --name value [value ...]: lists take every following value, others one
        while i + 1 < len(argv) and not argv[i + 1].startswith("--") and (
                not values or isinstance(default, list)):
            values.append(argv[i + 1])
            i += 1
        if not values:
            if isinstance(default, bool):
                values = ["true"]
            else:
                raise UserError(f"--{name} needs a value, e.g. --{name}={default!r}")
        if isinstance(default, list):
            item_default = default[0] if default else ""
            # commas separate values; a backslash keeps one in a value (a path with a comma)
            items = [convert(name, part.replace("\\,", ","), item_default)
                     for v in values for part in re.split(r"(?<!\\),", v) if part != ""]
            if not items:
                raise UserError(f"--{name} needs at least one value, e.g. --{name}="
                                f"{','.join(map(str, default))}")
            # repeated flags add up; a preset's list is replaced
            cfg[name] = (cfg[name] if name in from_shell else []) + items
        else:
            if len(values) > 1:
                raise UserError(f"--{name} takes one value, got {values}")
            cfg[name] = convert(name, values[0], default)
        given.add(name)
        from_shell.add(name)
        i += 1
    check_choices(cfg, choices)  # before the derived defaults, which look choices up
    # defaults that follow a choice (the dataset's record): one pass, they follow nothing else
    derived_names = set()
    for name, value in (derived(cfg) if derived else {}).items():
        if name not in given:
            cfg[name] = value
            derived_names.add(name)
    cfg.presets = list(presets)
    cfg.given = frozenset(given)
    cfg.started = started
    if want_help:
        print(format_help(script, spec, cfg, derived_names, presets))
        raise SystemExit(0)
    for name, comment in spec.items():
        check_range(name, cfg[name], comment)
    check_choices(cfg, choices)
    return cfg


def check_choices(cfg, choices):
    for name, allowed in choices.items():
        picked = cfg[name] if isinstance(cfg[name], list) else [cfg[name]]
        for value in picked:
            if value not in allowed:
                raise UserError(f"--{name} must be one of {', '.join(map(str, allowed))}; "
                                f"got {value!r}")

