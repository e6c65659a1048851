"""One row per hub (see :mod:`modelhub.registry.core`): its name, adapter, endpoints, reference
grammar, store folders, sync weight and mirror routes. Registered on import."""

from __future__ import annotations

from ..refgrammar import (
    ModelRef,
    check_revision,
    check_segment,
    fail,
    is_name,
    segments,
    split_at,
    url_basename,
)
from .core import (
    FRAMEWORK_BY_SUFFIX,
    OTHER_FRAMEWORK,
    Endpoint,
    HubRow,
    default_canonical,
    framework_for_filename,
    register,
)


# --- the rows ----------------------------------------------------------------------------------
def _rev_suffix(ref: ModelRef) -> str:
    return f"@{ref.revision.replace('/', '--')}" if ref.revision else ""


# Hugging Face ---------------------------------------------------------------------------------
_HF_GRAMMAR = "hf:ORG/NAME[@REVISION][:PATH] | hf:NAME (a legacy one-part id)"
_HF_VIEWS = frozenset({"blob", "resolve", "raw", "tree", "commit"})  # pages of a repo


def _hf_parse(text: str, body: str) -> ModelRef:  # PATH: a file, or a folder ending in '/'
    head, sep, path = body.partition(":")
    repo, rev = split_at(head)
    segments(text, repo, f"repo id of {_HF_GRAMMAR}", (1, 2))
    if rev is not None:
        check_revision(text, rev)
    for part in (path[:-1] if path.endswith("/") else path).split("/") if sep else ():
        check_segment(text, part, "path in the repo")
    return ModelRef("hf", repo, None if rev == "main" else rev, entry=path if sep else None)


def _hf_web(text: str, path: str) -> ModelRef | None:
    """/ORG/NAME (or a legacy /NAME, unless a two-part id reads too) [/blob|resolve|raw|tree|
    commit/REV[/PATH]]: REV is one decoded segment (refs%2Fpr%2F1), or an unencoded refs/pr/N."""
    import urllib.parse

    segs = [urllib.parse.unquote(s) for s in urllib.parse.urlsplit(text).path.strip("/").split("/")]
    cut = 1 if len(segs) == 1 or [s in _HF_VIEWS for s in segs[1:3]] == [True, False] else 2
    repo, rest = "/".join(segs[:cut]), segs[cut:]
    if rest and (rest[0] not in _HF_VIEWS or len(rest) < 2):
        raise fail(text, "not a model repo, file or folder page (/ORG/NAME, /blob/, /tree/...)")
    width = 3 if rest[1:2] == ["refs"] and len(rest) > 3 and rest[2] in ("pr", "convert") else 1
    rev, inner = "/".join(rest[1 : 1 + width]), "/".join(rest[1 + width :])
    if rest and rest[0] not in ("tree", "commit") and not inner:
        raise fail(text, f"a /{rest[0]}/ URL needs a file path after the revision")
    tail = "" if not inner or rest[0] == "commit" else f":{inner}" + "/" * (rest[0] == "tree")
    return _hf_parse(text, repo + (f"@{rev}{tail}" if rest else ""))


def _hf_dir(ref: ModelRef) -> str:  # a folder reference's own folder; a file's is the repo's
    sub = f"/{ref.entry[:-1]}" if ref.entry and ref.entry.endswith("/") else ""
    return f"huggingface/{ref.name}{_rev_suffix(ref)}{sub}"


register(
    HubRow(
        "hf",
        "modelhub.hubs.hf:HuggingFaceHub",
        grammar=_HF_GRAMMAR,
        parse=_hf_parse,
        canonical=lambda r: default_canonical(r) + (f":{r.entry}" if r.entry else ""),
        endpoints=(Endpoint("hf", "https://huggingface.co", "hf", sdk_env="HF_ENDPOINT"),),
        web_hosts=("huggingface.co", "www.huggingface.co", "hf.co"),
        web=_hf_web,
        framework="huggingface",
        model_dir=_hf_dir,
        folder_shaped=lambda ref: ref.entry is None or ref.entry.endswith("/"),
        weight=4,
        import_help="hf: takes a snapshot folder",
        mirror_routes="modelhub.mirror.hf:HfRoutes",
    )
)


# TensorFlow Hub --------------------------------------------------------------------------------
def _tfhub_parse(text: str, body: str) -> ModelRef:
    segments(text, body, "TF Hub handle", (1, 12))
    return ModelRef("tfhub", body)


register(
    HubRow(
        "tfhub",
        "modelhub.hubs.tfhub:TFHubHub",
        grammar="tfhub:HANDLE",
        parse=_tfhub_parse,
        canonical=lambda ref: f"tfhub:{ref.name}",
        endpoints=(Endpoint("tfhub", "https://tfhub.dev", "tfhub"),),
        web_hosts=("tfhub.dev",),
        web=_tfhub_parse,
        framework="tensorflow",
        model_dir=lambda ref: f"tensorflow/tfhub/{ref.name}",
        folder_shaped=lambda ref: True,
        weight=3,
        import_help="tfhub: a SavedModel folder or .tar.gz, a .tflite, a TF.js folder",
        compressed="a SavedModel kept as its downloaded .tar.gz archive",
        mirror_routes="modelhub.mirror.tfhub:SavedModelRoutes",
    )
)


# Kaggle Models ---------------------------------------------------------------------------------
# The framework segment of a Kaggle handle (kagglesdk's ModelFramework enum, matched without case,
# '_' and '-') → the store folder its files belong in; every other framework goes to "other".
_KAGGLE_FOLDERS = {
    "tensorflow1": "tensorflow",
    "tensorflow2": "tensorflow",
    "tflite": "tensorflow",
    "tfjs": "tensorflow",
    "pytorch": "pytorch",
    "keras": "keras",
    "transformers": "huggingface",
    "onnx": "onnx",
}
_KAGGLE_GRAMMAR = "kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]"
# kagglesdk's ModelFramework members as kaggle.com and kagglehub's enum_to_str spell them: the
# canonical framework segment, whatever the case it was written in (one manifest per version).
KAGGLE_SLUGS = {
    s.lower(): s
    for s in (
        *("tensorFlow1", "tensorFlow2", "tfLite", "tfJs", "pyTorch", "jax", "flax", "pax"),
        *("maxText", "gemmaCpp", "ggml", "gguf", "coral", "scikitLearn", "mxnet", "onnx"),
        *("keras", "transformers", "api", "other", "tensorRtLlm", "triton", "vllm"),
    )
}


def kaggle_slug(written: str) -> str:
    """A framework segment as written (``PyTorch``, ``tf_lite``) → kagglesdk's slug
    (``pyTorch``, ``tfLite``); an unknown one is kept as written (the adapter refuses it)."""
    return KAGGLE_SLUGS.get(written.lower().replace("_", "").replace("-", ""), written)


def _kaggle_parse(text: str, body: str) -> ModelRef:
    head, at = split_at(body)
    parts = segments(text, head, f"Kaggle handle ({_KAGGLE_GRAMMAR})", (4, 5))
    version = parts[4] if len(parts) == 5 else at
    if len(parts) == 5 and at is not None and at != parts[4]:
        raise fail(text, "two versions given")
    if version is not None and not (version.isdigit() and int(version) > 0):
        raise fail(text, f"Kaggle version must be a positive number, got {version!r}")
    parts[2] = kaggle_slug(parts[2])
    return ModelRef("kaggle", "/".join(parts[:4]), str(int(version)) if version else None)


def _kaggle_web(text: str, path: str) -> ModelRef | None:
    """``/models/O/M/FW/VAR[/N]`` and the long ``/models/O/M/frameworks/FW/variations/VAR
    [/versions/N]`` form of kaggle.com's pages."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] != "models":
        return None
    parts = parts[1:]
    if len(parts) >= 2 and parts[2:3] == ["frameworks"]:
        labels = {"frameworks", "variations", "versions"}
        tail = parts[2:]
        if (
            len(tail) % 2
            or [tail[i] for i in range(0, len(tail), 2)]
            != [
                "frameworks",
                "variations",
                "versions",
            ][: len(tail) // 2]
            or any(t in labels for t in tail[1::2])
        ):
            raise fail(text, f"not a Kaggle model version page; expected {_KAGGLE_GRAMMAR}")
        parts = parts[:2] + tail[1::2]
    if len(parts) < 4:
        raise fail(
            text,
            "a Kaggle model page names no framework and variation; copy the URL of a "
            f"variation (…/FRAMEWORK/VARIATION) or write {_KAGGLE_GRAMMAR}",
        )
    return _kaggle_parse(text, "/".join(parts))


def _kaggle_framework(ref: ModelRef) -> str:
    key = ref.name.split("/")[2].lower().replace("_", "").replace("-", "")
    return _KAGGLE_FOLDERS.get(key, OTHER_FRAMEWORK)


def _kaggle_dir(ref: ModelRef) -> str:
    """``<framework>/kaggle/OWNER/MODEL/VARIATION[/VERSION]``: a version's folder; without a
    version, the variation's (the adapter files the version it resolved beneath it)."""
    owner, model, _, variation = ref.name.split("/")
    version = f"/{ref.revision}" if ref.revision else ""
    return f"{_kaggle_framework(ref)}/kaggle/{owner}/{model}/{variation}{version}"


register(
    HubRow(
        "kaggle",
        "modelhub.hubs.kaggle:KaggleHub",
        grammar=_KAGGLE_GRAMMAR,
        parse=_kaggle_parse,
        canonical=lambda ref: f"kaggle:{ref.name}" + (f"/{ref.revision}" if ref.revision else ""),
        endpoints=(Endpoint("kaggle", "https://api.kaggle.com", "kaggle"),),
        web_hosts=("www.kaggle.com", "kaggle.com"),
        web=_kaggle_web,
        framework=_kaggle_framework,
        folders=(*sorted(set(_KAGGLE_FOLDERS.values())), OTHER_FRAMEWORK),
        model_dir=_kaggle_dir,
        folder_shaped=lambda ref: True,
        weight=3,
        import_help="kaggle: a version's folder, as kaggle:OWNER/MODEL/FRAMEWORK/VARIATION/VERSION",
        mirror_routes="modelhub.mirror.kaggle:KaggleRoutes",
    )
)


# ONNX Model Zoo --------------------------------------------------------------------------------
def _onnx_parse(text: str, body: str) -> ModelRef:
    name, opset = split_at(body)
    check_segment(text, name, "ONNX model name")
    if opset is not None and not opset.isdigit():
        raise fail(text, f"ONNX opset must be a number, got {opset!r}")
    return ModelRef("onnx", name, str(int(opset)) if opset is not None else None)


register(
    HubRow(
        "onnx",
        "modelhub.hubs.onnx_zoo:OnnxZooHub",
        grammar="onnx:NAME[@OPSET] | onnx:FILE-STEM",
        parse=_onnx_parse,
        endpoints=(
            Endpoint("onnx", "https://raw.githubusercontent.com/onnx/models/main", "onnx"),
            # The files: the zoo's Hugging Face copy (GitHub LFS stopped serving them in 2025).
            Endpoint("onnx-files", under=("hf", "onnxmodelzoo/legacy_models/resolve/main")),
        ),
        framework="onnx",
        weight=1,
        import_help="onnx: takes .onnx",
        mirror_routes="modelhub.mirror.onnx_zoo:OnnxRoutes",
    )
)


# PyTorch: torchvision weights and torch.hub entrypoints ----------------------------------------
def _torch_parse(text: str, body: str) -> ModelRef:
    if "/" not in body:
        name, weights = split_at(body)
        check_segment(text, name, "torchvision model name")
        if weights is not None:
            check_segment(text, weights, "weights name")
            if weights == "DEFAULT":
                weights = None
        return ModelRef("torch", name, weights)
    parts = body.split("/")
    if len(parts) != 3:
        raise fail(text, "torch.hub references are torch:OWNER/REPO[:REF]/ENTRY")
    owner, repo, entry = parts
    git_ref: str | None = None
    if ":" in repo:
        repo, _, git_ref = repo.partition(":")
        check_revision(text, git_ref, "git ref")
    check_segment(text, owner, "GitHub owner")
    check_segment(text, repo, "GitHub repo")
    check_segment(text, entry, "entrypoint")
    return ModelRef("torch", f"{owner}/{repo}", git_ref, entry=entry)


def _torch_canonical(ref: ModelRef) -> str:
    if ref.entry is None:
        return default_canonical(ref)
    at = f":{ref.revision}" if ref.revision else ""
    return f"torch:{ref.name}{at}/{ref.entry}"


def _torch_dir(ref: ModelRef) -> str:
    if ref.entry is None:
        return "pytorch"
    return f"pytorch/hub/{ref.name}{_rev_suffix(ref)}/{ref.entry}"


register(
    HubRow(
        "torch",
        "modelhub.hubs.torch_hub:TorchHub",
        grammar="torch:NAME[@WEIGHTS] | torch:OWNER/REPO[:REF]/ENTRY",
        parse=_torch_parse,
        canonical=_torch_canonical,
        endpoints=(
            Endpoint("torch", "https://download.pytorch.org", "torch"),
            Endpoint("github", "https://github.com", "torch/github"),
            Endpoint("github-api", "https://api.github.com", "torch/github-api"),
        ),
        framework="pytorch",
        model_dir=_torch_dir,
        folder_shaped=lambda ref: ref.entry is not None,
        weight=3,
        import_help="torch:NAME takes .pth/.pt",
        mirror_routes="modelhub.mirror.plain:TorchRoutes",
    )
)


# Keras Applications ----------------------------------------------------------------------------
def _keras_parse(text: str, body: str) -> ModelRef:
    parts = body.split("/")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] != "notop"):
        raise fail(text, "Keras references are keras:NAME or keras:NAME/notop")
    check_segment(text, parts[0], "Keras application name")
    return ModelRef("keras", parts[0], variant="notop" if len(parts) == 2 else None)


register(
    HubRow(
        "keras",
        "modelhub.hubs.keras_apps:KerasHub",
        grammar="keras:NAME[/notop]",
        parse=_keras_parse,
        canonical=lambda ref: f"keras:{ref.name}" + (f"/{ref.variant}" if ref.variant else ""),
        endpoints=(Endpoint("keras", "https://storage.googleapis.com", "keras"),),
        framework="keras",
        weight=2,
        import_help="keras: .h5/.keras",
        mirror_routes="modelhub.mirror.plain:KerasRoutes",
    )
)


# Plain URLs --------------------------------------------------------------------------------------
def _url_parse(text: str, url: str) -> ModelRef:
    import urllib.parse

    if not url or any(not 0x21 <= ord(c) <= 0x7E for c in url):
        raise fail(text, "URL has spaces or control characters")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise fail(text, "only http(s) URLs can be pulled")
    if not parts.hostname:
        raise fail(text, "URL has no host")
    name = url_basename(url)
    if not name:
        raise fail(text, "URL does not end in a file name")
    check_segment(text, name, "URL file name")
    # Drop the fragment: it never reaches the server and must not split one file into two refs.
    clean = urllib.parse.urlunsplit(parts._replace(fragment=""))
    return ModelRef("url", clean)


def _url_framework(ref: ModelRef) -> str:
    name = url_basename(ref.name)
    if name.lower().endswith(".bin"):  # any binary blob: not assumed to be PyTorch weights
        return OTHER_FRAMEWORK
    return framework_for_filename(name)


def _url_segment(text: str) -> str:
    """``text`` as one store folder name: itself when it is a safe name, else made one."""
    if is_name(text) and ".." not in text and len(text) <= 120:
        return text
    cleaned = "".join(c if is_name(c) or c in "._-" else "_" for c in text)[:120]
    return "_" + cleaned.strip("._")


def _url_dir(ref: ModelRef) -> str:
    """``<framework>/<host>[_<port>]/<folders of the URL path>``: a file is filed under its
    source, keeping its name, so two URLs never share a path. A URL whose parts are not all
    plain names (a query string, odd characters) gets a folder named by its digest too."""
    import urllib.parse

    parts = urllib.parse.urlsplit(ref.name)
    host = (parts.hostname or "host") + (f"_{parts.port}" if parts.port else "")
    folders = [urllib.parse.unquote(s) for s in parts.path.split("/")[1:-1]]
    segs = [_url_segment(host), *(_url_segment(f) for f in folders)]
    if parts.query or segs != [host, *folders]:
        import hashlib

        segs.append("_" + hashlib.sha256(ref.name.encode()).hexdigest()[:12])
    return "/".join([_url_framework(ref), *segs])


register(
    HubRow(
        "url",
        "modelhub.hubs.url:UrlHub",
        grammar="url:URL",
        parse=_url_parse,
        canonical=lambda ref: f"url:{ref.name}",
        framework=_url_framework,
        model_dir=_url_dir,
        folders=(*sorted(set(FRAMEWORK_BY_SUFFIX.values())), OTHER_FRAMEWORK),
        weight=1,
        import_help="url: any file",
        catch_all=True,
    )
)
