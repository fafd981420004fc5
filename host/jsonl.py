"""Commands and events as JSON Lines, the human-facing form of the wire records.

The JSON keys are the record fields of :mod:`ocee.hw.protocol` and enumerations are written as
their lower-case names; both directions are derived from the codec's field tables, so a field
added to a layout appears here without more code. Parsing is strict: an unknown key, a missing
key, a value of the wrong type or one the wire field cannot carry is a :class:`CommandSyntaxError`
naming the line and the field.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from ocee.hw.protocol import (
    COMMAND_CODEC,
    EVENT_CODEC,
    BatchClosed,
    Cancel,
    CloseBatch,
    Command,
    Event,
    MassCancelAccount,
    MassCancelMarket,
    Modify,
    NewOrder,
    Opcode,
    OrderType,
    Query,
    SetWindow,
    WireField,
)

__all__ = ["EVENT_NAMES", "OP_NAMES", "CommandSyntaxError", "command_to_json", "event_to_json",
           "format_event", "parse_command", "parse_event", "read_commands", "write_events"]

#: The "op" of each command in JSON. Both mass-cancel opcodes are "mass_cancel": the presence of
#: "account" tells them apart.
OP_NAMES: dict[type[Any], str] = {
    NewOrder: "new",
    Cancel: "cancel",
    Modify: "modify",
    MassCancelAccount: "mass_cancel",
    MassCancelMarket: "mass_cancel",
    SetWindow: "set_window",
    Query: "query",
    CloseBatch: "close_batch",
}
#: A rejected event names the command's opcode (its enumeration name, which tells the two
#: mass cancels apart), or gives the raw number when the byte was no opcode at all.
_OPCODE_NAMES = {op.value: op.name.lower() for op in Opcode}

EVENT_NAMES: dict[type[Any], str] = {
    cls: ("batch" if cls is BatchClosed else cls.KIND.name.lower()) for cls in EVENT_CODEC.classes}


class CommandSyntaxError(ValueError):
    """A command line that cannot be parsed; names the line (1-based) and the field."""

    def __init__(self, line: int, field: str | None, message: str) -> None:
        self.line = line
        self.field = field
        self.message = message
        where = f"line {line}" + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")


# -- Commands -------------------------------------------------------------------------------------


def _json_fields(cls: type[Any]) -> dict[str, tuple[WireField, Any]]:
    """Each JSON key of ``cls`` with its wire field and default (MISSING when required)."""
    wire = {f.name: f for f in COMMAND_CODEC.fields(cls)[1:]}
    return {f.name: (wire[f.name], f.default) for f in dataclasses.fields(cls)}


_COMMAND_FIELDS = {cls: _json_fields(cls) for cls in COMMAND_CODEC.classes}
_MISSING = dataclasses.MISSING


def _convert(value: Any, f: WireField, line: int) -> Any:
    if f.enum is not None:
        names = {m.name.lower(): m for m in f.enum}
        if not isinstance(value, str) or value not in names:
            raise CommandSyntaxError(line, f.name, f"expected one of {', '.join(names)}, got "
                                     f"{json.dumps(value)}")
        return names[value]
    if f.is_flag:
        if not isinstance(value, bool):
            raise CommandSyntaxError(line, f.name, f"expected true or false, got {json.dumps(value)}")
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise CommandSyntaxError(line, f.name, f"expected an integer, got {json.dumps(value)}")
    if not 0 <= value < 1 << f.width:
        raise CommandSyntaxError(line, f.name, f"{value} is outside 0 .. {(1 << f.width) - 1} "
                                 f"({f.width}-bit field)")
    return value


def parse_command(obj: Any, line: int = 1) -> Command:
    """One decoded JSON value as a command."""
    if not isinstance(obj, dict):
        raise CommandSyntaxError(line, None, f"expected a JSON object, got {json.dumps(obj)[:40]}")
    if "op" not in obj:
        raise CommandSyntaxError(line, "op", "missing")
    op = obj["op"]
    cls: type[Any]
    if op == "mass_cancel":
        cls = MassCancelAccount if "account" in obj else MassCancelMarket
    else:
        matches = [c for c, name in OP_NAMES.items() if name == op]
        if not matches:
            known = ", ".join(dict.fromkeys(OP_NAMES.values()))
            raise CommandSyntaxError(line, "op", f"unknown op {json.dumps(op)} (one of {known})")
        cls = matches[0]
    fields = _COMMAND_FIELDS[cls]
    for key in obj:
        if key != "op" and key not in fields:
            raise CommandSyntaxError(line, key, f"not a field of {op!r} (fields: "
                                     f"{', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    for name, (f, default) in fields.items():
        if name in obj:
            kwargs[name] = _convert(obj[name], f, line)
        elif default is _MISSING:
            if cls is NewOrder and name == "price":
                continue  # checked below: required for limit orders only
            raise CommandSyntaxError(line, name, "missing")
    if cls is NewOrder:
        is_market = kwargs.get("type") is OrderType.MARKET
        if is_market and "price" in kwargs:
            raise CommandSyntaxError(line, "price", "a market order has no price")
        if not is_market and "price" not in kwargs:
            raise CommandSyntaxError(line, "price", "missing (a limit order needs a price)")
    command: Command = cls(**kwargs)
    return command


def read_commands(stream: Iterable[str]) -> Iterator[Command]:
    """Commands from JSON Lines; blank lines are skipped. Raises at the first bad line."""
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise CommandSyntaxError(number, None, f"not JSON: {e.msg} at column {e.colno}") from None
        yield parse_command(obj, number)


def command_to_json(command: Command) -> dict[str, Any]:
    """The JSON object of a command, leaving out fields at their defaults (but a limit order's
    price, which the reader requires, even at 0) and a market order's price (which it refuses)."""
    out: dict[str, Any] = {"op": OP_NAMES[type(command)]}
    is_market = isinstance(command, NewOrder) and command.type is OrderType.MARKET
    for name, (_, default) in _COMMAND_FIELDS[type(command)].items():
        value = getattr(command, name)
        if isinstance(command, NewOrder) and name == "price":
            leave_out = is_market  # a limit order's price is required, even at its default 0
        else:
            leave_out = default is not _MISSING and value == default
        if leave_out:
            continue
        out[name] = value.name.lower() if isinstance(value, enum.Enum) else value
    return out


# -- Events ---------------------------------------------------------------------------------------


def _event_converters(cls: type[Any]) -> list[tuple[str, str]]:
    conv = []
    for f in EVENT_CODEC.fields(cls)[1:]:
        if f.enum is not None:
            conv.append((f.name, "enum"))
        elif f.is_bytes:
            conv.append((f.name, "bytes"))
        elif cls.KIND.name == "REJECTED" and f.name == "op":
            conv.append((f.name, "op"))
        else:
            conv.append((f.name, "plain"))
    return conv


_EVENT_CONVERTERS = {cls: _event_converters(cls) for cls in EVENT_CODEC.classes}


def event_to_json(event: Event) -> dict[str, Any]:
    """The JSON object of an event: ``{"ev": ..., <fields in wire order>}``."""
    out: dict[str, Any] = {"ev": EVENT_NAMES[type(event)]}
    for name, kind in _EVENT_CONVERTERS[type(event)]:
        value = getattr(event, name)
        if kind == "enum":
            value = value.name.lower()
        elif kind == "bytes":
            value = "0x" + value.hex()
        elif kind == "op":
            value = _OPCODE_NAMES.get(value, value)
        out[name] = value
    return out


def format_event(event: Event) -> str:
    return json.dumps(event_to_json(event), separators=(",", ":"))


def write_events(events: Iterable[Event], out: IO[str]) -> None:
    out.writelines(format_event(e) + "\n" for e in events)


def parse_event(obj: Mapping[str, Any]) -> Event:
    """The inverse of :func:`event_to_json`, for test vectors and tools that read event logs."""
    names = {name: cls for cls, name in EVENT_NAMES.items()}
    cls = names[obj["ev"]]
    values: dict[str, int] = {}
    for f in EVENT_CODEC.fields(cls)[1:]:
        v = obj[f.name]
        if f.enum is not None:
            v = f.enum[v.upper()].value
        elif f.is_bytes:
            v = int.from_bytes(bytes.fromhex(v.removeprefix("0x")), "little")
        elif f.name == "op" and isinstance(v, str):
            v = next(code for code, name in _OPCODE_NAMES.items() if name == v)
        values[f.name] = int(v)
    event: Event = EVENT_CODEC.from_fields(cls, values)
    return event

