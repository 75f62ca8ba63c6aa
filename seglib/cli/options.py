"""`train`'s options, one for every `TrainConfig` setting, derived from the dataclass: its annotations give
the type, `CHOICES` the choices, the comment beside each field the help."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import json
import textwrap
import tokenize
import types
import typing
from typing import Any

from ..engine import TrainConfig
from ..engine.config import CHOICES

# Settings whose option has another name: the original's scripts call the data root --data_path.
RENAMED = {"data_root": "data_path"}
# Settings with no `train` option, each with the reason; every other TrainConfig field has one.
NOT_OPTIONS: dict[str, str] = {}


@dataclasses.dataclass(frozen=True)
class Option:
    """One `train` option: its help section, its flag and the keywords for `add_argument`."""

    section: str
    flag: str
    kwargs: dict[str, Any]


def field_comments(cls: type) -> dict[str, tuple[str, str]]:
    """Each dataclass field's (section, trailing comment), read from the source of the class and its bases.

    The section is the comment line last seen above the field (`# data`, `# machine`). Without the
    source (a build that ships only bytecode) the result is empty and the options go without help.
    """
    found: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment wins over its base's
        if dataclasses.is_dataclass(klass):
            found.update(_class_comments(klass))
    return found


def _class_comments(cls: type) -> dict[str, tuple[str, str]]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    found: dict[str, tuple[str, str]] = {}
    section = ""
    code: list[tokenize.TokenInfo] = []  # the logical line being read
    comments: list[tokenize.TokenInfo] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments.append(tok)
        elif tok.type == tokenize.NL and not code:  # a line of only a comment, or blank
            if comments and comments[-1].start[1] == 4:  # at the class body's indentation
                section = _text(comments[-1])
            comments = []
        elif tok.type == tokenize.NEWLINE:
            # `name: type = value  # comment` in the class body (a method's locals sit deeper)
            is_field = len(code) > 1 and code[0].type == tokenize.NAME and code[1].string == ":"
            if is_field and code[0].start[1] == 4 and comments:
                found[code[0].string] = (section, _text(comments[0]))
            code, comments = [], []
        elif tok.type not in (tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            code.append(tok)
    return found


def _text(comment: tokenize.TokenInfo) -> str:
    return comment.string.lstrip("#").strip()


def train_options(config: type[TrainConfig] = TrainConfig) -> dict[str, Option]:
    """The `train` option of each `config` setting but those in NOT_OPTIONS, by setting.

    The type comes from the annotation (`X | None` reads an X: None is a profile's to give), the choices
    from `CHOICES`, the help from the field's comment. Every default is None, "the profile's value": only
    the options given become overrides.
    """
    hints = typing.get_type_hints(config)
    docs = field_comments(config)
    options = {}
    for f in dataclasses.fields(config):
        if f.name in NOT_OPTIONS:
            continue
        section, comment = docs.get(f.name, ("", ""))
        kwargs = _reader(hints[f.name], f.name)
        kwargs["help"] = help_text(f"{comment} (full: {_shown(_default(f))})".strip())
        kwargs["default"] = None
        options[f.name] = Option(section, "--" + RENAMED.get(f.name, f.name), kwargs)
    return options


def _default(f: dataclasses.Field[Any]) -> Any:
    """The setting's TrainConfig default: the "full" the help names."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"{f.name} has no default; every option's setting needs one")


def _reader(hint: Any, name: str) -> dict[str, Any]:
    """The add_argument keywords that read a value of type `hint`."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and len(args) == 2 and type(None) in args:
        hint = next(a for a in args if a is not type(None))
    if name in CHOICES:
        return {"choices": CHOICES[name]}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint in (int, float, str):
        return {"type": hint, "metavar": hint.__name__.upper()}
    if typing.get_origin(hint) is list and typing.get_args(hint) == (int,):
        return {"type": _int_list, "metavar": "N,N,..."}
    if typing.get_origin(hint) is dict:
        return {"type": _json_object, "metavar": "JSON"}
    raise TypeError(
        f"TrainConfig.{name}: no command-line reader for {hint}; add one to seglib.cli.options._reader "
        "or list the setting in seglib.cli.options.NOT_OPTIONS with the reason"
    )


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, e.g. 30,40; got {text!r}"
        ) from None


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object, e.g. '{{\"base_channels\": 16}}'; got {text!r}"
        )
    return value


def help_text(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help texts ("50% of the epochs")


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)
