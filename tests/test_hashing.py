"""Keccak, leaves and the batch Merkle tree, against independent implementations."""

from __future__ import annotations

import random

import pytest
from Crypto.Hash import keccak as crypto_keccak
from eth_abi.packed import encode_packed
from hypothesis import given, settings
from hypothesis import strategies as st

from ocee.hw.hashing.keccak import keccak256_reference, keccak_f1600, keccak_round
from ocee.hw.hashing.leaf import event_leaf, leaf_preimage
from ocee.hw.hashing.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    hash_pair,
    keccak256,
    merkle_proof,
    merkle_root,
    verify_proof,
)
from ocee.hw.protocol import (
    EVENT_CODEC,
    Accepted,
    BatchClosed,
    Canceled,
    CancelReason,
    Fill,
    OrderType,
    Side,
    StpMode,
    TimeInForce,
)


def _pycryptodome(message: bytes) -> bytes:
    digest: bytes = crypto_keccak.new(digest_bits=256, data=message).digest()
    return digest


def test_keccak_known_answer() -> None:
    empty = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak256_reference(b"").hex() == empty
    assert keccak256(b"").hex() == empty


@pytest.mark.parametrize("length", [0, 1, 135, 136, 137, 272, 273, 500])
def test_reference_keccak_equals_eth_hash(length: int) -> None:
    message = bytes(random.Random(length).randrange(256) for _ in range(length))
    assert keccak256_reference(message) == keccak256(message) == _pycryptodome(message)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=600))
def test_reference_keccak_equals_eth_hash_random(message: bytes) -> None:
    assert keccak256_reference(message) == keccak256(message) == _pycryptodome(message)


def test_rounds_compose_to_the_permutation() -> None:
    lanes = [random.Random(1).getrandbits(64) for _ in range(25)]
    stepped = lanes
    for r in range(24):
        stepped = keccak_round(stepped, r)
    assert stepped == keccak_f1600(lanes)


def _leaves(n: int) -> list[bytes]:
    return [keccak256(b"leaf" + i.to_bytes(4, "big")) for i in range(n)]


def _rfc6962_root(leaves: list[bytes]) -> bytes:
    """An independent statement of the tree: split at the largest power of two below n."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = _rfc6962_root(leaves[:k]), _rfc6962_root(leaves[k:])
    return keccak256_reference(min(left, right) + max(left, right))


def test_empty_and_single_roots() -> None:
    assert merkle_root([]) == EMPTY_ROOT == bytes(32)
    assert MerkleAccumulator().root() == EMPTY_ROOT
    (leaf,) = _leaves(1)
    assert merkle_root([leaf]) == leaf


@pytest.mark.parametrize("n", [*range(1, 34), 63, 64, 65, 127, 128, 129])
def test_fold_accumulator_and_rfc6962_agree(n: int) -> None:
    leaves = _leaves(n)
    acc = MerkleAccumulator()
    for leaf in leaves:
        acc.add(leaf)
    assert acc.count == n
    assert acc.root() == merkle_root(leaves) == _rfc6962_root(leaves)
    assert len(acc.frontier) == n.bit_length()  # one node per level at most


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 17, 33])
def test_every_proof_verifies_and_tampering_fails(n: int) -> None:
    leaves = _leaves(n)
    root = merkle_root(leaves)
    for i, leaf in enumerate(leaves):
        proof = merkle_proof(leaves, i)
        assert verify_proof(proof, root, leaf)
        assert not verify_proof(proof, root, keccak256(leaf))
        if proof:
            bad = [*proof[:-1], keccak256(proof[-1])]
            assert not verify_proof(bad, root, leaf)
    with pytest.raises(IndexError, match=f"leaf index {n} is outside a batch of {n} leaves"):
        merkle_proof(leaves, n)


def test_inner_nodes_are_commutative() -> None:
    a, b = _leaves(2)
    assert hash_pair(a, b) == hash_pair(b, a) == keccak256(min(a, b) + max(a, b))


def test_accumulator_reset_starts_a_clean_batch() -> None:
    acc = MerkleAccumulator()
    for leaf in _leaves(5):
        acc.add(leaf)
    acc.reset()
    for leaf in _leaves(3):
        acc.add(leaf)
    assert acc.root() == merkle_root(_leaves(3))


FILL = Fill(market=2, seq=77, maker=10, taker=11, maker_account=5, taker_account=6, price=1234,
            qty=3, maker_remaining=4, taker_remaining=0, taker_side=Side.SELL)


def test_leaf_is_solidity_abi_encode_packed() -> None:
    # Written out by hand, as a contract would: abi.encodePacked(uint8 kind, uint8 market, ...)
    types = ["uint8", "uint8", "uint32"] + ["uint32"] * 8 + ["uint8"]
    values = [2, 2, 77, 10, 11, 5, 6, 1234, 3, 4, 0, 1]
    assert leaf_preimage(FILL) == encode_packed(types, values)
    assert event_leaf(FILL) == keccak256_reference(encode_packed(types, values))
    accepted = Accepted(market=1, seq=5, id=9, account=3, price=100, qty=7, side=Side.BUY,
                        type=OrderType.LIMIT, tif=TimeInForce.IOC, post_only=True,
                        stp=StpMode.CANCEL_BOTH)
    types = ["uint8", "uint8", "uint32"] + ["uint32"] * 4 + ["uint8"] * 5
    assert leaf_preimage(accepted) == encode_packed(types, [1, 1, 5, 9, 3, 100, 7, 0, 0, 1, 1, 3])
    canceled = Canceled(market=0, seq=1, id=4, qty=2, reason=CancelReason.SELF_TRADE)
    assert leaf_preimage(canceled) == encode_packed(
        ["uint8", "uint8", "uint32", "uint32", "uint32", "uint8"], [3, 0, 1, 4, 2, 5])


def test_leaf_preimages_are_never_inner_node_sized() -> None:
    sizes = {}
    for cls in EVENT_CODEC.classes:
        if cls is BatchClosed:
            continue
        fields = EVENT_CODEC.fields(cls)
        sizes[cls.__name__] = sum(f.byte_width for f in fields)
    assert min(sizes.values()) == 10 and max(sizes.values()) == 39
    assert 64 not in sizes.values()


def test_batch_events_are_not_leaves() -> None:
    with pytest.raises(ValueError, match="BatchClosed event is not a leaf"):
        leaf_preimage(BatchClosed(market=0, seq=0, batch=0, count=0, root=bytes(32)))
