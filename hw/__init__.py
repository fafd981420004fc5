"""Gateware, and the executable specifications the gateware is checked against.

``protocol`` defines what crosses the link; ``matching`` holds the order-matching engine and its
reference model; ``hashing`` the Keccak-256 leaf hasher and Merkle accumulator and their models.
"""
