"""Put this folder on PYTHONPATH to forbid network connections in a process and its children.

An audit hook records, in $NETGUARD_LOG, every attempt to connect a non-Unix socket
or to resolve a host name, and refuses it. Tests read the log to prove nothing tried.
"""

import os
import socket
import sys

_LOG = os.environ.get("NETGUARD_LOG")


def _record(what):
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {what}\n")


def _hook(event, args):
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock = args[0]
        if getattr(sock, "family", None) == socket.AF_UNIX:
            return
        _record(f"{event} {args[1] if len(args) > 1 else ''}")
        raise OSError(101, "network blocked by the test (netguard)")
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        _record(f"{event} {args[0] if args else ''}")
        raise OSError(101, "name resolution blocked by the test (netguard)")


sys.addaudithook(_hook)
