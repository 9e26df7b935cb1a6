"""Errors raised below the HTTP layer; `api.errors` maps each to a status code."""


class CodeGraphError(Exception):
    """Base class: the message is safe to show to the client."""


class InvalidInput(CodeGraphError):
    """The request is well-formed but refers to something impossible."""


class NotFound(CodeGraphError):
    """A node, edge or backup that does not exist."""


class Conflict(CodeGraphError):
    """The operation cannot run now (another one is in progress)."""


class TooLarge(CodeGraphError):
    """A batch past the configured limits."""


class Unavailable(CodeGraphError):
    """The service cannot answer right now (restore in progress, no quorum in the log);
    retry_after: seconds after which a retry makes sense (the Retry-After header)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Withdrawn(Unavailable):
    """A write the log holds but every host refuses: its host settled it as not applied
    (a fence entry withdrew it, or it reached the log after its deadline). Nothing was
    applied; its Idempotency-Key may be used again for the same request."""


class OutcomeUnknown(CodeGraphError):
    """A write whose outcome this host cannot know (the log did not answer in time): it
    may have been applied, or may be applied still. Safe to send again only with the
    same Idempotency-Key."""

    def __init__(self, message: str, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DatabaseInUse(CodeGraphError):
    """Another process holds the data directory."""


class IntegrityError(CodeGraphError):
    """Stored data or a backup failed verification."""
