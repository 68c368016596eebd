"""Manifest validation: every problem at once, naming the item and the field."""

from pathlib import Path

import pytest
import yaml

from batch_engine.catalog.manifest import ManifestError, fingerprint, load_manifest
from tests.conftest import cli_env, run_cli


def load(tmp_path: Path, text: str | bytes) -> list:
    path = tmp_path / "m.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return load_manifest(path)


def problems(tmp_path: Path, text: str | bytes) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def test_valid_manifest_applies_defaults(tmp_path):
    """Defaults fill fields an item leaves out; an item's own value wins."""
    specs = load(tmp_path, """
defaults: {prompt_optimizer: false, prompt: House style}
items:
  - {id: a, image_url: "https://x.test/a.jpg"}
  - {id: b, image_url: "https://x.test/b.jpg", prompt: Own prompt, prompt_optimizer: true,
     end_image_url: "https://x.test/b2.png"}
""")
    assert [s.id for s in specs] == ["a", "b"]
    assert specs[0].prompt == "House style" and specs[0].prompt_optimizer is False
    assert specs[1].request()["input"] == {"prompt": "Own prompt", "image_url": "https://x.test/b.jpg",
                                           "end_image_url": "https://x.test/b2.png",
                                           "prompt_optimizer": True}
    assert specs[1].request()["model"] == "hailuo/02-image-to-video-pro"


def test_every_problem_is_reported_at_once(tmp_path):
    """One pass names each bad item (by position and id) and the field at fault."""
    found = problems(tmp_path, f"""
items:
  - id: ok-1
    image_url: https://x.test/1.jpg
    prompt: fine
  - image_url: https://x.test/2.jpg
    prompt: no id here
  - id: ok-1
    image_url: https://x.test/3.jpg
    prompt: duplicate id
  - id: ../escape
    image_url: https://x.test/4.jpg
    prompt: unsafe id
  - id: .hidden
    image_url: ftp://x.test/5.jpg
    prompt: ""
  - id: long
    image_url: https://x.test/6.jpg
    prompt: {"x" * 1501}
  - id: noimage
    prompt: missing image
  - id: typo
    image_url: https://x.test/8.jpg
    promt: misspelt
  - id: 17
    image_url: https://x.test/9.jpg
    prompt: numeric id
    prompt_optimizer: "yes"
  - id: "tab\\there"
    image_url: https://x.test/10.jpg
    prompt: control character
""")
    text = "\n".join(found)
    expected = [
        "item 2 (line 6): id: missing",
        "item 3 (line 8) 'ok-1': id: duplicate of item 1",
        "item 4 (line 11) '../escape': id: contains a path separator",
        "item 5 (line 14) '.hidden': id: starts with a dot",
        "item 5 (line 14) '.hidden': prompt: is empty",
        "item 5 (line 14) '.hidden': image_url: 'ftp://x.test/5.jpg' is not an http(s) URL",
        "item 6 (line 17) 'long': prompt: is 1501 characters; at most 1500",
        "item 7 (line 20) 'noimage': image_url: missing",
        "item 8 (line 22) 'typo': unknown key 'promt' (did you mean 'prompt'?)",
        "item 8 (line 22) 'typo': prompt: missing",
        "item 9 (line 25): id: must be text, not a number",
        "item 9 (line 25): prompt_optimizer: must be true or false",
        "item 10 (line 29) 'tab\\there': id: contains a control or invisible character",
    ]
    for line in expected:
        assert line in text, f"missing: {line}\n---\n{text}"
    assert len(found) == len(expected), text


@pytest.mark.parametrize("text, needle", [
    ("items:\n  - id: a\n    prompt: [unclosed\n", "line 4, column 1: YAML syntax error"),
    ("", "the manifest is empty"),
    ("- id: a\n  prompt: p\n", "the manifest is a list; it must be a mapping with 'items:' (put the list under 'items:')"),
    ("itmes: []\n", "top level: unknown key 'itmes' (did you mean 'items'?)"),
    ("items: []\n", "items: the list is empty"),
    ("items:\n  - id: a\n    id: b\n    prompt: p\n    image_url: https://x.test/a\n", "line 3: key 'id' appears twice"),
    ("items:\n  - id: Shoe\n    prompt: p\n    image_url: https://x.test/a\n  - id: shoe\n    prompt: p\n    image_url: https://x.test/b\n",
     "ids differing only in case"),
    ("defaults: {prompt_optimiser: true}\nitems: [{id: a, prompt: p, image_url: 'https://x.test/a'}]\n",
     "defaults: unknown key 'prompt_optimiser' (did you mean 'prompt_optimizer'?)"),
])
def test_file_level_problems(tmp_path, text, needle):
    """Syntax, shape and key problems get a message that points at the fix."""
    assert any(needle in p for p in problems(tmp_path, text)), problems(tmp_path, text)


def test_non_utf8_manifest(tmp_path):
    """A Latin-1 file is refused with the line of the first bad byte."""
    found = problems(tmp_path, b"items:\n  - id: caf\xe9\n")
    assert found == ["line 2: not UTF-8 text (byte 0xe9); save the manifest as UTF-8"]


def test_fingerprint_changes_with_any_input_field(tmp_path):
    """The fingerprint tells an edited item apart, and is stable for an unchanged one."""
    a = load(tmp_path, "items: [{id: a, prompt: p, image_url: 'https://x.test/a'}]")[0]
    b = load(tmp_path, "items: [{id: a, prompt: p2, image_url: 'https://x.test/a'}]")[0]
    assert fingerprint(a.request()) == fingerprint(a.request())
    assert fingerprint(a.request()) != fingerprint(b.request())


def test_10_an_alias_bomb_is_refused_at_once(tmp_path):
    """Nested YAML aliases that would expand to a billion nodes: exit 2 naming the cause (the run
    is bounded by the CLI helper's time limit; before the fix it never ended)."""
    lines = ["a: &a [" + ",".join(['"lol"'] * 10) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    lines.append("items:\n  - id: x\n    image_url: https://x.test/a.jpg\n    prompt: *i")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert len(path.read_bytes()) < 600
    done = run_cli("run", str(path), "--out", str(tmp_path / "out"), env=cli_env(None), timeout=20)
    assert done.returncode == 2 and "alias" in done.stderr
    assert not (tmp_path / "out").exists()


def test_10_a_self_referencing_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("items: &x\n  - *x\n")
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    assert "refers to itself" in e.value.problems[0]


@pytest.mark.parametrize("item_id, reason", [
    ("日" * 80, "bytes in UTF-8"), ("CON", "reserves"), ("aux.mp4", "reserves"), ("com1", "reserves"),
    ("trailing.", "ends with a dot"), ("zero\u200bwidth", "invisible"),
])
def test_11_ids_that_cannot_be_file_names_everywhere(tmp_path, item_id, reason):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"items": [{"id": item_id, "image_url": "https://x.test/1.jpg",
                                               "prompt": "p"}]}, allow_unicode=True))
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    assert reason in e.value.problems[0]


def test_11_ids_equal_after_normalization_or_case_folding_are_duplicates(tmp_path):
    path = tmp_path / "m.yaml"
    items = [{"id": i, "image_url": "https://x.test/1.jpg", "prompt": "p"}
             for i in ("caf\u00e9", "cafe\u0301", "Straße", "STRASSE")]
    path.write_text(yaml.safe_dump({"items": items}, allow_unicode=True))
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    assert sum("duplicate" in p for p in e.value.problems) == 2


@pytest.mark.parametrize("url, reason", [
    ("https://user:secret@x.test/1.jpg", "user name or password"),
    ("https://x.test:99999/1.jpg", "impossible port"),
    ("https://x.test/a\x00b.jpg", "control character"),
])
def test_11_urls_with_credentials_control_characters_or_impossible_ports(tmp_path, url, reason):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"items": [{"id": "a", "image_url": url, "prompt": "p"}]}))
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    assert reason in e.value.problems[0] and "secret" not in e.value.problems[0]


@pytest.mark.parametrize("prompt", ["evil \u202e reversed", "bell \x07", "esc \x1b[2J"])
def test_11_prompts_with_control_or_bidi_characters(tmp_path, prompt):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"items": [{"id": "a", "image_url": "https://x.test/1.jpg",
                                               "prompt": prompt}]}))
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    assert "prompt: contains a control" in e.value.problems[0]


def manifest_with(tmp_path: Path, defaults: dict, items: list[dict]) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": defaults, "items": items}))
    return path


def test_models_each_check_their_own_fields(tmp_path):
    """Standard takes duration and resolution, 2.3 takes longer prompts and no end frame and no
    10 s at 1080P, Pro takes neither: every field a model does not take is named, never sent."""
    base = {"image_url": "https://x.test/1.jpg"}
    path = manifest_with(tmp_path, {"duration": 6}, [
        {"id": "pro", "prompt": "p", **base},
        {"id": "std", "model": "hailuo/02-image-to-video-standard", "prompt": "p", "resolution": "1080P", **base},
        {"id": "h23", "model": "hailuo/2-3-image-to-video-pro", "prompt": "p" * 3000, "resolution": "1080P",
         "duration": "10", "end_image_url": "https://x.test/2.jpg", **base},
        {"id": "nope", "model": "kling/v9", "prompt": "p", **base},
    ])
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    text = "\n".join(e.value.problems)
    assert "'pro': duration (from defaults): model hailuo/02-image-to-video-pro does not take it" in text
    assert "'std': resolution: '1080P' is not one of 512P, 768P" in text
    assert "'h23': end_image_url: model hailuo/2-3-image-to-video-pro does not take it" in text
    assert "'h23': duration 10 is not allowed at resolution 1080P" in text
    assert "'nope': model: 'kling/v9' is not one of" in text
    assert "p" * 3000 not in text


def test_a_chosen_model_is_sent_with_its_own_input(tmp_path):
    path = manifest_with(tmp_path, {"model": "hailuo/02-image-to-video-standard", "duration": 10}, [
        {"id": "a", "prompt": "p", "image_url": "https://x.test/1.jpg", "resolution": "768P"}])
    request = load_manifest(path)[0].request()
    assert request == {"model": "hailuo/02-image-to-video-standard",
                       "input": {"prompt": "p", "image_url": "https://x.test/1.jpg", "end_image_url": "",
                                 "prompt_optimizer": True, "duration": "10", "resolution": "768P"}}


def test_the_default_model_s_request_is_unchanged_so_old_ledgers_stay_valid(tmp_path):
    path = manifest_with(tmp_path, {}, [{"id": "a", "prompt": "p", "image_url": "https://x.test/1.jpg"}])
    assert load_manifest(path)[0].request() == {
        "model": "hailuo/02-image-to-video-pro",
        "input": {"prompt": "p", "image_url": "https://x.test/1.jpg", "end_image_url": "", "prompt_optimizer": True}}


def test_a_csv_catalog_builds_items_from_columns_and_a_template(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "catalog.csv").write_text(
        "id,image_url,title,style,notes\n"
        "sku-1,https://x.test/1.jpg,watch,warm,ignored\n"
        "sku-2,https://x.test/2.jpg,ring,cold,\n")
    path = tmp_path / "m.yaml"
    path.write_text("defaults: {prompt_optimizer: false}\nitems_from: cat/catalog.csv\n"
                    "prompt_template: 'Slow dolly-in on the {title}, {style} lighting'\n")
    specs = load_manifest(path)
    assert [(s.id, s.prompt, s.prompt_optimizer) for s in specs] == [
        ("sku-1", "Slow dolly-in on the watch, warm lighting", False),
        ("sku-2", "Slow dolly-in on the ring, cold lighting", False)]


def test_a_csv_with_bad_rows_and_a_missing_column_names_every_line(tmp_path):
    (tmp_path / "c.csv").write_text("id,image_url,title\n"
                                    "sku-1,https://x.test/1.jpg,watch\n"
                                    "sku-2,ftp://x.test/2.jpg,ring\n"
                                    "sku-3,https://x.test/3.jpg,\n"
                                    "sku-4,https://x.test/4.jpg,a,b\n")
    path = tmp_path / "m.yaml"
    path.write_text("items_from: c.csv\nprompt_template: '{title} in {style} light'\n")
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    problems = e.value.problems
    assert problems[0] == "c.csv: missing column(s): style (named in prompt_template)"
    assert "c.csv line 5: more values than columns" in problems  # every bad row named in the same go
    assert "c.csv line 4: empty value in column(s) title (used by prompt_template)" in problems
    assert any(p.startswith("c.csv line 3 'sku-2': image_url:") for p in problems)
    assert len(problems) == 4
    path.write_text("items_from: c.csv\nprompt_template: 'the {title}'\n")
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    text = "\n".join(e.value.problems)
    assert "c.csv line 3 'sku-2': image_url: 'ftp://x.test/2.jpg' is not an http(s) URL" in text
    assert "c.csv line 4: empty value in column(s) title" in text
    assert "c.csv line 5: more values than columns" in text
    assert len(e.value.problems) == 3


def test_a_nul_in_a_catalogs_path_or_its_image_paths_is_a_problem_named_by_its_line(tmp_path):
    # a spreadsheet export can carry a NUL; no path holds one (the OS refuses it, Python raises)
    (tmp_path / "c.csv").write_text("id,image,prompt\nsku-1,a\x00b.jpg,hi\n")
    (tmp_path / "c.jsonl").write_text('{"id": "sku-1", "end_image": "b\\u0000.jpg", "image": "a.jpg", "prompt": "hi"}\n')
    for name, line, columns in (("c.csv", 2, "image"), ("c.jsonl", 1, "end_image")):
        path = tmp_path / "m.yaml"
        path.write_text(f"items_from: {name}\n")
        with pytest.raises(ManifestError) as e:
            load_manifest(path)
        assert e.value.problems == [f"{name} line {line}: {columns}: a file's path holds no NUL character"]
    path.write_text('items_from: "c\\0.csv"\n')  # nor does the catalog's own
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    assert len(e.value.problems) == 1 and e.value.problems[0].startswith("items_from: the catalog")
    assert e.value.problems[0].endswith(": no such file")


def test_a_jsonl_catalog_and_an_unknown_placeholder(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"id": "a", "image_url": "https://x.test/1.jpg", "title": "lamp"}\n'
                                      'not json\n')
    path = tmp_path / "m.yaml"
    path.write_text("items_from: c.jsonl\nprompt_template: 'the {title!r}'\n")
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    assert e.value.problems[0] == "c.jsonl line 2: not JSON" and len(e.value.problems) == 2
    assert "placeholder {title} must be a plain column name" in e.value.problems[1]
    (tmp_path / "c.jsonl").write_text('{"id": "a", "image_url": "https://x.test/1.jpg", "title": "lamp"}\n')
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    assert "plain column name" in e.value.problems[0]


def test_validate_shows_what_would_be_sent(tmp_path):
    (tmp_path / "c.csv").write_text("id,image_url,title\n" + "".join(
        f"sku-{i},https://x.test/{i}.jpg,lamp {i}\n" for i in range(5)))
    path = tmp_path / "m.yaml"
    path.write_text("items_from: c.csv\nprompt_template: 'the {title}'\n")
    done = run_cli("validate", str(path), env=cli_env(None))
    assert done.returncode == 0, done.stderr
    assert "valid: 5 item(s); 5 with hailuo/02-image-to-video-pro" in done.stderr
    assert "sku-0: the lamp 0" in done.stderr and "... and 2 more" in done.stderr


@pytest.mark.parametrize("text", [
    "&a x", "a: &b [1]", "a:  &b [1]", "- &a 1", "{a: &b [1, 2], c: *b}", "{?&a x: 1}", "[&a 1, *a]",
    "a: !!str &b x", "a: [1,&b 2]", "? &k key\n: v",
])
def test_every_anchor_is_seen_by_the_quick_look(text):
    """An alias needs an anchor; a manifest the quick look finds none in skips the walk for
    alias bombs, so the quick look must see every anchor PyYAML reads (flow and block)."""
    import yaml

    from batch_engine.catalog.yamlfile import _MAY_HOLD_ANCHOR
    events = list(yaml.parse(text, Loader=yaml.SafeLoader))
    assert any(getattr(e, "anchor", None) for e in events), "the case holds an anchor"
    assert _MAY_HOLD_ANCHOR.search(text)


def test_prose_with_ampersands_needs_no_walk_and_a_bomb_in_flow_style_is_still_refused(tmp_path):
    from batch_engine.catalog.yamlfile import _MAY_HOLD_ANCHOR
    assert not _MAY_HOLD_ANCHOR.search("prompt: salt & pepper, R&D lab, black&white")
    bomb = "a: {x: &a [1,1,1,1,1,1,1,1,1,1]}\n" + "".join(
        f"{c}: {{y: &{c} [{','.join(['*' + p] * 10)}]}}\n" for p, c in zip("abcdefg", "bcdefgh"))
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb + "items: []\n")
    with pytest.raises(ManifestError) as refused:
        load_manifest(path)
    assert "alias bomb" in refused.value.problems[0]


from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("aynNtTfFoO~-+.0123456789:eE_x é&<="), max_size=12))
def test_the_quick_resolver_reads_every_scalar_as_pyyaml_does(value):
    """Most scalars are taken as text without PyYAML's regexes: the data is the same as the
    plain safe loader's, value for value and type for type."""
    from batch_engine.catalog.yamlfile import _Loader
    text = yaml.safe_dump({"v": value}) + f"w: {value}\n" if value.strip() == value and value else "w: x\n"
    try:
        expected = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return
    got = yaml.load(text, Loader=_Loader)
    assert repr(got) == repr(expected)  # repr: a .nan read twice is not equal to itself
