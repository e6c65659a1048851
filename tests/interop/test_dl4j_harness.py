"""The DL4J harness (interop/dl4j) end to end: built with Maven, run on real staged forms.

Each model is made here with its own framework and written as modelhub stages it (torch ONNX
export at the default opset with a dynamic batch, a Keras model frozen with
``convert_variables_to_constants_v2``, Keras ``.h5`` files), with a parity fixture of seeded
inputs and the source framework's outputs. One harness run imports them all with DL4J
1.0.0-M2.x's real importers. The assertions are what interop/dl4j/FINDINGS.md measured: what
imports and matches, and that a refused or wrong form is reported per job, never a crash.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from modelhub.staging.onnx_dl4j import make_dl4j_compatible

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "interop" / "dl4j"
MAIN = "org.modelhub.dl4j.Harness"

pytestmark = pytest.mark.timeout(1200)


class Unavailable(Exception):
    """Java or Maven is missing, or the build failed: every test fails saying so."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise Unavailable(
            f"`{name}` is not on PATH: the DL4J harness test needs a Java 17 JDK and Maven "
            "(present on developer machines and in CI; e.g. apt-get install "
            "openjdk-17-jdk-headless maven)"
        )
    return path


@pytest.fixture(scope="module")
def built() -> str | Unavailable:
    """Builds the harness (``mvn -q -B package``, Maven's cache in ~/.m2); its class path (the
    thin jar plus target/classpath.txt), or why there is none (the tests then fail with it)."""
    try:
        mvn = _tool("mvn")
        _tool("java")
    except Unavailable as missing:
        return missing
    proc = subprocess.run(
        [mvn, "-q", "-B", "package"],
        cwd=HARNESS,
        capture_output=True,
        text=True,
        timeout=1000,
        stdin=subprocess.DEVNULL,
    )
    jar = HARNESS / "target" / "modelhub-dl4j-harness.jar"
    cp_file = HARNESS / "target" / "classpath.txt"
    if proc.returncode != 0 or not jar.is_file() or not cp_file.is_file():
        tail = (proc.stdout + proc.stderr)[-4000:]
        return Unavailable(f"mvn package failed (exit {proc.returncode}):\n{tail}")
    return f"{jar}{os.pathsep}{cp_file.read_text(encoding='utf-8').strip()}"


def _fixture(store: Path, rel: str, inputs: list[Any], outputs: list[Any]) -> str:
    """An uncompressed .npz as numpy.savez writes it: input_0.., then output_0.."""
    arrays: dict[str, Any] = {f"input_{i}": np.asarray(a) for i, a in enumerate(inputs)}
    arrays.update({f"output_{i}": np.asarray(a) for i, a in enumerate(outputs)})
    (store / rel).parent.mkdir(parents=True, exist_ok=True)
    np.savez(store / rel, **arrays)
    return rel


def _job(
    id_: str, fmt: str, path: str, fixture: str, inputs: list[str], outputs: list[str]
) -> dict[str, Any]:
    return {
        "id": id_,
        "format": fmt,
        "path": path,
        "fixture": fixture,
        "inputs": inputs,
        "outputs": outputs,
        "tolerance": 1e-4,
    }


def _onnx_jobs(store: Path) -> tuple[list[dict[str, Any]], float]:
    """A conv net exported as modelhub's torch staging does (opset 17, legacy exporter,
    dynamic batch), the same file rewritten by modelhub.staging.onnx_dl4j, and a rank-3 MatMul.
    Returns the jobs and max |fc.bias| (what DL4J's Gemm import loses)."""
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 8 * 8, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y: torch.Tensor = self.fc(torch.flatten(torch.relu(self.conv(x)), 1))
            return y

    torch.manual_seed(0)
    net = Net().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
        raw = store / "pytorch" / "convnet.onnx"
        raw.parent.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(
            net,
            (torch.from_numpy(x),),
            str(raw),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=17,
            dynamo=False,
            do_constant_folding=True,
        )
    compat = make_dl4j_compatible(onnx.load(str(raw)))
    onnx.save(compat, str(store / "pytorch" / "convnet.dl4j.onnx"))
    fx = _fixture(store, "fixtures/convnet.npz", [x], [ref])

    rng = np.random.default_rng(1)
    weight = rng.standard_normal((6, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul")],
        "batched",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 4])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (store / "onnx").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(store / "onnx" / "matmul3d.onnx"))
    xb = rng.standard_normal((2, 5, 6)).astype(np.float32)
    mm = _fixture(store, "fixtures/matmul3d.npz", [xb], [xb @ weight])

    jobs = [
        _job("onnx-raw", "onnx", "pytorch/convnet.onnx", fx, ["input"], ["output"]),
        _job("onnx-dl4j", "onnx", "pytorch/convnet.dl4j.onnx", fx, ["input"], ["output"]),
        _job("onnx-matmul3d", "onnx", "onnx/matmul3d.onnx", mm, ["x"], ["y"]),
    ]
    return jobs, float(np.abs(net.fc.bias.detach().numpy()).max())


def _tf_jobs(store: Path) -> list[dict[str, Any]]:
    """A Keras 3 conv model frozen to a GraphDef; the same kind of model as Keras 2 (tf_keras)
    .h5 and as Keras 3 .h5."""
    import keras
    import tensorflow as tf
    import tf_keras
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    rng = np.random.default_rng(2)
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = keras.layers.MaxPooling2D(2)(h)
    out = keras.layers.Dense(5, name="logits")(keras.layers.Flatten()(h))
    conv = keras.Model(inp, out)
    xc = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    spec = tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")
    frozen = convert_variables_to_constants_v2(
        tf.function(lambda t: conv(t, training=False)).get_concrete_function(spec)
    )
    (store / "tensorflow").mkdir(parents=True, exist_ok=True)
    (store / "tensorflow" / "conv.pb").write_bytes(frozen.graph.as_graph_def().SerializeToString())
    pb_fx = _fixture(store, "fixtures/conv-pb.npz", [xc], [np.asarray(conv(xc, training=False))])
    tensors_in = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    tensors_out = [t.name for t in frozen.outputs]

    tf_keras.utils.set_random_seed(0)
    k2 = tf_keras.Sequential(
        [
            tf_keras.layers.InputLayer((6,)),
            tf_keras.layers.Dense(8, activation="relu"),
            tf_keras.layers.Dense(3, activation="softmax"),
        ]
    )
    k3 = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    k3.set_weights(k2.get_weights())
    (store / "keras").mkdir(parents=True, exist_ok=True)
    k2.save(str(store / "keras" / "dense.keras2.h5"))
    k3.save(str(store / "keras" / "dense.keras3.h5"))
    xd = rng.standard_normal((4, 6)).astype(np.float32)
    h5_fx = _fixture(store, "fixtures/dense.npz", [xd], [np.asarray(k3(xd, training=False))])
    return [
        _job("pb-keras3-frozen", "pb", "tensorflow/conv.pb", pb_fx, tensors_in, tensors_out),
        _job("h5-keras2", "h5", "keras/dense.keras2.h5", h5_fx, ["x"], ["y"]),
        _job("h5-keras3", "h5", "keras/dense.keras3.h5", h5_fx, ["x"], ["y"]),
    ]


def _run(classpath: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("java"), "-cp", classpath, MAIN, *args],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def run_or_unavailable(
    built: str | Unavailable, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], float] | Unavailable:
    """One harness run over every job (module-wide), or why it could not run."""
    if isinstance(built, Unavailable):
        return built
    classpath = built
    store = tmp_path_factory.mktemp("dl4j-store")
    onnx_jobs, bias = _onnx_jobs(store)
    jobs = [
        *onnx_jobs,
        *_tf_jobs(store),
        _job("missing-file", "onnx", "onnx/absent.onnx", "fixtures/convnet.npz", ["x"], ["y"]),
        {"id": "no-format", "path": "onnx/absent.onnx"},
    ]
    jobs_file = store / "jobs.json"
    jobs_file.write_text(json.dumps({"store": str(store), "jobs": jobs}), encoding="utf-8")
    out_file = store / "out.json"
    proc = _run(classpath, [str(jobs_file), str(out_file)])
    assert out_file.is_file(), f"no OUT.json (exit {proc.returncode}): {proc.stderr[-3000:]}"
    return proc, json.loads(out_file.read_text(encoding="utf-8")), bias


Run = tuple[subprocess.CompletedProcess[str], dict[str, Any], float]
T = TypeVar("T")


def _ready(value: T | Unavailable) -> T:
    """The fixture's value; the test FAILS (never skips) when Java/Maven or the build is not
    there."""
    if isinstance(value, Unavailable):
        pytest.fail(str(value))
    return value


def _results(run: Run) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in run[1]["results"]}


def test_the_harness_runs_every_job_and_keeps_stdout_clean(
    run_or_unavailable: Run | Unavailable,
) -> None:
    proc, out, _ = _ready(run_or_unavailable)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == ""
    assert out["dl4j_version"].startswith("1.0.0-M2")
    assert out["java_version"]
    ids = [r["id"] for r in out["results"]]
    assert ids == [
        "onnx-raw",
        "onnx-dl4j",
        "onnx-matmul3d",
        "pb-keras3-frozen",
        "h5-keras2",
        "h5-keras3",
        "missing-file",
        "no-format",
    ]
    for r in out["results"]:
        assert set(r) == {"id", "ok", "stage", "error", "max_abs_diff", "seconds"}
        assert r["stage"] in {"import", "run", "compare", "done"}
        assert (r["error"] is None) == r["ok"], r
        assert r["seconds"] >= 0


@pytest.mark.parametrize("job", ["onnx-dl4j", "pb-keras3-frozen", "h5-keras2"])
def test_dl4j_imports_and_matches_the_source(
    run_or_unavailable: Run | Unavailable, job: str
) -> None:
    r = _results(_ready(run_or_unavailable))[job]
    assert r["ok"] and r["stage"] == "done", r
    assert r["max_abs_diff"] is not None and r["max_abs_diff"] <= 1e-4


def test_the_raw_torch_export_imports_but_dl4j_drops_the_gemm_bias(
    run_or_unavailable: Run | Unavailable,
) -> None:
    run = _ready(run_or_unavailable)
    r = _results(run)["onnx-raw"]
    assert not r["ok"] and r["stage"] == "compare", r
    # The whole difference is the Linear layer's bias: DL4J 1.0.0-M2.1 maps Gemm without C.
    assert r["max_abs_diff"] == pytest.approx(run[2], abs=1e-5)
    assert r["error"].startswith("max |diff|") and "exceeds the tolerance" in r["error"]


@pytest.mark.parametrize(
    ("job", "stage", "words"),
    [
        ("h5-keras3", "import", ["Keras major version has to be either 1 or 2 (3 provided)"]),
        ("onnx-matmul3d", "import", ["Op matmul", "ranks of arrays must be the same"]),
        ("missing-file", "import", ["FileNotFoundException", "no staged file"]),
        ("no-format", "import", ["bad job", '"format"']),
    ],
)
def test_a_refused_form_is_reported_not_crashed(
    run_or_unavailable: Run | Unavailable,
    job: str,
    stage: str,
    words: list[str],
) -> None:
    r = _results(_ready(run_or_unavailable))[job]
    assert not r["ok"] and r["stage"] == stage and r["max_abs_diff"] is None, r
    for word in words:
        assert word in r["error"], r["error"]


@pytest.mark.parametrize(
    "make_args",
    [
        lambda tmp: [],
        lambda tmp: [str(tmp / "jobs.json")],
        lambda tmp: [str(tmp / "absent.json"), str(tmp / "out.json")],
    ],
)
def test_bad_arguments_exit_2(
    built: str | Unavailable, tmp_path: Path, make_args: Callable[[Path], list[str]]
) -> None:
    proc = _run(_ready(built), make_args(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "out.json").exists()
