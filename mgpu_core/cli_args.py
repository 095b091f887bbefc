"""Command-line flags derived from a config dataclass: one flag per field, its docstring as help, its type as parser."""

from __future__ import annotations

import argparse
import ast
import inspect
import textwrap
import types
import typing
from dataclasses import MISSING, fields
from typing import Any, Literal


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line on stderr and exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass, whitespace collapsed (none for a class made at run
    time: its fields carry their help as metadata)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    tree = ast.parse(textwrap.dedent(source))
    body = tree.body[0].body
    docs = {}
    for stmt, nxt in zip(body, body[1:], strict=False):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _scalar_type(hint: Any) -> tuple[Any, bool]:
    """(underlying type, optional?) for hints like int, int | None, Literal[...]."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _optional(parse):
    def convert(text: str):
        return None if text.lower() == "none" else parse(text)
    convert.__name__ = parse.__name__  # argparse names the type in its error message
    return convert


def _comma_list(item_type: Any):
    """Parser for tuple[int, ...] or tuple[Literal[...], ...] flags written as 1,2,4: no blanks, no duplicates."""
    choices = typing.get_args(item_type) if typing.get_origin(item_type) is Literal else None

    def parse(text: str) -> tuple:
        items = [t.strip() for t in text.split(",")]
        if any(not t for t in items):
            raise argparse.ArgumentTypeError(f"empty item in {text!r}")
        if choices is not None:
            unknown = [t for t in items if t not in choices]
            if unknown:
                raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)} (choose from {', '.join(choices)})")
            values = items
        else:
            try:
                values = [item_type(t) for t in items]
            except ValueError:
                message = f"not a comma-separated list of {item_type.__name__}: {text!r}"
                raise argparse.ArgumentTypeError(message) from None
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"duplicate items in {text!r}")
        return tuple(values)
    return parse


def _percent(text: str) -> float:
    """A percentage on the command line, a fraction inside."""
    return float(text) / 100


_percent.__name__ = "percent"


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                         defaults: dict[str, Any] | None = None) -> None:
    """Add one --flag per dataclass field (bools get --flag / --no-flag). `defaults` overrides the dataclass's.
    Field metadata: "aliases" (older flag names still accepted), "percent" (a fraction given and shown as percent),
    "help" (where the field has no docstring)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    defaults = defaults or {}
    for f in fields(cls):
        if f.name in skip:
            continue
        own = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)  # e.g. read from the environment
        default = defaults.get(f.name, own)
        flags = [flag_name(f.name), *f.metadata.get("aliases", ())]
        kind, optional = _scalar_type(hints[f.name])
        shown = f"{default * 100:g}" if isinstance(default, float) and f.metadata.get("percent") else default
        doc = (docs.get(f.name) or f.metadata.get("help", "")).replace("%", "%%")  # argparse formats with %
        help_text = f"{doc} (default: {shown})"
        if kind is bool:
            parser.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        elif typing.get_origin(kind) is tuple:
            item = _percent if f.metadata.get("percent") else typing.get_args(kind)[0]
            if f.metadata.get("percent") and default is not None:
                help_text = f"{doc} (default: {','.join(f'{v * 100:g}' for v in default)})"
            parser.add_argument(*flags, dest=f.name, type=_comma_list(item), default=default,
                                metavar="A,B,...", help=help_text)
        elif typing.get_origin(kind) is Literal:
            parser.add_argument(*flags, dest=f.name, choices=typing.get_args(kind), default=default, help=help_text)
        else:
            parse = _percent if f.metadata.get("percent") else kind
            parse = _optional(parse) if optional else parse
            parser.add_argument(*flags, dest=f.name, type=parse, default=default,
                                metavar="PERCENT" if f.metadata.get("percent") else f.name.upper(), help=help_text)


def config_from_args(cls: type, args: argparse.Namespace, parser: argparse.ArgumentParser):
    """Build the dataclass from parsed flags; a validation error becomes a one-line usage error."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    try:
        return cls(**values)
    except ValueError as exc:
        parser.error(str(exc))


def config_to_argv(cfg: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """The flags that rebuild `cfg` through add_config_arguments (None values are left at their default)."""
    argv = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in skip or value is None:
            continue
        flag = flag_name(f.name)
        if f.metadata.get("percent"):
            argv += [flag, ",".join(f"{v * 100!r}" for v in (value if isinstance(value, tuple) else (value,)))]
        elif isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, repr(value) if isinstance(value, float) else str(value)]
    return argv
