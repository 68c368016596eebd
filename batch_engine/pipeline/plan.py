"""Decide, before acting, what each item of a run needs: a pure function of the ledger, the
manifest and the output folder's file sizes. The engine carries the plan out; a dry run, a budget
or a shard can read it first.

The rules: an item not in the ledger is new; one whose manifest entry changed (prompt, images,
flags) is made again (its old video set aside); a succeeded item whose video is intact is skipped,
one whose video is gone is downloaded again from its result URL (created again only when there is
none); a failed item stays failed until `retry`, which downloads again a task that succeeded and
creates anew one that failed; anything else resumes where the ledger says it stands.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from batch_engine.catalog.items import ItemSpec, fingerprint, prompt_problem
from batch_engine.catalog.models import MODELS, PRO
from batch_engine.provider.base import TaskState
from batch_engine.states import State
from batch_engine.store.item import parse_time, video_name
from batch_engine.store.ledger import Item


class Step(StrEnum):
    NEW = "new"                    # not in the ledger: add it, then create its task
    REMAKE = "remake"              # changed in the manifest: set the old video aside, create again
    CREATE = "create"              # pending, or a create was never answered: create (again)
    POLL = "poll"                  # its task is running: follow it
    DOWNLOAD = "download"          # its task succeeded: download the video
    REFETCH = "refetch"            # succeeded, but the video is gone: download it again
    RECREATE = "recreate"          # succeeded, video gone, no result URL known: create again
    REOPEN_DOWNLOAD = "reopen_download"  # retry: a failed download of a task that succeeded
    REOPEN_CREATE = "reopen_create"      # retry: a task that failed: create anew
    REREAD = "reread"              # retry: a task that succeeded but whose record was unreadable:
                                   # read it again (never paid for again)
    SKIP = "skip"                  # succeeded, video intact
    DAMAGED = "damaged"            # its ledger records cannot be read: left alone, never re-paid
    REDO = "redo"                  # `redo`: a succeeded item made again on purpose (paid again)
    KEEP_FAILED = "keep_failed"    # failed: stays failed until `retry`

    @property
    def creates(self) -> bool:
        """Whether this step may send a create (and so cost credits)."""
        return self in _CREATING


_CREATING = frozenset({Step.NEW, Step.REMAKE, Step.CREATE, Step.RECREATE, Step.REOPEN_CREATE, Step.REDO})
_NOTHING_TO_DO = frozenset({Step.SKIP, Step.KEEP_FAILED})


class Decision(NamedTuple):
    item_id: str
    step: Step
    request: dict[str, Any] | None = None   # NEW and REMAKE: the create request to record
    fingerprint: str | None = None          # ... and its digest


@dataclass(frozen=True, slots=True)
class Plan:
    decisions: tuple[Decision, ...]

    def counts(self) -> Counter[Step]:
        return Counter(decision.step for decision in self.decisions)

    @property
    def creates(self) -> int:
        """Items that will need a create: an upper bound on what the run may pay for."""
        return sum(1 for decision in self.decisions if decision.step.creates)

    @property
    def nothing_to_do(self) -> bool:
        """Nothing to send, fetch or change: every item stays as the ledger has it."""
        return all(decision.step in _NOTHING_TO_DO for decision in self.decisions)


def plan_manifest(known: Mapping[str, Item], specs: Sequence[ItemSpec], files: Mapping[str, int],
                  damaged: Mapping[str, str] = {}) -> Plan:
    """The plan for `run`: the manifest's items in its order. `known` is the ledger's items by id
    `files` the sizes of the files in the output folder by name, `damaged` the ids whose ledger
    records cannot be read."""
    decisions = []
    for spec in specs:
        if spec.id in damaged:
            decisions.append(Decision(spec.id, Step.DAMAGED))
            continue
        request = spec.request()
        digest = fingerprint(request)
        item = known.get(spec.id)
        if item is None:
            decisions.append(Decision(spec.id, Step.NEW, request, digest))
        elif item.fingerprint != digest:
            decisions.append(Decision(spec.id, Step.REMAKE, request, digest))
        else:
            decisions.append(Decision(spec.id, resume_step(item, files)))
    return Plan(tuple(decisions))


def plan_retry(known: Mapping[str, Item], files: Mapping[str, int],
               damaged: Mapping[str, str] = {}) -> Plan:
    """The plan for `retry`: every item of the ledger, from the ledger alone."""
    decisions = [Decision(item_id, Step.DAMAGED) for item_id in damaged]
    for item in known.values():
        if item.state is State.FAILED:
            step = retry_step(item)
        else:
            step = resume_step(item, files)
        decisions.append(Decision(item.id, step))
    return Plan(tuple(decisions))


def plan_redo(known: Mapping[str, Item], ids: Sequence[str], prompt: str | None = None,
              prompts: Mapping[str, str] | None = None) -> Plan:
    """The plan for `redo`: the chosen succeeded items made again with their stored parameters
    (or a new prompt: `prompt` for all, or `prompts` by id, as the desk sends them). ValueError
    names every id that is not a succeeded item of the ledger, or whose new prompt does not fit
    its model."""
    wrong = [i for i in ids if i not in known or known[i].state is not State.SUCCEEDED]
    if wrong:
        raise ValueError(f"{len(wrong)} id(s) are not succeeded items of this folder: "
                         + ", ".join(wrong[:10]) + (" ..." if len(wrong) > 10 else ""))
    unfit = {i: why for i in dict.fromkeys(ids) if (new := (prompts or {}).get(i, prompt)) is not None
             and (why := prompt_problem(new, MODELS.get(str(known[i].request.get("model")), MODELS[PRO])))}
    if unfit:  # the desk's prompts are read back from decisions.jsonl: the folder's file, input too
        raise ValueError("; ".join(f"{i}: the new prompt {why}" for i, why in list(unfit.items())[:10]))
    decisions = []
    for item_id in dict.fromkeys(ids):
        request = known[item_id].request
        new = (prompts or {}).get(item_id, prompt)
        if new is not None:
            request = {**request, "input": {**request.get("input", {}), "prompt": new}}
        decisions.append(Decision(item_id, Step.REDO, request, fingerprint(request)))
    return Plan(tuple(decisions))


def retry_step(item: Item) -> Step:
    """What `retry` does with a failed item: a task that succeeded is never created again, unless
    its video did not decode when fetched twice (`bad_video`: the retry is the request to pay)."""
    if item.fail_code == "bad_video":
        return Step.REOPEN_CREATE
    if item.task_id and item.result_url:
        return Step.REOPEN_DOWNLOAD
    if item.task_id and item.provider_state == TaskState.SUCCESS:
        return Step.REREAD
    return Step.REOPEN_CREATE


def resume_step(item: Item, files: Mapping[str, int]) -> Step:
    """What an item the manifest did not change needs, from its state in the ledger."""
    if item.state is State.SUCCEEDED:
        if files.get(video_name(item.id)) == item.size:
            return Step.SKIP
        return Step.REFETCH if item.result_url else Step.RECREATE
    return {State.FAILED: Step.KEEP_FAILED, State.RUNNING: Step.POLL,
            State.DOWNLOADING: Step.DOWNLOAD}.get(item.state, Step.CREATE)


def recent_creates(items: Iterable[Item], now: float, window: float) -> list[float]:
    """Seconds ago that each create of an earlier run went out, for those inside the current
    window: the create gate counts them. A create left unanswered reached the provider, if at
    all, before this run began: it is counted as just now."""
    recent = []
    for item in items:
        sent = parse_time(item.submitted_at) if item.attempts else None
        if sent is None:
            continue
        ago = now - sent
        if ago <= window:
            recent.append(0.0 if item.state is State.SUBMITTING else max(ago, 0.0))
    return recent


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, ...]:
    old_in, new_in = old.get("input", {}), new.get("input", {})
    return tuple(sorted(k for k in old_in.keys() | new_in.keys() if old_in.get(k) != new_in.get(k))) or ("model",)
