"""``python -m ocee.host.link.serve``: an emulated device on a TCP socket or a pty, until
interrupted. It prints the URL to open (``socket://...`` or ``serial:///dev/pts/N``): a stand-in
for a board, for trying the host against a device in another process."""

from __future__ import annotations

import argparse
import time

from .device import DeviceEmulator, DeviceServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ocee.host.link.serve",
                                     description="Serve an emulated matching device on a TCP "
                                                 "socket or a pseudo-terminal; print its URL.")
    parser.add_argument("--pty", action="store_true", help="a pseudo-terminal (default: TCP)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free one)")
    parser.add_argument("--no-hash", action="store_true", help="leave batch roots zero (faster)")
    args = parser.parse_args(argv)
    device = DeviceEmulator(hash_events=not args.no_hash)
    server = DeviceServer(device, kind="pty" if args.pty else "tcp", port=args.port).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
