"""The models a manifest may choose, one row each: the input fields each takes and their rules.

All use the same createTask/recordInfo flow; what differs is the `input`. kie.ai ignores a field a
model does not take and still charges, so a field the chosen model does not take is an error at
validation, never sent. To add a model, add a row (see ../shared/kie-facts.md for the fields).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PRO = "hailuo/02-image-to-video-pro"


@dataclass(frozen=True, slots=True)
class Choice:
    """A field whose value is one of `values` (sent as text; a number is accepted for a duration)."""

    values: tuple[str, ...]
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    prompt_max: int                               # characters
    end_frame: bool                               # takes end_image_url
    flags: tuple[str, ...]                        # true/false fields it takes
    choices: dict[str, Choice] = field(default_factory=dict)
    rule: Callable[[dict[str, Any]], str | None] = lambda _: None  # across fields, None if fine

    def fields(self) -> tuple[str, ...]:
        return ("prompt", "image_url", *(("end_image_url",) if self.end_frame else ()), *self.flags,
                *self.choices)


def _no_10s_at_1080p(inp: dict[str, Any]) -> str | None:
    if inp.get("duration") == "10" and inp.get("resolution") == "1080P":
        return "duration 10 is not allowed at resolution 1080P (use 6, or 768P)"
    return None


_DURATION = Choice(("6", "10"))
MODELS: dict[str, Model] = {m.name: m for m in (
    Model(PRO, 1500, True, ("prompt_optimizer", "nsfw_checker")),
    Model("hailuo/02-image-to-video-standard", 1500, True, ("prompt_optimizer",),
          {"duration": _DURATION, "resolution": Choice(("512P", "768P"))}),
    Model("hailuo/2-3-image-to-video-pro", 5000, False, (),
          {"duration": _DURATION, "resolution": Choice(("768P", "1080P"))}, _no_10s_at_1080p),
    Model("hailuo/2-3-image-to-video-standard", 5000, False, (),
          {"duration": _DURATION, "resolution": Choice(("768P", "1080P"))}, _no_10s_at_1080p),
)}
ALL_FIELDS = tuple(dict.fromkeys(name for m in MODELS.values() for name in m.fields()))
