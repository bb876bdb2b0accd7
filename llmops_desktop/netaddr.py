"""Address and secret checks shared by the servers and the forms that start them.

Kept apart from :mod:`llmops_desktop.httpserve` so the window can check a form without
importing uvicorn.
"""

from __future__ import annotations

import ipaddress

from llmops_desktop.errors import InvalidInputError


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_secret(value: str, what: str) -> str:
    """A token or API key as it will travel in an HTTP header: printable ASCII, no spaces."""
    value = value.strip()
    if value and not all(33 <= ord(c) < 127 for c in value):
        raise InvalidInputError(
            f"The {what} must be printable ASCII without spaces (it travels in an HTTP "
            "header). Pick another one, e.g. from 'python -c \"import secrets; "
            "print(secrets.token_urlsafe(24))\"'.")
    return value
