"""Settings: plain module-level variables between two ruler comments, overridable
from the shell.

A stage script starts like this::

    # -----------------------------------------------------------------------------
    batch_size = 128  # frames per batch
    lr = 1e-3         # Adam learning rate
    # -----------------------------------------------------------------------------

and its ``main(argv)`` calls ``parse_settings(__file__, globals(), argv)``. That reads
the names (and the comments, for ``--help``) from the source between the rulers, takes
the defaults from the module's own values, and applies ``--name=value`` or
``--name value`` overrides, checking each name and type. Nothing is exec'd; the
module's globals are left untouched, the overrides live in the returned Settings.
"""
import ast
import difflib
import io
import re
import sys
import tokenize

from utils.errors import UserError

RULER = re.compile(r"^# -{20,}\s*$")
TRUE_WORDS = {"true", "yes", "on", "1"}
FALSE_WORDS = {"false", "no", "off", "0"}


class Settings(dict):
    """A dict of setting name -> value, also readable and writable as attributes (``cfg.lr``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
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


def format_help(script, spec, defaults):
    rows = [(f"--{name}={defaults[name]!r}" if not isinstance(defaults[name], list)
             else f"--{name}={','.join(map(str, defaults[name]))}", comment)
            for name, comment in spec.items()]
    width = max(len(r[0]) for r in rows) + 2
    out = [f"usage: python {script} [--name=value | --name value ...]", "",
           "settings (edit them at the top of the script, or override here):"]
    out += [f"  {flag.ljust(width)}{comment}" for flag, comment in rows]
    return "\n".join(out)


def parse_settings(script_path, module_globals, argv=None, choices=None):
    """Read the settings block of ``script_path`` and apply the overrides in ``argv``.

    Args:
        script_path: the stage script's ``__file__``.
        module_globals: its ``globals()``, holding the default values.
        argv: shell arguments (``None`` means ``sys.argv[1:]``).
        choices: optional {name: allowed values} for settings with a fixed set.
    Returns:
        Settings with every setting's value.
    Raises:
        UserError for an unknown name, a missing value, a wrong type or a bad choice;
        SystemExit(0) after printing the list for ``--help``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    choices = choices or {}
    with open(script_path, encoding="utf-8") as f:
        spec = read_setting_block(f.read())
    defaults = {name: module_globals[name] for name in spec}
    cfg = Settings({k: (list(v) if isinstance(v, list) else v) for k, v in defaults.items()})
    overridden = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(format_help(script_path.rsplit("/", 1)[-1], spec, defaults))
            raise SystemExit(0)
        if not arg.startswith("--") or arg == "--":
            raise UserError(f"unexpected argument {arg!r}: give settings as --name=value "
                            "(see --help)")
        name, has_eq, text = arg[2:].partition("=")
        name = name.replace("-", "_")
        if name not in spec:
            close = difflib.get_close_matches(name, spec, n=1)
            hint = f" (did you mean --{close[0]}?)" if close else ""
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
            items = [convert(name, part, item_default)
                     for v in values for part in v.split(",") if part != ""]
            cfg[name] = (cfg[name] if name in overridden else []) + items
        else:
            if len(values) > 1:
                raise UserError(f"--{name} takes one value, got {values}")
            cfg[name] = convert(name, values[0], default)
        overridden.add(name)
        i += 1
    for name, allowed in choices.items():
        picked = cfg[name] if isinstance(cfg[name], list) else [cfg[name]]
        for value in picked:
            if value not in allowed:
                raise UserError(f"--{name} must be one of {', '.join(map(str, allowed))}; "
                                f"got {value!r}")
    return cfg
