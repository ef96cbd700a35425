"""`nlptool serve`: TF Serving's REST API over a sentiment and a language-model export.

In process through Starlette's test client (every answer, error and
format), with concurrent requests through httpx's ASGI transport (the
batching), and once as the command a user types (a real port, the log).
"""

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from harness import train_tiny
from starlette.testclient import TestClient

from nlptool import runs, server
from nlptool.tasks.base import Splits

POSITIVE = ["a great film", "loved it", "wonderful acting", "best movie ever", "a joy to watch"]
NEGATIVE = ["awful", "boring plot", "terrible film", "worst ever", "a waste of time"]


def reviews(repeat):
    rows = [(t, "pos") for t in POSITIVE * repeat] + [(t, "neg") for t in NEGATIVE * repeat]
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.fixture(scope="module")
def sentiment_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    overrides = ["model.units=4", "model.embedding_dim=4", "tokenizer.vocab_size=40", "training.epochs=1"]
    run = train_tiny("sentiment", Splits(reviews(3), reviews(1), None), overrides, root / "run")
    return run.export(root / "sentiment")


@pytest.fixture(scope="module")
def lm_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("served_lm")
    lines = ["the cat sat on the mat", "a dog sat on a log", "the dog ran"] * 4
    overrides = [
        "tokenizer.vocab_size=30",
        "model.embedding_dim=8",
        "model.units=8",
        "model.layers=1",
        "training.epochs=1",
        "training.batch_size=2",
        "training.window=4",
    ]
    run = train_tiny("language-model", Splits(lines, lines[:2], None), overrides, root / "run")
    return run.export(root / "lm")


@pytest.fixture(scope="module")
def model(sentiment_export):
    return server.ServedModel(sentiment_export.parent)


@pytest.fixture(scope="module")
def client(model):
    with TestClient(
        server.create_app(model, server.Limits(max_rows=8, max_text_length=50, max_request_bytes=4096))
    ) as c:
        yield c


@pytest.fixture(scope="module")
def lm_client(lm_export):
    with TestClient(server.create_app(server.ServedModel(lm_export.parent))) as c:
        yield c


def direct(model, texts):
    """What the signature returns for `texts`, called directly."""
    outputs = model.call(model.signatures["serving_default"], {"text": np.array(texts, dtype=object)})
    return [label.decode() for label in outputs["label"]], outputs["probabilities"].tolist()


PREDICT = "/v1/models/sentiment:predict"


# === status and metadata ===


def test_status_and_metadata_are_tf_servings(client, model):
    status = client.get("/v1/models/sentiment")
    assert status.status_code == 200
    assert status.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert client.get("/v1/models/sentiment/versions/1").json() == status.json()
    metadata = client.get("/v1/models/sentiment/metadata").json()
    assert metadata["model_spec"] == {"name": "sentiment", "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    text = signatures["serving_default"]["inputs"]["text"]
    assert text["dtype"] == "DT_STRING" and text["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert set(signatures["serving_default"]["outputs"]) == {"label", "probabilities"}
    assert signatures["class_names"]["inputs"] == {}


# === predict: both formats give the signature's outputs ===


def test_row_format_gives_one_prediction_a_row(client, model):
    texts = ["a great film", "awful", "an unknown word"]
    labels, probabilities = direct(model, texts)
    response = client.post(PREDICT, json={"instances": texts})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == labels
    np.testing.assert_allclose([p["probabilities"] for p in predictions], probabilities, atol=1e-6)
    # an instance may name its input, a string may come as base64, and a version may be named
    named = client.post(
        "/v1/models/sentiment/versions/1:predict",
        json={"instances": [{"text": texts[0]}, {"b64": base64.b64encode(texts[1].encode()).decode()}, texts[2]]},
    )
    assert named.json() == response.json()


def test_columnar_format_gives_the_outputs_whole(client, model):
    texts = ["a great film", "awful"]
    labels, probabilities = direct(model, texts)
    outputs = client.post(PREDICT, json={"inputs": {"text": texts}}).json()["outputs"]
    assert outputs["label"] == labels
    np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=1e-6)
    assert client.post(PREDICT, json={"inputs": texts}).json()["outputs"] == outputs  # one input: unnamed
    names = client.post(PREDICT, json={"signature_name": "class_names", "inputs": {}}).json()
    assert names == {"outputs": ["neg", "pos"]}


@pytest.mark.parametrize("texts", [[""], ["", "   "], ["\x00"], [], ["é" * 50, "🙂\t\n"]], ids=repr)
def test_any_text_is_answered(client, model, texts):
    response = client.post(PREDICT, json={"instances": texts})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(texts)
    if texts:
        assert [p["label"] for p in predictions] == direct(model, texts)[0]
        assert all(abs(sum(p["probabilities"]) - 1) < 1e-5 for p in predictions)


def test_random_strings_never_fail(client):
    """300 strings of random code points (controls, combining marks, emoji, private use, NUL), in batches."""
    rng = np.random.default_rng(0)
    ranges = [(0, 0x20), (0x20, 0x7F), (0x300, 0x370), (0x4E00, 0x4E80), (0x1F600, 0x1F650), (0xE000, 0xE010)]
    texts = []
    for _ in range(300):
        low, high = ranges[rng.integers(len(ranges))]
        texts.append("".join(chr(c) for c in rng.integers(low, high, size=rng.integers(0, 40))))
    for start in range(0, len(texts), 8):
        batch = texts[start : start + 8]
        response = client.post(PREDICT, json={"instances": batch})
        assert response.status_code == 200, (batch, response.text)
        assert len(response.json()["predictions"]) == len(batch)


def test_an_empty_text_reads_the_same_alone_and_in_a_batch(client):
    alone = client.post(PREDICT, json={"instances": [""]}).json()["predictions"][0]
    mixed = client.post(PREDICT, json={"instances": ["a great film", ""]}).json()["predictions"][1]
    assert alone["label"] == mixed["label"]
    np.testing.assert_allclose(alone["probabilities"], mixed["probabilities"], atol=1e-6)


# === bad requests: a 400 (404 for what does not exist) and TF Serving's error body ===

BAD_REQUESTS = [
    (b"{not json", "JSON Parse error"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"instances": ["a"], "inputs": ["a"]}', "exactly one of 'instances'"),
    (b'{"signature_name": "serving_default"}', "exactly one of 'instances'"),
    (b'{"signature_name": "nope", "instances": ["a"]}', 'Serving signature name: "nope" not found'),
    (b'{"instances": "a great film"}', "'instances' must be a list"),
    (b'{"instances": [1]}', "instances[0].text must hold strings; found a number"),
    (b'{"instances": ["ok", null]}', "instances[1].text must hold strings; found null"),
    (b'{"instances": [["a", "b"]]}', "instances[0].text has the shape [2]; the signature expects []"),
    (b'{"instances": [{"txt": "a"}]}', "instances[0] has no input named 'txt' (inputs: text)"),
    (b'{"instances": [{"b64": "%%%"}]}', "not base64"),
    (b'{"inputs": {"text": [["a"], ["b", "c"]]}}', "lists of different lengths"),
    (b'{"inputs": {"text": "a"}}', "inputs.text has the shape []; the signature expects [?]"),
    (b'{"inputs": {"text": ["a"], "x": 1}}', "'inputs' has no input named 'x'"),
    (b'{"instances": ["a", "b", "c", "d", "e", "f", "g", "h", "i"]}', "9 rows; the limit is 8 (--max-rows)"),
    (b'{"instances": ["' + b"x" * 51 + b'"]}', "a string of 51 characters; the limit is 50 (--max-text-length)"),
    (b'{"instances": ["\\ud800"]}', "unpaired surrogate"),
    (b'{"instances": ["' + b"x" * 5000 + b'"]}', "the limit is 4,096"),
]


@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS, ids=[m for _, m in BAD_REQUESTS])
def test_a_bad_request_is_a_400_saying_what_is_wrong(client, body, message):
    response = client.post(PREDICT, content=body)
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["error"] and message in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", "/v1/models/other", "Servable not found for request: Latest(other)"),
        ("POST", "/v1/models/other:predict", "Servable not found"),
        ("POST", "/v1/models/sentiment/versions/2:predict", "Specific(sentiment, 2)"),
        ("GET", "/v1/models/sentiment/labels/stable", "No version label 'stable'"),
        ("GET", "/v2/anything", "Malformed request: GET /v2/anything"),
        ("POST", "/v1/models/sentiment:nonsense", "Malformed request"),
    ],
)
def test_what_does_not_exist_is_a_404(client, method, path, message):
    response = client.request(method, path)
    assert response.status_code == 404 and message in response.json()["error"]


def test_classify_and_regress_say_to_use_predict(client):
    response = client.post("/v1/models/sentiment:classify", json={"examples": []})
    assert response.status_code == 400 and "use :predict" in response.json()["error"]


# === scalar decoding options: the columnar format ===


def test_decoding_options_go_in_the_columnar_format(lm_client, lm_export):
    inputs = {"prompt": ["the cat", "a dog"], "max_new_tokens": 4, "temperature": 1.0, "top_k": 3, "top_p": 1.0}
    response = lm_client.post(
        "/v1/models/language-model:predict", json={"signature_name": "generate", "inputs": {**inputs, "seed": 5}}
    )
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    expected = runs.load(lm_export).predict(["the cat", "a dog"], max_new_tokens=4, top_k=3, seed=5)
    assert outputs["text"] == [row["text"] for row in expected]
    assert all(1 <= n <= 4 for n in outputs["lengths"])
    # the row format stacks every input: a scalar option has no row, and the error says so
    rows = lm_client.post(
        "/v1/models/language-model:predict",
        json={"signature_name": "generate", "instances": [{**inputs, "prompt": "the cat", "seed": 5}]},
    )
    assert rows.status_code == 400 and "columnar format" in rows.json()["error"]
    # the model's own checks are 400s too
    beam = lm_client.post(
        "/v1/models/language-model:predict",
        json={
            "signature_name": "beam_search",
            "inputs": {
                "prompt": ["a"],
                "max_new_tokens": 3,
                "beam_width": 0,
                "length_penalty": 0.0,
                "min_new_tokens": 0,
            },
        },
    )
    assert beam.status_code == 400 and "beam_width must be in [1, 64]" in beam.json()["error"]
    wrong = lm_client.post(
        "/v1/models/language-model:predict",
        json={"signature_name": "generate", "inputs": {**inputs, "seed": 5, "top_k": 2.5}},
    )
    assert wrong.status_code == 400 and "inputs.top_k must hold whole numbers" in wrong.json()["error"]
    # serving_default takes rows
    default = lm_client.post("/v1/models/language-model:predict", json={"instances": ["the cat", ""]})
    assert default.status_code == 200 and len(default.json()["predictions"]) == 2


# === batching: concurrent requests, one model call ===


def test_concurrent_requests_are_merged_into_few_model_calls(model):
    texts = [f"{POSITIVE[i % 5]} {NEGATIVE[i % 3]}" for i in range(32)]
    labels, probabilities = direct(model, texts)
    app = server.create_app(model, server.Limits(max_batch_size=64, batch_timeout_ms=200))

    async def requests():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*(http.post(PREDICT, json={"instances": [t]}) for t in texts))

    responses = asyncio.run(requests())
    assert all(r.status_code == 200 for r in responses)
    predictions = [r.json()["predictions"][0] for r in responses]
    assert [p["label"] for p in predictions] == labels  # each answer is its own request's
    np.testing.assert_allclose([p["probabilities"] for p in predictions], probabilities, atol=1e-5)
    batcher = app.state.batchers["serving_default"]
    assert batcher.rows == 32 and batcher.calls <= 4, (batcher.calls, batcher.rows)


def test_a_batch_never_exceeds_the_batch_size(model):
    app = server.create_app(model, server.Limits(max_batch_size=5, batch_timeout_ms=100))

    async def requests():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*(http.post(PREDICT, json={"instances": ["a", "b"]}) for _ in range(6)))

    assert all(r.status_code == 200 and len(r.json()["predictions"]) == 2 for r in asyncio.run(requests()))
    batcher = app.state.batchers["serving_default"]
    assert batcher.rows == 12 and batcher.calls >= 6 // 2  # at most two requests (4 rows) a call


# === the command ===


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nlptool_serve_answers_on_localhost_and_logs_each_request(sentiment_export, model):
    port = free_port()
    command = [sys.executable, "-m", "nlptool.cli", "serve", str(sentiment_export.parent), "--port", str(port)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1")
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/models/sentiment"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1][-2000:]
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer within 120 s"
            time.sleep(0.5)
        answer = httpx.post(url + ":predict", json={"instances": ["a great film"]}, timeout=30)
        assert answer.json()["predictions"][0]["label"] == direct(model, ["a great film"])[0][0]
        assert httpx.post(url + ":predict", content=b"{", timeout=30).status_code == 400
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/v1/models/sentiment:predict" in out
    lines = [line for line in err.splitlines() if '"POST /v1/models/sentiment:predict"' in line]
    assert len(lines) == 2 and " 200 " in lines[0] and " 400 " in lines[1], err[-2000:]


def test_serve_refuses_a_folder_without_an_export(tmp_path, capsys):
    from nlptool.cli import main

    assert main(["serve", str(tmp_path)]) == 2
    assert "holds no SavedModel" in capsys.readouterr().err


def test_the_error_body_is_json_for_every_status(client):
    for response in (client.post(PREDICT, content=b"{"), client.get("/v1/models/x")):
        assert response.headers["content-type"] == "application/json"
        assert json.loads(response.content)["error"]
