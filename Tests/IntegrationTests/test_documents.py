"""Per-tenant document collections through nginx: the API, isolation (including BM25 statistics), chunking
and de-duplication, ranking, hostile queries and bodies, vector and hybrid search, retrieval-augmented chat
through both SDKs, guardrails on retrieved text, the CLI, and deletion with the tenant."""

import json
import sqlite3
import uuid

import anthropic
import httpx
import openai
import pytest

from conftest import wait_until


def auth(stack, tenant):
    return {"Authorization": f"Bearer {stack.keys[tenant]}"}


def api(stack, tenant, method, path, **kw):
    return httpx.request(method, f"{stack.base}/tenant/{tenant}/v1/collections{path}", verify=False, timeout=30,
                         headers={**auth(stack, tenant), **kw.pop("headers", {})}, **kw)


def fresh(stack, tenant, **extra):
    name = f"c-{uuid.uuid4().hex[:10]}"
    r = api(stack, tenant, "POST", "", json={"name": name, **extra})
    assert r.status_code == 201, r.text
    return name


def add(stack, tenant, name, text, **extra):
    r = api(stack, tenant, "POST", f"/{name}/documents", json={"text": text, **extra})
    assert r.status_code in (200, 201), r.text
    return r.json()


def search(stack, tenant, name, query, **extra):
    return api(stack, tenant, "POST", f"/{name}/search", json={"query": query, **extra})


CORPUS = {
    "rust.md": "Rust ownership rules: every value has one owner. The borrow checker enforces references.",
    "python.md": "Python asyncio runs coroutines on an event loop; await yields control to the loop.",
    "baking.md": "An apple pie needs apples, butter, flour and sugar. Bake the pie for forty minutes.",
    "sqlite.md": "SQLite full-text search uses FTS5 virtual tables with BM25 ranking of matching rows.",
}


def test_collections_and_documents_round_trip(stack):
    name = fresh(stack, "docs")
    listed = api(stack, "docs", "GET", "").json()
    assert listed["object"] == "list" and name in [c["name"] for c in listed["data"]]
    doc = add(stack, "docs", name, CORPUS["rust.md"], source="rust.md")
    assert doc["object"] == "document" and doc["id"].startswith("doc_") and doc["chunks"] == 1
    got = api(stack, "docs", "GET", f"/{name}/documents/{doc['id']}").json()
    assert got["text"] == CORPUS["rust.md"] and got["source"] == "rust.md" and got["format"] == "markdown"
    info = api(stack, "docs", "GET", f"/{name}").json()
    assert info["documents"] == 1 and info["chunks"] == 1 and info["bytes"] == len(CORPUS["rust.md"])
    assert [d["id"] for d in api(stack, "docs", "GET", f"/{name}/documents").json()["data"]] == [doc["id"]]
    gone = api(stack, "docs", "DELETE", f"/{name}/documents/{doc['id']}")
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert api(stack, "docs", "GET", f"/{name}/documents/{doc['id']}").status_code == 404
    assert api(stack, "docs", "GET", f"/{name}").json()["chunks"] == 0
    assert search(stack, "docs", name, "borrow checker").json()["data"] == []
    assert api(stack, "docs", "DELETE", f"/{name}").json()["deleted"] is True
    assert api(stack, "docs", "GET", f"/{name}").status_code == 404
    # Its index went with it.
    # (Other tests' live collections have their index and its FTS5 shadow tables, `doc_fts_N_data`…)
    indexes = {n for (n,) in stack.sql("SELECT name FROM sqlite_master WHERE name LIKE 'doc_fts_%' AND type = 'table'")
               if n.removeprefix("doc_fts_").isdigit()}
    assert indexes <= live_indexes(stack)


def live_indexes(stack):
    return {f"doc_fts_{i}" for (i,) in stack.sql("SELECT id FROM doc_collections")}


def test_ranking_on_a_fixed_corpus(stack):
    name = fresh(stack, "docs")
    for source, text in CORPUS.items():
        add(stack, "docs", name, text, source=source)
    expected = {"borrow checker ownership": "rust.md", "event loop coroutines": "python.md",
                "how long to bake an apple pie": "baking.md", "BM25 ranking in FTS5": "sqlite.md"}
    for query, source in expected.items():
        r = search(stack, "docs", name, query, k=3)
        assert r.status_code == 200, r.text
        hits = r.json()["data"]
        assert hits[0]["source"] == source, (query, hits)
        assert hits == sorted(hits, key=lambda h: -float(h["score"]))
        assert all(h["chunk_id"].startswith(h["document_id"] + "#") for h in hits)


def test_chunking_on_paragraphs_with_overlap_and_deduplication(stack):
    name = fresh(stack, "docs")
    paragraphs = [f"Paragraph {i} " + " ".join(f"w{i}x{j}" for j in range(30)) + "." for i in range(6)]
    text = "\n\n".join(paragraphs)
    doc = add(stack, "docs", name, text)
    # chunk_tokens 64 (256 bytes) for this tenant: each ~190-byte paragraph is a chunk of its own.
    assert doc["chunks"] == 6
    rows = stack.sql("SELECT seq, ch.text FROM doc_chunks ch JOIN doc_documents d ON d.id = ch.document "
                     "WHERE d.uid = ? ORDER BY seq", doc["id"])
    assert [s for s, _ in rows] == list(range(6))
    assert all(len(t.encode()) <= 256 for _, t in rows)
    for (_, previous), (_, current) in zip(rows, rows[1:]):
        # Each chunk after the first starts with the end of the one before (overlap_tokens 8: ≤ 32 bytes).
        head = current.split("\n\n")[0]
        assert previous.endswith(head) and 0 < len(head) <= 32
    again = add(stack, "docs", name, text)
    assert again["id"] == doc["id"] and again.get("duplicate") is True
    assert api(stack, "docs", "GET", f"/{name}").json()["documents"] == 1


def test_tenants_are_isolated_by_construction(stack):
    # Same collection name and identical documents in two tenants.
    name = f"iso-{uuid.uuid4().hex[:8]}"
    for tenant in ("docs", "docs2"):
        assert api(stack, tenant, "POST", "", json={"name": name}).status_code == 201
    a = add(stack, "docs", name, CORPUS["baking.md"] + " docs-only-term.")
    b = add(stack, "docs2", name, CORPUS["baking.md"] + " docs2-only-term.")
    assert a["id"] != b["id"]
    # B can neither read nor delete A's document through its own collection of the same name.
    for method in ("GET", "DELETE"):
        r = api(stack, "docs2", method, f"/{name}/documents/{a['id']}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    hits = search(stack, "docs2", name, "apple pie docs only term").json()["data"]
    assert {h["document_id"] for h in hits} == {b["id"]}
    # A tenant path cannot be used with another tenant's key.
    r = httpx.get(f"{stack.base}/tenant/docs/v1/collections", headers=auth(stack, "docs2"), verify=False)
    assert r.status_code in (401, 403)
    assert api(stack, "docs", "GET", f"/{name}/documents/{a['id']}").status_code == 200


def test_bm25_scores_do_not_move_when_another_tenant_ingests(stack):
    name = fresh(stack, "docs")
    for source, text in CORPUS.items():
        add(stack, "docs", name, text, source=source)
    queries = ["apple pie", "borrow checker owner", "event loop"]
    before = [search(stack, "docs", name, q, k=4).json()["data"] for q in queries]
    other = fresh(stack, "docs2")
    for i in range(12):
        add(stack, "docs2", other, f"apple pie apple owner loop event borrow {i} " * 5)
    # The other tenant's collection of the same name, too.
    api(stack, "docs2", "POST", "", json={"name": name})
    for i in range(5):
        add(stack, "docs2", name, f"pie apple pie apple checker {i}")
    after = [search(stack, "docs", name, q, k=4).json()["data"] for q in queries]
    assert [[(h["chunk_id"], h["score"]) for h in hits] for hits in before] == \
        [[(h["chunk_id"], h["score"]) for h in hits] for hits in after]
    # And the same holds against a second collection of the same tenant.
    own = fresh(stack, "docs")
    add(stack, "docs", own, "apple apple apple pie pie")
    assert [h["score"] for h in search(stack, "docs", name, "apple pie", k=4).json()["data"]] == \
        [h["score"] for h in before[0]]


@pytest.mark.parametrize("query", [
    '"apple', '" OR "', "NEAR(apple pie)", "apple*", "text:apple", "^apple", "(apple", "apple AND NOT pie",
    "'; DROP TABLE doc_chunks; --", "{text}: apple", "apple\u0000pie", "\u00e9t\u00e9 caf\u00e9", "a" * 300,
    "-apple +pie", "apple NEAR/2 pie",
])
def test_hostile_queries_never_break_a_search(stack, query):
    name = hostile_collection(stack)
    r = search(stack, "docs", name, query)
    assert r.status_code == 200, r.text
    assert all(h["document_id"].startswith("doc_") for h in r.json()["data"])


_hostile = {}


def hostile_collection(stack):
    if "name" not in _hostile:
        name = fresh(stack, "docs")
        add(stack, "docs", name, 'apple "pie" NEAR(x y) * col:umn ^caret -- DROP TABLE; été café')
        _hostile["name"] = name
    return _hostile["name"]


def test_queries_without_words_and_bad_search_bodies_are_400(stack):
    name = hostile_collection(stack)
    for body in ({"query": '"*:^()'}, {"query": ""}, {"query": 5}, {"query": "x", "k": 0}, {"query": "x", "k": 51},
                 {"query": "x", "mode": "fuzzy"}, {"query": "x" * 5000}, [1, 2]):
        r = api(stack, "docs", "POST", f"/{name}/search", json=body)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (body, r.text)
    # Vector search needs a collection made with an embedding model.
    r = search(stack, "docs", name, "apple", mode="vector")
    assert r.status_code == 400 and r.json()["error"]["param"] == "mode"


def test_bad_documents_are_refused_and_leave_nothing_behind(stack):
    name = fresh(stack, "docs")
    chunks_before = stack.sql("SELECT COUNT(*) FROM doc_chunks")[0][0]
    cases = [
        ({"text": ""}, 400), ({"text": "   \n\n  "}, 400), ({"text": 42}, 400), ({"source": "x"}, 400),
        ({"text": "ok", "format": "pdf"}, 400), ({"text": "ok", "source": "bad\u0001source"}, 400),
        ({"text": "nul\u0000byte"}, 400),
    ]
    for body, status in cases:
        r = api(stack, "docs", "POST", f"/{name}/documents", json=body)
        assert r.status_code == status, (body, r.text)
    # Invalid UTF-8 in an uploaded file.
    r = api(stack, "docs", "POST", f"/{name}/documents", files={"file": ("a.txt", b"caf\xe9 \xff\xfe", "text/plain")})
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]["message"]
    # A malformed multipart body.
    r = api(stack, "docs", "POST", f"/{name}/documents", content=b"--zz\r\nno headers end",
            headers={"Content-Type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 400
    r = api(stack, "docs", "POST", f"/{name}/documents", content=b"text", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    # Larger than the body limit: nginx refuses it before the pool.
    r = api(stack, "docs", "POST", f"/{name}/documents", json={"text": "x " * 700_000})
    assert r.status_code == 413
    assert stack.sql("SELECT COUNT(*) FROM doc_chunks")[0][0] == chunks_before
    assert api(stack, "docs", "GET", f"/{name}").json()["documents"] == 0
    # Names and ids.
    assert api(stack, "docs", "POST", "", json={"name": "bad name!"}).status_code == 400
    assert api(stack, "docs", "POST", "", json={"name": "-x"}).status_code == 400
    assert api(stack, "docs", "POST", "", json={"name": name}).status_code == 409
    assert api(stack, "docs", "GET", "/no-such-collection").status_code == 404
    assert api(stack, "docs", "POST", "/no-such-collection/documents", json={"text": "x"}).status_code == 404
    assert api(stack, "docs", "GET", f"/{name}/documents/doc_123").status_code == 404
    assert api(stack, "docs", "GET", f"/{name}/documents/../../models").status_code in (400, 404)
    assert api(stack, "docs", "PATCH", f"/{name}").status_code == 405
    assert api(stack, "docs", "POST", "", content=b"{bad json", headers={"Content-Type": "application/json"}
               ).status_code == 400


def test_multipart_upload_and_html_is_stripped(stack):
    name = fresh(stack, "docs")
    html = (b"<html><head><title>T</title><style>p{color:red}</style></head><body><h1>Ferns</h1>"
            b"<p>Ferns grow in shade&nbsp;&amp; damp soil.</p><script>alert('x')</script><p>Water weekly.</p>"
            b"<!-- hidden comment --></body></html>")
    r = api(stack, "docs", "POST", f"/{name}/documents", files={"file": ("ferns.html", html, "text/html")},
            data={"source": "garden/ferns"})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["format"] == "html" and doc["source"] == "garden/ferns"
    text = api(stack, "docs", "GET", f"/{name}/documents/{doc['id']}").json()["text"]
    assert text == "Ferns\n\nFerns grow in shade & damp soil.\n\nWater weekly."
    assert search(stack, "docs", name, "alert color hidden").json()["data"] == []


def test_quotas_and_the_feature_flag(stack):
    r = api(stack, "nodocs", "GET", "")
    assert r.status_code == 403 and r.json()["error"]["code"] == "feature_disabled"
    # docsquota may have 2 collections, 3 documents and 4,096 bytes of text (documents: in its config).
    a, b = fresh(stack, "docsquota"), fresh(stack, "docsquota")
    r = api(stack, "docsquota", "POST", "", json={"name": "third"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded"
    r = api(stack, "docsquota", "POST", f"/{a}/documents", json={"text": "y" * 4097})
    assert r.status_code == 403 and "max_bytes" in r.json()["error"]["message"]
    for i in range(3):
        add(stack, "docsquota", [a, b][i % 2], f"document {i}")
    r = api(stack, "docsquota", "POST", f"/{b}/documents", json={"text": "one too many"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded"
    assert stack.sql("SELECT COUNT(*) FROM doc_documents WHERE tenant = 'docsquota'")[0][0] == 3
    # Deleting makes room again.
    doc = api(stack, "docsquota", "GET", f"/{a}/documents").json()["data"][0]
    api(stack, "docsquota", "DELETE", f"/{a}/documents/{doc['id']}")
    assert api(stack, "docsquota", "POST", f"/{b}/documents", json={"text": "fits now"}).status_code == 201


def test_vector_and_hybrid_search_with_an_embedding_model(stack):
    name = fresh(stack, "docs2", embedding_model="mock-small")
    rows_before = stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'docs2' AND model = 'mock-small'")[0][0]
    for source, text in CORPUS.items():
        add(stack, "docs2", name, text, source=source)
    assert stack.sql("SELECT COUNT(*) FROM doc_chunks ch JOIN doc_collections c ON c.id = ch.collection "
                     "WHERE c.name = ? AND c.tenant = 'docs2' AND ch.vector IS NULL", name)[0][0] == 0
    for mode in ("vector", "hybrid"):
        r = search(stack, "docs2", name, "apple pie butter sugar", mode=mode, k=2)
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["source"] == "baking.md", (mode, r.json())
    # Embedding the chunks and the queries is billed to the tenant as executions of its model.
    assert wait_until(lambda: stack.sql(
        "SELECT COUNT(*) FROM executions WHERE tenant = 'docs2' AND model = 'mock-small' AND tokens_in > 0"
    )[0][0] >= rows_before + 6)
    # A model the tenant may not use, or one that cannot embed, is refused.
    assert api(stack, "docs2", "POST", "", json={"name": "v2", "embedding_model": "sonnet"}).status_code == 400


def kb(stack, tenant, texts):
    api(stack, tenant, "DELETE", "/kb")
    assert api(stack, tenant, "POST", "", json={"name": "kb"}).status_code == 201
    return [add(stack, tenant, "kb", t, source=f"s{i}.md") for i, t in enumerate(texts)]


def test_retrieval_augmented_chat_through_the_openai_sdk(stack):
    marker = uuid.uuid4().hex[:8]
    docs = kb(stack, "docsrag", [f"The zorblat warranty {marker} lasts seven years for registered owners.",
                                 "Unrelated text about gardening and ferns in shade."])
    client = openai.OpenAI(base_url=f"{stack.base}/tenant/docsrag/v1", api_key=stack.keys["docsrag"],
                           http_client=openai.DefaultHttpxClient(verify=False), max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "How long is the zorblat warranty?"}])
    reply = raw.parse()
    assert reply.choices[0].message.content
    sources = raw.headers["x-tenantgate-sources"].split(",")
    assert sources == [f"{docs[0]['id']}#0"]
    extra = reply.model_extra["tenantgate"]["sources"]
    assert extra[0]["chunk_id"] == sources[0] and extra[0]["source"] == "s0.md"
    sent = [q["body"] for q in stack.upstream_requests() if marker in json.dumps(q["body"])][-1]
    systems = [m["content"] for m in sent["messages"] if m["role"] == "system"]
    # The tenant's prompt first, then the cited context; the user's message untouched.
    assert systems[0] == "You are the Docsrag assistant." and marker in systems[1] and "[1]" in systems[1]
    assert sent["messages"][-1] == {"role": "user", "content": "How long is the zorblat warranty?"}
    assert "gardening" not in json.dumps(sent)
    assert wait_until(lambda: stack.sql(
        "SELECT retrieval FROM executions WHERE tenant = 'docsrag' AND retrieval LIKE ? ORDER BY id DESC LIMIT 1",
        f"%{docs[0]['id']}%"))
    row = json.loads(stack.sql("SELECT retrieval FROM executions WHERE tenant = 'docsrag' AND retrieval LIKE ? "
                               "ORDER BY id DESC LIMIT 1", f"%{docs[0]['id']}%")[0][0])
    assert row["collection"] == "kb" and row["chunks"] == sources and row["ms"] >= 0
    # Streaming: the sources header, and the context reached the upstream.
    with client.chat.completions.with_streaming_response.create(
            model="fast", stream=True, messages=[{"role": "user", "content": f"zorblat warranty {marker} again"}]) as s:
        assert s.headers["x-tenantgate-sources"] == sources[0]
        streamed = "".join(c.choices[0].delta.content or "" for c in s.parse() if c.choices)
    assert streamed == "part0 part1 part2 part3 "  # the upstream's whole answer, relayed
    sent = [q["body"] for q in stack.upstream_requests() if f"{marker} again" in json.dumps(q["body"])][-1]
    assert sent["stream"] is True and marker in [m for m in sent["messages"] if m["role"] == "system"][1]["content"]


def test_retrieval_through_the_anthropic_sdk_reaches_a_native_backend(stack):
    marker = uuid.uuid4().hex[:8]
    docs = kb(stack, "docsrag", [f"Quixotic flange {marker} torque is twelve newton metres."])
    client = anthropic.Anthropic(base_url=f"{stack.base}/tenant/docsrag", api_key=stack.keys["docsrag"],
                                 http_client=anthropic.DefaultHttpxClient(verify=False), max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="sonnet", max_tokens=32, messages=[{"role": "user", "content": "What torque for the quixotic flange?"}])
    assert raw.parse().content
    assert raw.headers["x-tenantgate-sources"] == f"{docs[0]['id']}#0"
    sent = [q for q in stack.upstream_requests() if marker in json.dumps(q["body"])][-1]
    assert sent["path"].endswith("/v1/messages")
    system = sent["body"]["system"]
    assert system.startswith("You are the Docsrag assistant.") and marker in system
    assert "metadata" not in sent["body"] or "retrieval" not in sent["body"]["metadata"]


def test_per_request_retrieval_and_opting_out(stack):
    marker = uuid.uuid4().hex[:8]
    name = fresh(stack, "docs")
    add(stack, "docs", name, f"Glimmerwood {marker} opens at dawn.")

    def chat(metadata):
        return httpx.post(f"{stack.base}/tenant/docs/v1/chat/completions", verify=False, timeout=30,
                          headers=auth(stack, "docs"),
                          json={"model": "fast", "metadata": metadata,
                                "messages": [{"role": "user", "content": f"When does glimmerwood open? {uuid.uuid4()}"}]})

    r = chat({"retrieval": name, "tag": "kept"})
    assert r.status_code == 200 and r.headers["x-tenantgate-sources"].endswith("#0")
    sent = stack.upstream_requests()[-1]["body"]
    assert marker in json.dumps(sent["messages"]) and sent["metadata"] == {"tag": "kept"}
    r = chat({"retrieval": {"collection": name, "k": 1}})
    assert r.status_code == 200 and "x-tenantgate-sources" in r.headers
    r = chat({"retrieval": "no-such-kb"})
    assert r.status_code == 404 and "no-such-kb" in r.json()["error"]["message"]
    r = chat({"retrieval": {"collection": name, "k": 99}})
    assert r.status_code == 400
    # The tenant's standing retrieval can be turned off per request.
    kb(stack, "docsrag", [f"Sprocket {marker} facts."])
    r = httpx.post(f"{stack.base}/tenant/docsrag/v1/chat/completions", verify=False, timeout=30,
                   headers=auth(stack, "docsrag"),
                   json={"model": "fast", "metadata": {"retrieval": "off"},
                         "messages": [{"role": "user", "content": "sprocket facts"}]})
    assert r.status_code == 200 and "x-tenantgate-sources" not in r.headers
    assert marker not in json.dumps(stack.upstream_requests()[-1]["body"])
    r = httpx.post(f"{stack.base}/tenant/nodocs/v1/chat/completions", verify=False, timeout=30,
                   headers=auth(stack, "nodocs"),
                   json={"model": "fast", "metadata": {"retrieval": "kb"},
                         "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 403 and r.json()["error"]["code"] == "feature_disabled"


def test_retrieved_text_passes_ingress_guardrails(stack):
    kb(stack, "docsguard", ["The launch uses secret-plan-x in phase two.",
                            "Contact the rollout lead at lead.person@example.com for rollout questions."])

    def chat(content):
        return httpx.post(f"{stack.base}/tenant/docsguard/v1/chat/completions", verify=False, timeout=30,
                          headers=auth(stack, "docsguard"),
                          json={"model": "fast", "messages": [{"role": "user", "content": content}]})

    calls = len(stack.upstream_requests())
    r = chat("what happens in the launch phase two?")
    assert r.status_code == 403 and r.json()["error"]["code"] == "policy_blocked"
    assert len(stack.upstream_requests()) == calls
    r = chat("who do I contact about rollout questions?")
    assert r.status_code == 200
    sent = json.dumps(stack.upstream_requests()[-1]["body"])
    assert "rollout lead" in sent and "lead.person@example.com" not in sent


def test_the_reservation_counts_the_retrieved_context(stack):
    # docstight may use 300 tokens a minute on a model capped at 50 completion tokens: the question alone
    # fits; with ~500 tokens of retrieved context the reservation does not.
    long = " ".join(f"fact{i} about the varnish process" for i in range(60))
    kb(stack, "docstight", [long])

    def ask(metadata):
        return httpx.post(f"{stack.base}/tenant/docstight/v1/chat/completions", verify=False, timeout=30,
                          headers=auth(stack, "docstight"),
                          json={"model": "capped", "metadata": metadata,
                                "messages": [{"role": "user", "content": "varnish process"}]})

    with_context = ask({})
    assert with_context.status_code == 429 and with_context.json()["error"]["code"] == "rate_limit_exceeded"
    without = ask({"retrieval": "off"})
    assert without.status_code == 200, without.text


def test_composite_foreign_keys_refuse_a_chunk_in_another_tenants_collection(stack):
    name = fresh(stack, "docs")
    doc = add(stack, "docs", name, "owned by docs")
    db = sqlite3.connect(f"{stack.home}/tenantgate.db", timeout=10)
    try:
        db.execute("PRAGMA foreign_keys = ON")
        coll, doc_row = db.execute("SELECT collection, id FROM doc_documents WHERE uid = ?", (doc["id"],)).fetchone()
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO doc_chunks(tenant, collection, document, seq, text, tokens) "
                       "VALUES ('docs2', ?, ?, 99, 'planted', 1)", (coll, doc_row))
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO doc_documents(tenant, collection, uid, format, hash, bytes, chunks, created_ms, "
                       "text) VALUES ('docs2', ?, 'doc_x', 'text', x'00', 1, 0, 0, 'planted')", (coll,))
        db.rollback()
    finally:
        db.close()


def test_the_cli_adds_lists_searches_and_removes(stack, tmp_path):
    f = tmp_path / "notes.md"
    f.write_text("Obsidian kettles boil quickly.\n\nCopper kettles look nice.")
    out = stack.cli("docs", "add", "--tenant", "docs2", "--collection", "cli-kb", "--create", str(f)).stdout
    doc_id = out.split()[0]
    assert doc_id.startswith("doc_")
    listed = json.loads(stack.cli("docs", "list", "--tenant", "docs2", "--json").stdout)
    assert any(c["name"] == "cli-kb" and c["documents"] == 1 for c in listed)
    found = json.loads(stack.cli("docs", "search", "--tenant", "docs2", "--collection", "cli-kb", "--json",
                                 "obsidian kettle").stdout)
    assert found[0]["document_id"] == doc_id
    # The API sees what the CLI wrote, for that tenant only.
    assert search(stack, "docs2", "cli-kb", "copper").json()["data"][0]["document_id"] == doc_id
    assert api(stack, "docs", "GET", "/cli-kb").status_code == 404
    bad = stack.cli("docs", "add", "--tenant", "nobody", "--collection", "x", str(f), check=False)
    assert bad.returncode == 3 and "unknown tenant" in bad.stderr
    again = json.loads(stack.cli("docs", "add", "--tenant", "docs2", "--collection", "cli-kb", "--json", str(f)).stdout)
    assert again == {"id": doc_id, "chunks": again["chunks"], "duplicate": True}
    bad = stack.cli("docs", "search", "--tenant", "docs2", "--collection", "cli-kb", '"*', check=False)
    assert bad.returncode != 0 and "no words" in bad.stderr
    stack.cli("docs", "rm", "--tenant", "docs2", "--collection", "cli-kb", doc_id)
    assert api(stack, "docs2", "GET", "/cli-kb").json()["documents"] == 0
    removed = json.loads(stack.cli("docs", "rm", "--tenant", "docs2", "--collection", "cli-kb", "--json").stdout)
    assert removed == {"removed": "cli-kb", "kind": "collection"}
    assert api(stack, "docs2", "GET", "/cli-kb").status_code == 404


def test_deleting_a_tenant_deletes_its_collections(stack):
    stack.cli("tenant", "create", "doomed-docs", "--models", "fast")
    key = stack.cli("key", "create", "doomed-docs").stdout.strip().splitlines()[-1]
    h = {"Authorization": f"Bearer {key}"}
    base = f"{stack.base}/tenant/doomed-docs/v1/collections"
    assert wait_until(lambda: httpx.post(base, json={"name": "kb"}, headers=h, verify=False).status_code == 201)
    assert httpx.post(f"{base}/kb/documents", json={"text": "doomed words"}, headers=h, verify=False).status_code == 201
    (cid,) = stack.sql("SELECT id FROM doc_collections WHERE tenant = 'doomed-docs'")[0]
    stack.cli("tenant", "delete", "doomed-docs")
    for table in ("doc_collections", "doc_documents", "doc_chunks"):
        assert stack.sql(f"SELECT COUNT(*) FROM {table} WHERE tenant = 'doomed-docs'")[0][0] == 0
    assert stack.sql("SELECT COUNT(*) FROM sqlite_master WHERE name = ?", f"doc_fts_{cid}")[0][0] == 0


def test_embedding_documents_is_held_against_the_tenants_budget(stack):
    # docsbudget has USD 0.00001 a day, hard: embedding 2 KB (a token per byte at most, USD 0.15/M) exceeds it.
    name = fresh(stack, "docsbudget", embedding_model="mock-small")
    r = api(stack, "docsbudget", "POST", f"/{name}/documents", json={"text": "budget words " * 160})
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded", r.text
    assert api(stack, "docsbudget", "GET", f"/{name}").json()["documents"] == 0
    # A small one fits, and its embedding is settled as an execution of the model.
    assert api(stack, "docsbudget", "POST", f"/{name}/documents", json={"text": "tiny"}).status_code == 201
    assert wait_until(lambda: stack.sql(
        "SELECT endpoint, model FROM executions WHERE tenant = 'docsbudget' ORDER BY id DESC LIMIT 1")
        == [("embeddings", "mock-small")])


def test_document_embeddings_are_retried_like_chat_calls(stack):
    """Embeddings the gateway makes for itself go through the backend's retries and the tenant's circuit, as
    chat calls do (before: one 503 from the upstream failed the document)."""
    name = fresh(stack, "docs", embedding_model="fast")
    marker = uuid.uuid4().hex[:10]
    text = f'Retried embedding {marker} of a short note. #mock {{"status": 503, "fail_times": 1}}'
    r = api(stack, "docs", "POST", f"/{name}/documents", json={"text": text})
    assert r.status_code == 201, r.text
    sent = [q for q in stack.upstream_requests() if q["path"].endswith("/embeddings") and marker in json.dumps(q["body"])]
    assert len(sent) == 2  # the refused attempt and the retry that got the vectors
    found = search(stack, "docs", name, f"retried embedding {marker}", mode="vector")
    assert found.status_code == 200 and found.json()["data"], found.text
