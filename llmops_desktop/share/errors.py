"""The errors sharing raises, each a subclass of the app's error it resembles.

They are registered in :data:`llmops_desktop.errors.ERROR_TYPES` on import, so an
error raised in a job's child reaches the CLI and the window with its own class
(and exit code) rather than as a generic job failure.
"""

from __future__ import annotations

from llmops_desktop.errors import (
    ERROR_TYPES,
    AuthError,
    CorruptFileError,
    InvalidInputError,
    NotFoundError,
)


class PackageError(CorruptFileError):
    """A package is malformed, unsafe or damaged; nothing was imported."""


class UnsafePackageError(PackageError):
    """A member could write outside its folder or is not a plain file."""


class PackageVersionError(PackageError):
    """The package was written in a format this app does not read."""


class PackageChangedError(PackageError):
    """The package file changed after the user accepted it (a different manifest)."""


class SignatureError(AuthError):
    """A package's signature is invalid, from a key not trusted, or missing when required."""


class UntrustedSignerError(SignatureError):
    """Signed correctly, but by a key that is not in the trust list (ask the user)."""

    def __init__(self, message: str, fingerprint: str = "") -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


class UnsignedPackageError(SignatureError):
    """The package carries no signature (ask the user, or refuse when signatures are required)."""


class KeyFileError(InvalidInputError):
    """A key file cannot be read, or the trust list refuses it."""


class RegistryError(InvalidInputError):
    """A registry folder is unknown, unreachable or its index is unusable."""


class RegistryNotFoundError(NotFoundError):
    """No registry or no package by that name."""


class GovernanceError(InvalidInputError):
    """A status change or a serve was refused by the governance rules."""


for _cls in (PackageError, UnsafePackageError, PackageVersionError, PackageChangedError,
             SignatureError, UntrustedSignerError, UnsignedPackageError, KeyFileError,
             RegistryError, RegistryNotFoundError, GovernanceError):
    ERROR_TYPES.setdefault(_cls.__name__, _cls)
