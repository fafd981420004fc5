"""The batch Merkle tree: how a batch's leaves fold into its root (spec: docs/merkle.md).

Inner nodes hash their two children in sorted order, ``keccak256(min(a, b) ++ max(a, b))``:
OpenZeppelin's ``Hashes.commutativeKeccak256``, so ``MerkleProof.verify`` checks our proofs as is.
A level with an odd count promotes its last node unchanged to the next level. For ``n`` leaves
this gives the left-balanced tree of RFC 6962 (the left subtree holds the largest power of two
below ``n``), which a streaming accumulator can build from a frontier of one node per level:
:class:`MerkleAccumulator` is that accumulator, the model of the hardware's.

The root of zero leaves is 32 zero bytes; the root of one leaf is the leaf itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_hash.backends.pysha3 import PySha3Backend
from eth_hash.main import Keccak256

# eth_hash with its pysha3 backend: the fastest keccak on PyPI here. The tests check it against
# the pure-Python golden model and against pycryptodome.
_keccak = Keccak256(PySha3Backend())

__all__ = ["EMPTY_ROOT", "MerkleAccumulator", "hash_pair", "keccak256", "merkle_proof",
           "merkle_root", "verify_proof"]

EMPTY_ROOT = bytes(32)


def keccak256(data: bytes) -> bytes:
    """Ethereum's keccak256."""
    digest: bytes = _keccak(data)
    return digest


def hash_pair(a: bytes, b: bytes) -> bytes:
    """An inner node: the keccak of the two children, smaller first."""
    return keccak256(a + b) if a <= b else keccak256(b + a)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The root, folded level by level (the plain statement of the rule)."""
    level = list(leaves)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def merkle_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The siblings on the path from leaf ``index`` to the root, lowest first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} is outside a batch of {len(leaves)} leaves")
    proof: list[bytes] = []
    level = list(leaves)
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        paired = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        index //= 2
    return proof


def verify_proof(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """What OpenZeppelin's ``MerkleProof.verify(proof, root, leaf)`` computes."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


class MerkleAccumulator:
    """Folds leaves into a root as they stream past, keeping one node per tree level.

    ``frontier[k]`` holds the root of a complete subtree of ``2**k`` leaves exactly when bit ``k``
    of the leaf count is set: ``n`` leaves need ``n.bit_length()`` nodes, so 24 nodes cover any
    batch of fewer than ``2**24`` leaves, and 25 one of exactly ``2**24``.
    """

    __slots__ = ("count", "frontier")

    def __init__(self) -> None:
        self.frontier: list[bytes | None] = []
        self.count = 0

    def add(self, leaf: bytes) -> None:
        node = leaf
        level = 0
        frontier = self.frontier
        while level < len(frontier) and frontier[level] is not None:
            node = hash_pair(frontier[level], node)  # type: ignore[arg-type]
            frontier[level] = None
            level += 1
        if level == len(frontier):
            frontier.append(node)
        else:
            frontier[level] = node
        self.count += 1

    def root(self) -> bytes:
        """The root of the leaves added so far: the frontier folded from its lowest node up."""
        acc: bytes | None = None
        for node in self.frontier:
            if node is not None:
                acc = node if acc is None else hash_pair(node, acc)
        return EMPTY_ROOT if acc is None else acc

    def reset(self) -> None:
        self.frontier = []
        self.count = 0
