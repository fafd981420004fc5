"""The host: everything around the device (CLI, flows, replay backends; later the sequencer,
risk and margin, the link layer and settlement).
"""
