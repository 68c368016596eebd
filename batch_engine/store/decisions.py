"""The reviewer's decisions on a folder's videos: `decisions.jsonl`, one line per decision
(approved, rejected, make again with an optional new prompt, or cleared), appended and synced as
it is made, with its time. The latest line of an id is its decision; `status`, the desk and
`export` read the same file, so a reload, a restart of the desk and `status` agree."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from batch_engine.inputs import open_regular, read_records
from batch_engine.store.item import now_iso

DECISIONS_NAME = "decisions.jsonl"
MAX_READ = 64 * 1024 * 1024
Kind = Literal["approved", "rejected", "remake", "cleared"]


class Decision(msgspec.Struct, frozen=True, omit_defaults=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    decision: Kind
    at: Annotated[str, msgspec.Meta(max_length=40)]
    prompt: Annotated[str, msgspec.Meta(max_length=5000)] | None = None  # for "remake": a new prompt


class DecisionBook:
    def __init__(self, folder: Path) -> None:
        self.path = folder / DECISIONS_NAME
        self.latest: dict[str, Decision] = {}

    def __repr__(self) -> str:
        return f"<DecisionBook {self.path} decided={len(self.latest)}>"

    def load(self) -> DecisionBook:
        records, _ = read_records(self.path, Decision, MAX_READ)
        for decision in records:
            if decision.decision == "cleared":
                self.latest.pop(decision.id, None)
            else:
                self.latest[decision.id] = decision
        return self

    def record(self, item_id: str, kind: Kind, prompt: str | None = None) -> Decision:
        """Append the decision and sync it before returning (a crash keeps every answered click)."""
        decision = Decision(item_id, kind, now_iso(), prompt if kind == "remake" else None)
        fd = open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, msgspec.json.encode(decision) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if kind == "cleared":
            self.latest.pop(item_id, None)
        else:
            self.latest[item_id] = decision
        return decision

    def counts(self) -> dict[str, int]:
        return dict(Counter(d.decision for d in self.latest.values()))
