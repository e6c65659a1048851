"""Framework clients against the mirror: torch.hub, keras.utils.get_file, transformers.

Each test is skipped where its framework is not installed; each builds a tiny real model with
that framework, imports it, and has the framework's own download function fetch it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelhub.mirror import running
from modelhub.refs import parse
from modelhub.store import Store
from tests.mirror.conftest import do_import


def test_torch_hub_load_state_dict_from_url_check_hash(store: Store, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    torch.manual_seed(0)
    state = torch.nn.Linear(3, 2).state_dict()
    raw = tmp_path / "tiny.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    named = raw.rename(tmp_path / f"tinynet-{digest[:8]}.pth")  # torchvision's naming
    do_import(store, named, "torch:tinynet")
    with running(store.root) as url:
        got = torch.hub.load_state_dict_from_url(
            f"{url}/torch/models/{named.name}",
            model_dir=str(tmp_path / "torch-cache"),
            check_hash=True,
            progress=False,
            weights_only=True,
        )
    assert set(got) == set(state)
    assert all(torch.equal(got[k], state[k]) for k in state)
    assert (tmp_path / "torch-cache" / named.name).read_bytes() == named.read_bytes()


def test_keras_get_file_with_file_hash(store: Store, tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    import numpy as np

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    source = tmp_path / "tiny_weights_tf_dim_ordering_tf_kernels.h5"
    model.save(str(source))
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    do_import(store, source, "keras:TinyNet")
    with running(store.root) as url:
        got = keras.utils.get_file(
            origin=f"{url}/keras/tensorflow/keras-applications/tinynet/{source.name}",
            file_hash=sha,
            cache_dir=str(tmp_path / "keras-home"),
            cache_subdir="models",
        )
    assert Path(got).read_bytes() == source.read_bytes()
    loaded = keras.models.load_model(got, compile=False)
    x = np.ones((1, 2), dtype="float32")
    assert np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_transformers_from_pretrained_with_hf_endpoint(store: Store, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")

    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    local = tmp_path / "tiny-bert"
    transformers.BertModel(config).save_pretrained(local)
    do_import(store, local, "hf:test-org/tiny-bert")
    script = (
        "import hashlib, json, sys\n"
        "from transformers import AutoModel\n"
        "m = AutoModel.from_pretrained(sys.argv[1])\n"
        "sd = m.state_dict()\n"
        "h = {k: hashlib.sha256(v.detach().numpy().tobytes()).hexdigest() for k, v in sd.items()}\n"
        "print(json.dumps(h))\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))
    }
    with running(store.root) as url:
        env.update(
            HF_ENDPOINT=f"{url}/hf",
            HF_HUB_CACHE=str(tmp_path / "hf-cache"),
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_TELEMETRY="1",
        )
        remote = subprocess.run(
            [sys.executable, "-c", script, "test-org/tiny-bert"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    assert remote.returncode == 0, remote.stderr[-3000:]
    offline = dict(env, HF_HUB_OFFLINE="1")
    reference = subprocess.run(
        [sys.executable, "-c", script, str(local)],
        env=offline,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    assert json.loads(remote.stdout.splitlines()[-1]) == json.loads(
        reference.stdout.splitlines()[-1]
    )
    snapshots = tmp_path / "hf-cache" / "models--test-org--tiny-bert" / "snapshots"
    manifest = store.require(parse("hf:test-org/tiny-bert"))
    assert [p.name for p in snapshots.iterdir()] == [manifest.revision]
