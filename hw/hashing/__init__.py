"""Hashing: every event becomes a keccak-256 leaf, folded into a Merkle root per batch.

``keccak`` is the permutation's golden model, ``leaf`` the event-to-leaf encoding, ``merkle`` the
tree and its streaming accumulator.
"""
