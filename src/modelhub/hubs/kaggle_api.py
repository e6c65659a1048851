"""Kaggle's model RPCs and credentials, as kagglehub 1.0.3 and kagglesdk 0.1.38 speak them.

Read from kagglesdk ``kaggle_http_client.py`` (``_get_request_url``: ``{base}/v1/{service}/
{method}``, a JSON ``POST``; ``_try_fill_auth``: a Bearer token, else HTTP Basic
``username:key``), ``kaggle_env.py`` (``get_access_token_from_env``: ``KAGGLE_API_TOKEN``, which
may name a file, then ``~/.kaggle/access_token``), ``models/types/model_api_service.py`` (the
request and response fields: ``ownerSlug``, ``modelSlug``, ``framework`` as the
``MODEL_FRAMEWORK_*`` enum name, ``instanceSlug``, ``versionNumber``, ``path``, ``pageSize``,
``pageToken``; ``files[].name/size``, ``nextPageToken``), ``models/types/model_enums.py``
(``ModelFramework``), and kagglehub ``config.py`` (``get_kaggle_credentials``: the token first,
then ``KAGGLE_USERNAME`` + ``KAGGLE_KEY``, then ``kaggle.json`` in ``KAGGLE_CONFIG_DIR`` or
``~/.kaggle``), ``http_resolver.py`` (``_list_model_files``: one page of at most 25 names; a
further page means "download the archive") and ``enum.py`` (``to_enum``: a framework matches
its enum name without case and underscores).

Credentials go only to the RPC endpoint (the transfer engine keeps the ``Authorization``
header on the original origin, never on a storage redirect) and are never printed or stored.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AuthError, ModelhubError, ModelNotFoundError, UsageError
from ..refs import ModelRef
from ..registry.builtin import kaggle_slug

SERVICE = "models.ModelApiService"
#: kagglehub's ``MAX_NUM_FILES_DIRECT_DOWNLOAD``: up to this many files are fetched one by
#: one; a version with more comes as one archive.
MAX_FILES_DIRECT = 25
WEB = "https://www.kaggle.com/models"

# kagglesdk's ModelFramework enum (model_enums.py), by its name without prefix and '_'.
_ENUM = {
    "tensorflow1": "MODEL_FRAMEWORK_TENSOR_FLOW_1",
    "tensorflow2": "MODEL_FRAMEWORK_TENSOR_FLOW_2",
    "tflite": "MODEL_FRAMEWORK_TF_LITE",
    "tfjs": "MODEL_FRAMEWORK_TF_JS",
    "pytorch": "MODEL_FRAMEWORK_PY_TORCH",
    "jax": "MODEL_FRAMEWORK_JAX",
    "flax": "MODEL_FRAMEWORK_FLAX",
    "pax": "MODEL_FRAMEWORK_PAX",
    "maxtext": "MODEL_FRAMEWORK_MAX_TEXT",
    "gemmacpp": "MODEL_FRAMEWORK_GEMMA_CPP",
    "ggml": "MODEL_FRAMEWORK_GGML",
    "gguf": "MODEL_FRAMEWORK_GGUF",
    "coral": "MODEL_FRAMEWORK_CORAL",
    "scikitlearn": "MODEL_FRAMEWORK_SCIKIT_LEARN",
    "mxnet": "MODEL_FRAMEWORK_MXNET",
    "onnx": "MODEL_FRAMEWORK_ONNX",
    "keras": "MODEL_FRAMEWORK_KERAS",
    "transformers": "MODEL_FRAMEWORK_TRANSFORMERS",
    "api": "MODEL_FRAMEWORK_API",
    "other": "MODEL_FRAMEWORK_OTHER",
    "tensorrtllm": "MODEL_FRAMEWORK_TENSOR_RT_LLM",
    "triton": "MODEL_FRAMEWORK_TRITON",
    "vllm": "MODEL_FRAMEWORK_VLLM",
}


def framework_key(written: str) -> str:
    """A framework as written (``TensorFlow2``, ``PyTorch``, ``tf_lite``) → its lookup key."""
    return written.lower().replace("_", "").replace("-", "")


@dataclass(frozen=True)
class Handle:
    """A Kaggle model variation, as a reference names it (the framework as kagglesdk's slug,
    which a parsed reference always has: the path kagglehub caches it under, for kagglehub
    uses a handle's segments as they are), with the version when known."""

    owner: str
    model: str
    framework: str
    variation: str
    version: int | None = None

    @classmethod
    def of(cls, ref: ModelRef) -> Handle:
        """The handle of a ``kaggle:`` reference. Raises UsageError for a framework kagglesdk
        does not know (its enum is the protocol's)."""
        owner, model, framework, variation = ref.name.split("/")
        if framework_key(framework) not in _ENUM:
            known = ", ".join(sorted({kaggle_slug(k) for k in _ENUM}))
            raise UsageError(f"{ref}: Kaggle has no framework {framework!r}; one of {known}")
        return cls(owner, model, framework, variation, int(ref.revision) if ref.revision else None)

    @property
    def key(self) -> str:
        """The framework's lookup key (``pytorch``)."""
        return framework_key(self.framework)

    @property
    def slug(self) -> str:
        """The framework as kaggle.com writes it (``pyTorch``)."""
        return kaggle_slug(self.key)

    def with_version(self, version: int) -> Handle:
        """This handle at ``version``."""
        return Handle(self.owner, self.model, self.framework, self.variation, version)

    def page(self) -> str:
        """The model's page on kaggle.com (where its licence is accepted)."""
        tail = f"/{self.version}" if self.version else ""
        return f"{WEB}/{self.owner}/{self.model}/{self.slug}/{self.variation}{tail}"

    def request(self, **extra: Any) -> dict[str, Any]:
        """The JSON body of an RPC about this handle (its version included when known)."""
        body: dict[str, Any] = {
            "ownerSlug": self.owner,
            "modelSlug": self.model,
            "framework": _ENUM[self.key],
            "instanceSlug": self.variation,
        }
        if self.version is not None:
            body["versionNumber"] = self.version
        body.update({k: v for k, v in extra.items() if v is not None})
        return body


@dataclass(frozen=True)
class Credentials:
    """Who to say we are: a Bearer token, or HTTP Basic ``username:key`` (never printed)."""

    token: str | None = None
    basic: str | None = None  # base64 of "username:key"
    source: str = ""

    def __repr__(self) -> str:  # never show the secret
        return f"Credentials(source={self.source!r})"

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header for HTTP Basic (a token goes through the transfer
        engine's own token scoping)."""
        return {"Authorization": f"Basic {self.basic}"} if self.basic else {}


def _read_token(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def credentials() -> Credentials | None:
    """The first credentials found, in kagglehub's order; None for anonymous access."""
    env = os.environ.get("KAGGLE_API_TOKEN", "").strip()
    home = Path("~/.kaggle").expanduser()
    if env and Path(env).expanduser().exists():
        # kagglesdk: a path there is read, and an empty file means no token at all (the token
        # files are not looked at: the username and key come next)
        token = _read_token(Path(env).expanduser())
        if token:
            return Credentials(token=token, source="KAGGLE_API_TOKEN (file)")
    elif env:
        return Credentials(token=env, source="KAGGLE_API_TOKEN")
    else:
        for name in ("access_token", "access_token.txt"):
            token = _read_token(home / name)
            if token:
                return Credentials(token=token, source=f"~/.kaggle/{name}")
    user, key = os.environ.get("KAGGLE_USERNAME", ""), os.environ.get("KAGGLE_KEY", "")
    if user and key:
        basic = base64.b64encode(f"{user}:{key}".encode()).decode()
        return Credentials(basic=basic, source="KAGGLE_USERNAME/KAGGLE_KEY")
    folder = os.environ.get("KAGGLE_CONFIG_DIR", "").strip()
    config = Path(folder).expanduser() if folder else home
    path = config / "kaggle.json"
    if path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            user, key = str(doc["username"]), str(doc["key"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(
                f"{path} is not a Kaggle credentials file (JSON with username and key); "
                "fix it or remove it"
            ) from None
        basic = base64.b64encode(f"{user}:{key}".encode()).decode()
        return Credentials(basic=basic, source=str(path))
    return None


class Client:
    """The model RPCs of one Kaggle endpoint (``base``: ``https://api.kaggle.com``, a mirror's
    ``/kaggle``, or ``MODELHUB_KAGGLE_URL``)."""

    def __init__(self, base: str, creds: Credentials | None) -> None:
        self.base = base.rstrip("/")
        self.creds = creds
        #: What the RPCs showed of the model: "gated" once one was refused without credentials
        #: and answered with them, "public" once one was answered without; None before.
        self.access: str | None = None

    def url(self, method: str) -> str:
        """The RPC's URL (kagglesdk ``_get_request_url``)."""
        return f"{self.base}/v1/{SERVICE}/{method}"

    def auth(self) -> tuple[str | None, dict[str, str]]:
        """``(token, headers)`` for the transfer engine."""
        if self.creds is None:
            return None, {}
        return self.creds.token, self.creds.headers()

    def call(self, method: str, body: dict[str, Any], handle: Handle) -> dict[str, Any]:
        """POST one RPC; its JSON answer. Maps refusals to the contract's errors.

        With credentials, an RPC goes without them first until one is refused (then the model
        is gated: :attr:`access`), so that a mirror knows to serve it only with a token."""
        if self.creds is not None and self.access != "gated":
            try:
                doc = self._post(method, body, handle, anonymous=True)
            except (AuthError, ModelNotFoundError):
                self.access = "gated"  # refused without credentials: try with them
            else:
                self.access = "public"
                return doc
        doc = self._post(method, body, handle)
        self.access = self.access or "public"
        return doc

    def _post(
        self, method: str, body: dict[str, Any], handle: Handle, *, anonymous: bool = False
    ) -> dict[str, Any]:
        from .. import transfer

        token, headers = (None, {}) if anonymous else self.auth()
        try:
            resp = transfer.fetch(
                self.url(method),
                method="POST",
                body=json.dumps(body).encode(),
                token=token,
                headers={"Accept": "application/json", **headers},
            )
        except AuthError:
            raise self.denied(handle) from None
        except ModelNotFoundError:
            raise ModelNotFoundError(
                f"kaggle:{handle_text(handle)} not found on Kaggle ({self.base}); check the "
                f"owner, model, framework and variation on {WEB}"
            ) from None
        try:
            doc = json.loads(resp.body or b"{}")
        except ValueError:
            raise ModelhubError(f"{self.url(method)} did not answer JSON") from None
        if not isinstance(doc, dict):
            raise ModelhubError(f"{self.url(method)} answered JSON that is not an object")
        return doc

    def denied(self, handle: Handle) -> AuthError:
        """The one-line error for a 401/403: say how to get access, never the secret."""
        who = (
            f"the credentials from {self.creds.source} were refused"
            if self.creds
            else (
                "no Kaggle credentials were found (KAGGLE_API_TOKEN, ~/.kaggle/access_token, "
                "KAGGLE_USERNAME+KAGGLE_KEY or kaggle.json)"
            )
        )
        return AuthError(
            f"kaggle:{handle_text(handle)}: access denied ({who}); if the model is gated, "
            f"accept its licence on {handle.page()} with the account whose token you use"
        )

    def current_version(self, handle: Handle) -> int:
        """``GetModelInstance``: the variation's current version number."""
        doc = self.call("GetModelInstance", handle.request(), handle)
        version = doc.get("versionNumber")
        if not isinstance(version, int) or version <= 0:
            raise ModelhubError(f"kaggle:{handle_text(handle)}: GetModelInstance named no version")
        return version

    def list_files(self, handle: Handle) -> tuple[list[tuple[str, int | None]], bool]:
        """``ListModelInstanceVersionFiles``, first page of ``MAX_FILES_DIRECT``: its
        ``(name, size)`` pairs, and whether there are more (then the archive is fetched)."""
        doc = self.call(
            "ListModelInstanceVersionFiles",
            handle.request(pageSize=MAX_FILES_DIRECT),
            handle,
        )
        return _files(doc), bool(doc.get("nextPageToken"))

    def download_body(self, handle: Handle, path: str | None) -> bytes:
        """The JSON body of ``DownloadModelInstanceVersion`` for one file or the archive."""
        return json.dumps(handle.request(path=path)).encode()


def _files(doc: dict[str, Any]) -> list[tuple[str, int | None]]:
    out = []
    for item in doc.get("files") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ModelhubError("ListModelInstanceVersionFiles answered a file without a name")
        size = item.get("size")
        out.append(
            (
                item["name"],
                int(size) if isinstance(size, (int, str)) and str(size).isdigit() else None,
            )
        )
    return out


def handle_text(handle: Handle) -> str:
    """``OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]`` as written."""
    tail = f"/{handle.version}" if handle.version else ""
    return f"{handle.owner}/{handle.model}/{handle.framework}/{handle.variation}{tail}"
