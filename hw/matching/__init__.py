"""The matching engine: per-market limit order books with price-time priority.

``model`` is the reference model (the specification); ``config`` the capacity parameters shared
with the gateware.
"""
