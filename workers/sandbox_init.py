"""First process inside an agent sandbox with allowlist networking (standard library only).

Usage: ``python -I -S sandbox_init.py PORT SOCKET -- COMMAND...``. Listens on
``127.0.0.1:PORT`` inside the sandbox (the agent's ``HTTP(S)_PROXY``), starts the
command, and relays every connection to the worker's proxy on the Unix socket
``SOCKET`` until the command exits; then exits with the command's status. Binding
before the command starts means the agent never races the bridge.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def _relay(listener: socket.socket, path: str) -> None:
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(path)
        except OSError:
            client.close()
            upstream.close()
            continue
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()


def main(argv: list[str]) -> int:
    """Bridge, start the command, wait for it; return its exit status."""
    if len(argv) < 4 or argv[2] != "--":
        print("usage: sandbox_init PORT SOCKET -- COMMAND...", file=sys.stderr)
        return 2
    port, path, command = int(argv[0]), argv[1], argv[3:]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    child = os.fork()
    if child == 0:
        listener.close()
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"sandbox: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        os._exit(127)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGTERM))
    threading.Thread(target=_relay, args=(listener, path), daemon=True).start()
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1:]))
