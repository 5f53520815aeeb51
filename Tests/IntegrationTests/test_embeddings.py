"""POST /v1/embeddings through nginx: OpenAI-compatible upstream, the mock backend, flags and bad input."""

import json

import httpx
import pytest

from conftest import wait_until


def auth(stack, tenant):
    return {"Authorization": f"Bearer {stack.keys[tenant]}"}


def embed(stack, tenant, body):
    with stack.client() as c:
        return c.post(f"/tenant/{tenant}/v1/embeddings", json=body, headers=auth(stack, tenant))


def test_embeddings_reach_the_upstream_with_the_mapped_model(stack):
    r = embed(stack, "acme", {"model": "fast", "input": ["emb-one", "emb-two"]})
    assert r.status_code == 200, r.text
    assert [d["index"] for d in r.json()["data"]] == [0, 1]
    seen = [q for q in stack.upstream_requests() if q["path"].endswith("/embeddings") and "emb-one" in json.dumps(q)]
    assert seen[-1]["body"]["model"] == "upstream-fast-v2"
    rid = r.headers["x-request-id"]
    assert wait_until(lambda: stack.sql("SELECT tokens_in, tokens_out, status FROM executions WHERE request_id = ?",
                                        rid) == [(r.json()["usage"]["prompt_tokens"], 0, 200)])


def test_mock_backend_embeddings_are_deterministic_unit_vectors(stack):
    a = embed(stack, "globex", {"model": "mock-small", "input": "same text"}).json()
    b = embed(stack, "globex", {"model": "mock-small", "input": "same text"}).json()
    v = a["data"][0]["embedding"]
    assert v == b["data"][0]["embedding"] and len(v) == 16
    assert abs(sum(x * x for x in v) - 1) < 1e-6
    assert a["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("body", [
    {"model": "fast"}, {"model": "fast", "input": ""}, {"model": "fast", "input": []}, {"model": "fast", "input": 5},
    {"model": "fast", "input": [1, "a", {}]}, {"model": "fast", "input": "x", "encoding_format": "hex"},
    {"model": "fast", "input": "x", "dimensions": 0}, {"model": 3, "input": "x"},
])
def test_bad_embedding_requests_are_400(stack, body):
    r = embed(stack, "acme", body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


def test_embeddings_flag_and_allow_list(stack):
    r = embed(stack, "nostream", {"model": "fast", "input": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "feature_disabled"
    r = embed(stack, "globex", {"model": "fast", "input": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"


def test_openai_sdk_embeddings(stack):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=stack.base + "/tenant/acme/v1", api_key=stack.keys["acme"],
                           http_client=httpx.Client(verify=False))
    out = client.embeddings.create(model="fast", input=["sdk one", "sdk two"])
    assert len(out.data) == 2 and out.usage.prompt_tokens > 0
