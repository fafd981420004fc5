"""The device side of the host link (spec: docs/link.md): UART, SLIP framing, CRC, sequencing,
credits, status, and the conversions between link bytes and the engine's records."""
