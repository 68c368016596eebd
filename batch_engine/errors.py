"""The engine's own exception family. `client` translates HTTP into these, once; nothing else
looks at statuses or body codes."""

from __future__ import annotations

from typing import ClassVar


class KieError(Exception):
    """Something the provider (or the way to it) said or failed to say."""

    def __init__(self, message: str, *, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = False  # whether the same request may succeed later (the provider judges)


class Transient(KieError):
    """Worth trying again later.

    `maybe_sent` is true when the request may have reached the provider although no answer came
    (a dropped connection or a time-out after sending): for a create, a task may exist.
    """

    def __init__(self, message: str, *, code: int | str | None = None,
                 retry_after: float | None = None, maybe_sent: bool = False) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


class RateLimited(Transient):
    """429, as an HTTP status or as a body code. Nothing was created."""


class Maintenance(Transient):
    """455: the whole service is paused; everyone waits."""


class TaskUnknown(Transient):
    """recordInfo does not know the task (yet): 422 "recordInfo is null" or 404."""


class AccountRefused(KieError):
    """401 bad key, 402 no credits, 433 key usage cap, 505 feature disabled: stop creating."""

    ADVICE: ClassVar[dict[int | str | None, str]] = {
        401: "the API key was refused: check KIE_API_KEY",
        402: "the account has no credits left: top it up at kie.ai, then run the same command again",
        433: "the API key reached its usage cap: raise the cap or wait, then run the same command again",
        505: "this feature is disabled for the account: contact kie.ai support",
    }

    @property
    def advice(self) -> str:
        return self.ADVICE.get(self.code, "the account was refused")


class Rejected(KieError):
    """The provider refused this one item's request (400, 422, 500 "field is required", 501)."""


class FileUnavailable(KieError):
    """The result file host answered 403/404/410: the link expired or is wrong; refresh it."""


class RangeNotSatisfiable(KieError):
    """416 to a resumed download: the part on disk may already be whole (`total` says, if known)."""

    def __init__(self, message: str, *, code: int | str | None = None, total: int | None = None) -> None:
        super().__init__(message, code=code)
        self.total = total


class BadVideo(KieError):
    """A downloaded file failed verification (length, MP4 signature)."""


class TaskFailed(KieError):
    """recordInfo answered that the task itself failed (408: the model gave nothing for 10+ minutes)."""


class Stalled(Transient):
    """A download made too little progress for too long: cut, to be resumed with Range."""


class UploadProblem(KieError):
    """A local image cannot be uploaded (missing, changed since it was planned, or refused)."""


class CannotListen(Exception):
    """The callback receiver cannot bind its address (busy or not ours): a usage problem."""
