"""One configuration story for every command: flags, optionally read from a YAML file (``--config``).

The YAML file holds ``flag_name: value`` pairs. Each is turned into the command-line tokens it stands
for and parsed by the command's own argparse parser, so types, choices and checks are the same as on
the command line; flags given explicitly come later and win; an unknown key is an error naming the file
and the key. A leaf module: imports nothing of the toolkit.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

import yaml

from .errors import UserError


class ConfigFileError(UserError):
    """A YAML config file that cannot be used; the message names the file and the key."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not "last wins"."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigFileError(f"key '{key}' is given twice (lines {seen[key]} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path):
    """The YAML document in ``path`` (safe types only); a duplicate key raises ``ConfigFileError``."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except ConfigFileError as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path} is not valid YAML: {exc}") from exc


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="YAML",
        help="YAML file of flag_name: value pairs (any flag below); flags given on the command line override it",
    )


def _actions_by_dest(parser: argparse.ArgumentParser) -> dict[str, list[argparse.Action]]:
    table: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help", "config"):
            table.setdefault(action.dest, []).append(action)
    return table


def _tokens_for(key: str, value, actions: list[argparse.Action], source: str) -> list[str]:
    """The command-line tokens that say ``key: value``; argparse then checks types and choices."""
    if value is None:
        return []
    flags = {a.const: a.option_strings[0] for a in actions if isinstance(a, argparse._StoreConstAction)}
    if flags:  # a boolean flag pair
        if not isinstance(value, bool):
            raise ConfigFileError(f"{source}: key '{key}' must be true or false, got {value!r}")
        if value not in flags:  # a lone store_true/store_false flag set to its default: nothing to say
            return []
        return [flags[value]]
    action = actions[0]
    if action.nargs == "?" and isinstance(value, bool):  # an optional-value flag: true = the bare flag
        return [action.option_strings[0]] if value else []
    if isinstance(value, bool):  # YAML 1.1 reads an unquoted no/yes/off/on as a boolean
        if value is False and action.choices and "no" in action.choices:
            return [action.option_strings[0], "no"]
        raise ConfigFileError(f"{source}: key '{key}' takes a value, not {str(value).lower()} (quote it)")
    if action.nargs in ("+", "*"):
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ConfigFileError(f"{source}: key '{key}' must not be an empty list")
        return [action.option_strings[0], *map(str, values)]
    if isinstance(value, (list, dict)):
        raise ConfigFileError(f"{source}: key '{key}' takes one value, got {value!r}")
    return [action.option_strings[0], str(value)]


def _check_tokens(parser: argparse.ArgumentParser, key: str, tokens: list[str], source: str) -> None:
    """Parse one key's tokens alone so that a bad value is reported with the file and key."""

    def fail(message: str):
        raise ConfigFileError(f"{source}: key '{key}': {message}")

    # Other required flags may come from elsewhere in the file or the command line: not this check's job.
    required = [a for a in [*parser._actions, *parser._mutually_exclusive_groups] if a.required]
    original, parser.error = parser.error, fail
    for item in required:
        item.required = False
    try:
        parser.parse_args(tokens)
    finally:
        parser.error = original
        for item in required:
            item.required = True


def config_file_tokens(parser: argparse.ArgumentParser, path: str | Path) -> list[str]:
    """Command-line tokens equivalent to the YAML file ``path``; raises ``ConfigFileError``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(f"config file {path} does not exist")
    values = load_yaml(path)
    if values is None:
        return []
    if not isinstance(values, dict):
        raise ConfigFileError(f"{path}: expected a mapping of flag_name: value, got {type(values).__name__}")
    known = _actions_by_dest(parser)
    tokens: list[str] = []
    for key, value in values.items():
        key = str(key)
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigFileError(f"{path}: unknown key '{key}'{hint}")
        key_tokens = _tokens_for(key, value, known[key], str(path))
        _check_tokens(parser, key, key_tokens, str(path))
        tokens += key_tokens
    return tokens


def _given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The dests of the flags written in ``argv`` (abbreviations are off, so the spelling is exact)."""
    written = {token.split("=", 1)[0] for token in argv if token.startswith("--")}
    return {a.dest for a in parser._actions if written & set(a.option_strings)}


def _errors_name_the_file(parser: argparse.ArgumentParser, origins: dict[str, str]) -> None:
    """Checks made after parsing (``--rank must be >= 1``) name the file and key a bad value came from."""
    report = parser.error

    def error(message: str):
        sources = [origins[flag] for flag in dict.fromkeys(re.findall(r"--[A-Za-z0-9_]+", message)) if flag in origins]
        report(message + "".join(f" (from {source})" for source in sources))

    parser.error = error


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """A flag error is one line naming the flag, then a pointer to --help: argparse's default puts the whole
    usage block (some 70 lines for the trainers) before it, where the message is easy to miss."""

    def error(message: str):
        parser.exit(2, f"{parser.prog}: error: {message} (--help lists every flag)\n")

    parser.error = error  # type: ignore[method-assign]


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` over the values of ``--config`` (if given): explicit flags win.

    ``--config`` may be given once; a later ``parser.error`` about a flag whose value came from the file
    names the file and the key.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    _one_line_errors(parser)
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", action="append")
    known, _ = pre.parse_known_args(argv)
    tokens: list[str] = []
    if known.config and len(known.config) > 1:
        parser.error(
            f"--config is given {len(known.config)} times ({', '.join(known.config)}): give one file "
            f"(flags after it override its values)"
        )
    config = known.config[0] if known.config else None
    if config:
        try:
            tokens = config_file_tokens(parser, config)
        except ConfigFileError as exc:
            parser.error(str(exc))
    args = parser.parse_args(tokens + argv)
    args.config = config
    if config:
        from_file = _given_flags(parser, tokens) - _given_flags(parser, argv)
        _errors_name_the_file(
            parser,
            {
                flag: f"{config}, key '{a.dest}'"
                for a in parser._actions
                if a.dest in from_file
                for flag in a.option_strings
            },
        )
    return args


def add_bool_flag(group, name: str, help: str, default: bool | None = False) -> None:
    """``--name`` turns the option on, ``--no_name`` off: a config file's ``name: true`` can be switched off."""
    group.add_argument(f"--{name}", dest=name, action="store_true", default=default, help=help)
    group.add_argument(f"--no_{name}", dest=name, action="store_false", default=default, help=argparse.SUPPRESS)
