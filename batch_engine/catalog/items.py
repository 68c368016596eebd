"""One catalog item: validated field by field against its model's row in `models`, every problem
named with the item and the field, and turned into the createTask body that makes it."""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_engine.catalog.bucket_images import is_bucket_url
from batch_engine.catalog.images import LocalImage, check_image
from batch_engine.catalog.models import ALL_FIELDS, MODELS, PRO, Model
from batch_engine.config import check_url
from batch_engine.ids import unsafe_id_reason
from batch_engine.text import has_unsafe

ITEM_KEYS = ("id", "model", "image", "end_image", *ALL_FIELDS)
DEFAULT_KEYS = ("model", *ALL_FIELDS)


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """One video to make: the id it is filed under and the createTask input that makes it."""

    id: str
    prompt: str
    image_url: str
    end_image_url: str = ""
    prompt_optimizer: bool = True
    nsfw_checker: bool | None = None
    model: str = PRO
    choices: tuple[tuple[str, str], ...] = ()  # fields such as duration and resolution
    images: tuple[LocalImage, ...] = ()        # local files its URLs name as upload:<sha256>

    def request(self) -> dict[str, Any]:
        """The createTask body, exactly as documented for the model (callBackUrl is added by the
        submitter). For Hailuo 02 Pro it is what earlier versions sent, so ledgers stay valid."""
        model = MODELS[self.model]
        inp: dict[str, Any] = {"prompt": self.prompt, "image_url": self.image_url}
        if model.end_frame:
            inp["end_image_url"] = self.end_image_url
        if "prompt_optimizer" in model.flags:
            inp["prompt_optimizer"] = self.prompt_optimizer
        if self.nsfw_checker is not None:
            inp["nsfw_checker"] = self.nsfw_checker
        inp.update(self.choices)
        return {"model": self.model, "input": inp}


def fingerprint(request: dict[str, Any]) -> str:
    """A short stable digest of a createTask body: tells whether an item changed between runs."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def validate_item(entry: Any, defaults: dict, where: str, problems: list[str], *, base: Path,
                  seen_images: dict[Path, LocalImage | str] | None = None) -> ItemSpec | None:
    """The item, or None after appending to `problems` every reason it cannot be made. Local
    image paths are relative to `base`; `seen_images` spares checking a file twice."""
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be a mapping with id, image_url and prompt")
        return None
    before = len(problems)
    raw_id = entry.get("id")
    label = where + (f" {raw_id!r}" if isinstance(raw_id, str) and raw_id else "")
    for key in entry:
        if key not in ITEM_KEYS:
            problems.append(f"{label}: unknown key {key!r}{did_you_mean(str(key), ITEM_KEYS)}")
    fields = {**{k: v for k, v in defaults.items() if k in DEFAULT_KEYS}, **entry}
    item_id = _check_id(raw_id, label, problems)
    model = MODELS.get(str(fields.get("model", PRO)))
    if model is None:
        problems.append(f"{label}: model: {str(fields.get('model'))[:80]!r} is not one of "
                        f"{', '.join(MODELS)}")
        return None
    for key in fields:
        if key in ALL_FIELDS and key not in model.fields():
            source = "" if key in entry else " (from defaults)"
            problems.append(f"{label}: {key}{source}: model {model.name} does not take it (kie.ai would "
                            "ignore it and still charge)")
    _check_prompt(fields.get("prompt"), model, label, problems)
    images: list[LocalImage] = []
    cache = {} if seen_images is None else seen_images
    image_url = _image(fields, "image_url", "image", label, problems, base, cache, images, required=True)
    end_image_url = _image(fields, "end_image_url", "end_image", label, problems, base, cache, images)
    if "end_image" in fields and not model.end_frame:
        problems.append(f"{label}: end_image: model {model.name} does not take an end frame")
    for flag in ("prompt_optimizer", "nsfw_checker"):
        if flag in fields and not isinstance(fields[flag], bool):
            problems.append(f"{label}: {flag}: must be true or false, not {_kind(fields[flag])}")
    choices = _check_choices(fields, model, label, problems)
    if len(problems) > before:
        return None
    return ItemSpec(id=item_id, prompt=fields["prompt"], image_url=image_url, end_image_url=end_image_url,
                    prompt_optimizer=fields.get("prompt_optimizer", True),
                    nsfw_checker=fields.get("nsfw_checker"), model=model.name, choices=choices,
                    images=tuple(images))


def _image(fields: dict, url_key: str, file_key: str, label: str, problems: list[str], base: Path,
           cache: dict[Path, LocalImage | str], images: list[LocalImage], *, required: bool = False) -> str:
    """The URL (or upload placeholder) for one image field: a URL or a local file, not both."""
    url, name = fields.get(url_key), fields.get(file_key)
    if url not in (None, "") and name not in (None, ""):
        problems.append(f"{label}: {url_key} and {file_key}: give one of them, not both")
        return ""
    if name not in (None, ""):
        if not isinstance(name, str) or has_unsafe(name):
            problems.append(f"{label}: {file_key}: must be the path of an image file")
            return ""
        path = (base / name).resolve()
        found = cache.get(path) or cache.setdefault(path, check_image(path))
        if isinstance(found, str):
            problems.append(f"{label}: {file_key}: {found}")
            return ""
        images.append(found)
        return found.placeholder
    if url in (None, ""):
        if required:
            problems.append(f"{label}: image_url: missing (or give a local file as image:)")
        return ""
    if is_bucket_url(url):
        return str(url)  # checked with the other objects of the catalog (catalog.bucket_images)
    _check_url(url, f"{label}: {url_key}", problems)
    return url


def _check_prompt(prompt: Any, model: Model, label: str, problems: list[str]) -> None:
    if why := prompt_problem(prompt, model):
        problems.append(f"{label}: prompt: {why}")


def prompt_problem(prompt: Any, model: Model) -> str | None:
    """What is wrong with a prompt for `model` (None: nothing): a manifest's, `redo --prompt`'s,
    or one the desk queued (read back from the folder's decisions.jsonl)."""
    if prompt is None:
        return "missing"
    if not isinstance(prompt, str):
        return f"must be text, not {_kind(prompt)}"
    if not prompt.strip():
        return "is empty"
    if len(prompt) > model.prompt_max:
        return f"is {len(prompt)} characters; at most {model.prompt_max}" + ("" if model.name == PRO else f" for {model.name}")
    if has_unsafe(prompt, allow="\n\t\r"):
        return "contains a control or bidirectional-override character"
    return None


def _check_choices(fields: dict, model: Model, label: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    chosen: dict[str, str] = {}
    for name, choice in model.choices.items():
        value = fields.get(name, choice.default)
        if value is None:
            continue
        text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        if text not in choice.values:
            problems.append(f"{label}: {name}: {str(value)[:40]!r} is not one of {', '.join(choice.values)}")
            continue
        chosen[name] = text
    if (reason := model.rule(chosen)) is not None:
        problems.append(f"{label}: {reason} ({model.name})")
    return tuple(chosen.items())


def did_you_mean(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"



def _check_id(raw: Any, label: str, problems: list[str]) -> str:
    if raw is None:
        problems.append(f"{label}: id: missing (each item needs a unique id; it names the video file)")
    elif not isinstance(raw, str):
        problems.append(f"{label}: id: must be text, not {_kind(raw)}; quote it: id: \"{raw}\"")
    elif reason := unsafe_id_reason(raw):
        problems.append(f"{label}: id: {reason}")
    else:
        return raw
    return ""


def _check_url(value: Any, label: str, problems: list[str]) -> None:
    if not isinstance(value, str):
        problems.append(f"{label}: must be a URL (text), not {_kind(value)}")
        return
    if value != value.strip() or " " in value or (not value.isprintable() and any(c.isspace() for c in value)):
        problems.append(f"{label}: contains white space")
        return
    try:
        check_url("", value)
    except ValueError as e:
        problems.append(f"{label}:{str(e).replace(repr(value), repr(value[:80]))}")


def _kind(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", list: "a list", str: "text",
            dict: "a mapping"}.get(type(value), type(value).__name__)
