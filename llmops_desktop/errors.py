"""Every error the app raises on purpose.

Each error inherits the built-in it resembles, carries a message that tells
the user what to do next, and an exit code the CLI returns so that scripts
can tell failures apart.
"""

from __future__ import annotations


class LLMOpsError(Exception):
    """Base class; ``exit_code`` is what ``llmops`` exits with."""

    exit_code = 1


class NotFoundError(LLMOpsError, LookupError):
    """A model, artifact or job the user named does not exist."""

    exit_code = 3


class ArtifactNotFoundError(NotFoundError):
    pass


class JobNotFoundError(NotFoundError):
    pass


class ConflictError(LLMOpsError):
    """The request clashes with what the catalog already holds."""

    exit_code = 4


class DuplicateArtifactError(ConflictError, FileExistsError):
    """The same files are already in the catalog."""

    def __init__(self, message: str, existing_id: int | None = None) -> None:
        super().__init__(message)
        self.existing_id = existing_id


class HasDependentsError(ConflictError):
    """An artifact that others derive from cannot be removed on its own."""


class InvalidInputError(LLMOpsError, ValueError):
    """What the user pointed us at is not something we can take."""

    exit_code = 5


class EmptySourceError(InvalidInputError):
    pass


class NoWeightsError(InvalidInputError):
    pass


class CorruptFileError(InvalidInputError):
    """A weights file is truncated or malformed."""


class PickleRefusedError(InvalidInputError):
    """Pickle checkpoints can run arbitrary code when loaded."""


class UnreadableFileError(InvalidInputError, PermissionError):
    pass


class UnsafePathError(InvalidInputError):
    """A name from outside (a hub listing, a package member, a link) would leave its folder."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class DiskFullError(LLMOpsError, OSError):
    exit_code = 6


class CatalogError(LLMOpsError):
    """The catalog database is unusable (newer schema, corruption)."""

    exit_code = 7


class AuthError(LLMOpsError, PermissionError):
    """The server refused our credentials (401/403): a gated repo or a bad token."""

    exit_code = 9


class NetworkError(LLMOpsError, ConnectionError):
    """The server could not be reached, or closed the connection too often."""

    exit_code = 10


class NotAHubError(InvalidInputError):
    """The endpoint answers, but not as a Hugging Face hub does."""


class ChecksumError(CorruptFileError):
    """A downloaded file's size or sha256 is not what the hub said."""


class JobError(LLMOpsError, RuntimeError):
    """A job failed in its child process; the message is the child's."""


class CancelledError(LLMOpsError):
    """The user cancelled the work."""

    exit_code = 130


class OfflineModeError(LLMOpsError, ConnectionError):
    """A network operation was attempted while Offline is on."""

    exit_code = 8


ERROR_TYPES: dict[str, type[LLMOpsError]] = {
    cls.__name__: cls
    for cls in [
        LLMOpsError, NotFoundError, ArtifactNotFoundError, JobNotFoundError, ConflictError,
        DuplicateArtifactError, HasDependentsError, InvalidInputError, EmptySourceError,
        NoWeightsError, CorruptFileError, PickleRefusedError, UnreadableFileError, UnsafePathError,
        DiskFullError, CatalogError, JobError, CancelledError, OfflineModeError, AuthError,
        NetworkError, NotAHubError, ChecksumError,
    ]
}


def error_from_name(name: str, message: str) -> LLMOpsError:
    """Rebuild an error reported by a child process by its class name."""
    cls = ERROR_TYPES.get(name, JobError)
    try:
        return cls(message)
    except TypeError:
        return JobError(message)
