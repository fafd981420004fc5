"""JSON Lines: the issue's examples, defaults, strict errors naming line and field."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.host.jsonl import (
    CommandSyntaxError,
    command_to_json,
    parse_command,
    read_commands,
)
from ocee.hw.protocol import (
    COMMAND_CODEC,
    CloseBatch,
    Command,
    MassCancelAccount,
    MassCancelMarket,
    Modify,
    NewOrder,
    OrderType,
    Query,
    SetWindow,
    Side,
    StpMode,
    TimeInForce,
)


def test_issue_examples() -> None:
    lines = [
        '{"op":"new","market":0,"id":17,"account":3,"side":"buy","type":"limit","price":150,'
        '"qty":5,"tif":"gtc","post_only":false,"stp":"cancel_taker"}',
        '{"op":"cancel","market":0,"id":17}',
        '{"op":"modify","market":0,"id":17,"qty":3}',
        '{"op":"mass_cancel","market":0,"account":3}',
        '{"op":"mass_cancel","market":1}',
        '{"op":"set_window","market":0,"lowest":100}',
        '{"op":"query","market":0}',
        '{"op":"close_batch"}',
    ]
    got = list(read_commands(io.StringIO("\n".join(lines) + "\n\n")))
    assert got[0] == NewOrder(market=0, id=17, account=3, side=Side.BUY, price=150, qty=5,
                              stp=StpMode.CANCEL_TAKER)
    assert got[2] == Modify(market=0, id=17, qty=3)
    assert got[3] == MassCancelAccount(market=0, account=3)
    assert got[4] == MassCancelMarket(market=1)
    assert got[5] == SetWindow(market=0, lowest=100)
    assert got[6] == Query(market=0, levels=1)
    assert got[7] == CloseBatch()


def test_defaults() -> None:
    order = parse_command({"op": "new", "market": 0, "id": 1, "side": "sell", "price": 3, "qty": 2})
    assert (order.type, order.tif, order.post_only, order.stp, order.account) == (
        OrderType.LIMIT, TimeInForce.GTC, False, StpMode.NONE, 0)
    market = parse_command({"op": "new", "market": 0, "id": 1, "side": "buy", "type": "market",
                            "qty": 2})
    assert isinstance(market, NewOrder) and market.price == 0


@pytest.mark.parametrize(("line", "field", "message"), [
    ('{"op":"new","market":0,"id":-1,"side":"buy","price":1,"qty":1}', "id",
     "-1 is outside 0 .. 4294967295"),
    ('{"op":"new","market":256,"id":1,"side":"buy","price":1,"qty":1}', "market",
     "256 is outside 0 .. 255 (8-bit field)"),
    ('{"op":"new","market":0,"id":1,"side":"up","price":1,"qty":1}', "side",
     'expected one of buy, sell, got "up"'),
    ('{"op":"new","market":0,"id":1,"side":"buy","price":1.5,"qty":1}', "price",
     "expected an integer, got 1.5"),
    ('{"op":"new","market":0,"id":true,"side":"buy","price":1,"qty":1}', "id",
     "expected an integer, got true"),
    ('{"op":"new","market":0,"id":1,"side":"buy","price":1,"qty":1,"post_only":1}', "post_only",
     "expected true or false, got 1"),
    ('{"op":"new","market":0,"id":1,"side":"buy","qty":1}', "price", "a limit order needs a price"),
    ('{"op":"new","market":0,"id":1,"side":"buy","type":"market","price":5,"qty":1}', "price",
     "a market order has no price"),
    ('{"op":"new","market":0,"id":1,"price":1,"qty":1}', "side", "missing"),
    ('{"op":"cancel","market":0,"id":1,"qyt":2}', "qyt", "not a field of 'cancel'"),
    ('{"op":"cancl","market":0,"id":1}', "op", 'unknown op "cancl"'),
    ('{"market":0,"id":1}', "op", "missing"),
    ('{"op":"new","market":0,"id":1,"side":"buy","price":1,"qty":1,"tif":"day"}', "tif",
     "expected one of gtc, ioc, fok"),
    ('[1,2]', None, "expected a JSON object"),
    ('{"op":"cancel",', None, "not JSON"),
])
def test_errors_name_line_and_field(line: str, field: str | None, message: str) -> None:
    good = '{"op":"close_batch"}\n'
    with pytest.raises(CommandSyntaxError) as info:
        list(read_commands(io.StringIO(good + good + line + "\n" + good)))
    e = info.value
    assert (e.line, e.field) == (3, field)
    assert message in e.message
    assert str(e).startswith("line 3" + (f", field {field!r}" if field else "") + ": ")


def test_generated_flow_round_trips_through_json() -> None:
    commands = list(generate_flow(FlowParams(commands=3000, seed=5, markets=2)))
    text = "".join(json.dumps(command_to_json(c)) + "\n" for c in commands)
    assert list(read_commands(io.StringIO(text))) == commands


def _any_command(cls: type[Command]) -> st.SearchStrategy[Command]:
    """Every field over its whole range (as the wire carries it); a market order's price is 0,
    the one value its JSON form, which has no price, can stand for."""
    fields: dict[str, st.SearchStrategy[object]] = {}
    for f in COMMAND_CODEC.fields(cls)[1:]:
        fields[f.name] = (st.sampled_from(list(f.enum)) if f.enum is not None
                          else st.booleans() if f.name == "post_only"
                          else st.sampled_from([0, 1, 2**f.width - 1]) | st.integers(0, 2**f.width - 1))
    commands = st.builds(cls, **fields)
    if cls is NewOrder:
        commands = commands.map(lambda c: c if c.type is OrderType.LIMIT else dataclasses.replace(c, price=0))
    return commands


@given(st.sampled_from(COMMAND_CODEC.classes).flatmap(_any_command))
def test_every_command_round_trips_through_json(command: Command) -> None:
    """What ``ocee gen`` writes, ``ocee replay`` reads back as the same command: a limit order at
    price 0 (a field at its default, which the writer leaves out) once came back as an error."""
    text = json.dumps(command_to_json(command))
    assert parse_command(json.loads(text)) == command
