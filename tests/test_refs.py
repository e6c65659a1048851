"""References: the whole grammar, canonical printing, and no escape from the store."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelhub.errors import InvalidReferenceError
from modelhub.refs import ModelRef, parse, url_basename
from modelhub.store import layout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hf:org/name", ModelRef("hf", "org/name")),
        ("hf:org/name@main", ModelRef("hf", "org/name")),
        ("hf:org/name@v1.0", ModelRef("hf", "org/name", "v1.0")),
        ("hf:org/name@refs/pr/1", ModelRef("hf", "org/name", "refs/pr/1")),
        ("https://huggingface.co/org/name", ModelRef("hf", "org/name")),
        ("https://huggingface.co/org/name/tree/dev", ModelRef("hf", "org/name", "dev")),
        (
            "tfhub:google/imagenet/mobilenet_v2_100_224/classification/5",
            ModelRef("tfhub", "google/imagenet/mobilenet_v2_100_224/classification/5"),
        ),
        ("https://tfhub.dev/google/bert/3", ModelRef("tfhub", "google/bert/3")),
        (
            "kaggle:google/mobilenet-v2/TensorFlow2/100-224-classification/2",
            ModelRef("kaggle", "google/mobilenet-v2/tensorFlow2/100-224-classification", "2"),
        ),
        (
            "https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/100-224/2",
            ModelRef("kaggle", "google/mobilenet-v2/tensorFlow2/100-224", "2"),
        ),
        (
            "kaggle:google/gemma-3/keras/gemma3_1b@3",
            ModelRef("kaggle", "google/gemma-3/keras/gemma3_1b", "3"),
        ),
        (
            "https://www.kaggle.com/models/google/gemma-3/frameworks/keras/variations/gemma3_1b/versions/3",
            ModelRef("kaggle", "google/gemma-3/keras/gemma3_1b", "3"),
        ),
        (
            "https://www.kaggle.com/models/google/gemma-3/frameworks/keras/variations/gemma3_1b",
            ModelRef("kaggle", "google/gemma-3/keras/gemma3_1b"),
        ),
        ("onnx:mnist", ModelRef("onnx", "mnist")),
        ("onnx:mnist@8", ModelRef("onnx", "mnist", "8")),
        ("onnx:resnet50-v1-12", ModelRef("onnx", "resnet50-v1-12")),
        ("torch:resnet18", ModelRef("torch", "resnet18")),
        ("torch:resnet18@DEFAULT", ModelRef("torch", "resnet18")),
        ("torch:resnet18@IMAGENET1K_V1", ModelRef("torch", "resnet18", "IMAGENET1K_V1")),
        ("torch:pytorch/vision/resnet18", ModelRef("torch", "pytorch/vision", entry="resnet18")),
        (
            "torch:pytorch/vision:v0.10.0/resnet18",
            ModelRef("torch", "pytorch/vision", "v0.10.0", entry="resnet18"),
        ),
        ("keras:ResNet50", ModelRef("keras", "ResNet50")),
        ("keras:MobileNetV2/notop", ModelRef("keras", "MobileNetV2", variant="notop")),
        (
            "url:https://example.com/m/model.onnx",
            ModelRef("url", "https://example.com/m/model.onnx"),
        ),
        ("https://example.com/m/model.onnx", ModelRef("url", "https://example.com/m/model.onnx")),
        ("url:https://example.com/a.onnx#frag", ModelRef("url", "https://example.com/a.onnx")),
        ("ONNX:mnist", ModelRef("onnx", "mnist")),
    ],
)
def test_parse_grammar(text: str, expected: ModelRef) -> None:
    ref = parse(text)
    assert ref == expected
    assert parse(ref.canonical) == ref


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mnist",
        "zz:mnist",
        "onnx:",
        "onnx:../etc",
        "onnx:..",
        "onnx:/etc/passwd",
        "onnx:a/b",
        "onnx:mnist@abc",
        "onnx:mn ist",
        "onnx:mn\x00ist",
        "onnx:mnist\n",
        "onnx:%2e%2e",
        "onnx:a\\b",
        "hf:org/../x",
        "hf:org//x",
        "hf:org/x/y",
        "hf:org/.hidden",
        "hf:org/x@../../etc",
        "hf:org/x@a//b",
        "tfhub:google/../x",
        "tfhub:/abs",
        "kaggle:a/b/c",
        "kaggle:a/b/c/d/v1",
        "torch:a/b/c/d",
        "torch:a/b:../x/e",
        "keras:ResNet50/top",
        "keras:a/b/c",
        "url:ftp://example.com/a.onnx",
        "url:https://example.com/",
        "url:https://example.com/a/..",
        "url:https://example.com/a/%2e%2e",
        "url:https://example.com/a%2f..%2fb",
        "url:https://exa mple.com/a.onnx",
        "url:file:///etc/passwd",
        "onnx:" + "a" * 200,
        "url:https://e.com/" + "a" * 3000,
    ],
)
def test_rejects_bad_references(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse(text)


def test_error_is_one_line_and_exit_code_2() -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse("onnx:../../x\n")
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_url_basename_decodes() -> None:
    assert url_basename("https://h/a/b%20c.onnx?x=1") == "b c.onnx"


ALPHABET = st.sampled_from(
    [*list("abcXYZ019_-.@:/\\%~ "), "..", "%2e", "%2f", "\x00", "\n", "\u202e", "é", "//"]
)
HUB_PREFIXES = st.sampled_from(
    [
        "hf:",
        "tfhub:",
        "kaggle:",
        "onnx:",
        "torch:",
        "keras:",
        "url:https://h.example/",
        "https://huggingface.co/",
        "https://tfhub.dev/",
        "https://www.kaggle.com/models/",
        "",
    ]
)


def _all_store_paths(ref: ModelRef) -> list[str]:
    paths = [layout.model_dir(ref), layout.manifest_path(ref), layout.lock_path(ref)]
    paths.append(layout.file_path(ref, "weights.bin"))
    paths.append(layout.staged_path(ref, "model", "onnx"))
    if ref.hub == "url":
        paths.append(layout.file_path(ref, url_basename(ref.name)))
    return paths


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=HUB_PREFIXES, body=st.lists(ALPHABET, max_size=24).map("".join))
def test_no_accepted_reference_leaves_the_store(prefix: str, body: str, tmp_path_factory) -> None:
    root = Path("/tmp/modelhub-hypothesis-store")
    try:
        ref = parse(prefix + body)
    except InvalidReferenceError:
        return
    assert parse(ref.canonical) == ref
    for rel in _all_store_paths(ref):
        target = layout.resolve_in_store(root, rel)
        assert root in target.parents
        assert ".." not in PurePosixPath(rel).parts


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=64))
def test_arbitrary_text_never_crashes_the_parser(text: str) -> None:
    try:
        ref = parse(text)
    except InvalidReferenceError:
        return
    for rel in _all_store_paths(ref):
        layout.check_relative(rel)


SEGMENT = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,10}", fullmatch=True)
NOISE = st.sampled_from(["", "", "", "..", "/", "%2e", "\\", "\x00", "~", "@", ":"])


@settings(max_examples=600, deadline=None)
@given(
    prefix=HUB_PREFIXES,
    segments=st.lists(st.tuples(SEGMENT, NOISE), min_size=1, max_size=6),
    rev=st.one_of(st.none(), SEGMENT),
)
def test_structured_references_stay_in_store(prefix: str, segments, rev) -> None:
    body = "/".join(seg + noise for seg, noise in segments)
    text = prefix + body + (f"@{rev}" if rev else "")
    root = Path("/tmp/modelhub-hypothesis-store")
    try:
        ref = parse(text)
    except InvalidReferenceError:
        return
    assert parse(ref.canonical) == ref
    for rel in _all_store_paths(ref):
        assert root in layout.resolve_in_store(root, rel).parents


def test_structured_strategy_accepts_many() -> None:
    """Guard against a property test that only ever sees rejected input."""
    accepted = 0
    for text in [
        "onnx:a.b",
        "hf:a/b@c",
        "tfhub:a/b/c",
        "keras:X/notop",
        "torch:a/b:c/d",
        "url:https://h.example/x.onnx",
    ]:
        ref = parse(text)
        accepted += all(
            Path("/r") in layout.resolve_in_store(Path("/r"), p).parents
            for p in _all_store_paths(ref)
        )
    assert accepted == 6
