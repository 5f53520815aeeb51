"""The per-tenant response cache through nginx: hits and misses, isolation between tenants, stream and
whole-answer replay for both SDKs, eligibility, TTL, eviction, purge, billing and metrics."""

import json
import re
import uuid

import anthropic
import httpx
import openai

from conftest import wait_until


def auth(stack, tenant):
    return {"Authorization": f"Bearer {stack.keys[tenant]}"}


def ask(stack, tenant, content, model="fast", headers=None, **extra):
    body = {"model": model, "temperature": 0, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{stack.base}/tenant/{tenant}/v1/chat/completions", verify=False, timeout=30,
                      headers={**auth(stack, tenant), **(headers or {})}, json=body)


def upstream_seen(stack, marker):
    return sum(marker in json.dumps(q["body"]) for q in stack.upstream_requests())


def executions(stack, tenant, marker_count):
    assert wait_until(lambda: stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = ?", tenant)[0][0]
                      >= marker_count)


def test_a_repeat_is_a_hit_that_costs_nothing_and_says_so(stack):
    marker = f"cache-{uuid.uuid4().hex[:8]}"
    first = ask(stack, "cached", marker)
    assert first.status_code == 200 and first.headers["x-tenantgate-cache"] == "miss"
    assert wait_until(lambda: stack.sql("SELECT COUNT(*) FROM cache_entries WHERE tenant = 'cached'")[0][0] >= 1)
    second = ask(stack, "cached", marker)
    assert second.status_code == 200 and second.headers["x-tenantgate-cache"] == "hit"
    assert upstream_seen(stack, marker) == 1
    a, b = first.json(), second.json()
    assert b["choices"][0]["message"] == a["choices"][0]["message"]
    assert b["usage"]["total_tokens"] == 0 and b["id"] != a["id"]
    # Neither the headers nor the body carry a cache key.
    keys = [k.lower() for (k,) in stack.sql("SELECT hex(key) FROM cache_entries WHERE tenant = 'cached'")]
    shown = (json.dumps(dict(second.headers)) + second.text).lower()
    assert keys and not any(k in shown or k[:16] in shown for k in keys)
    assert not any(re.fullmatch(r"[0-9a-f]{64}", v) for v in second.headers.values())
    assert wait_until(lambda: stack.sql(
        "SELECT cache, tokens_in + tokens_out, cost_nano, saved_tokens > 0 FROM executions WHERE tenant = 'cached' "
        "ORDER BY id DESC LIMIT 1") == [("hit", 0, 0, 1)])


def test_another_tenant_never_gets_the_entry(stack):
    marker = f"iso-{uuid.uuid4().hex[:8]}"
    assert ask(stack, "cached", marker).headers["x-tenantgate-cache"] == "miss"
    assert wait_until(lambda: ask(stack, "cached", marker).headers["x-tenantgate-cache"] == "hit")
    # The same request, model and (no) system prompt from tenant cached2: its own miss, its own upstream call.
    r = ask(stack, "cached2", marker)
    assert r.headers["x-tenantgate-cache"] == "miss"
    assert upstream_seen(stack, marker) == 2


def test_streams_and_whole_answers_replay_as_each_other_for_both_sdks(stack):
    marker = f"replay-{uuid.uuid4().hex[:8]}"
    oa = openai.OpenAI(base_url=stack.base + "/tenant/cached/v1", api_key=stack.keys["cached"],
                       http_client=httpx.Client(verify=False), max_retries=0)
    whole = oa.chat.completions.create(model="fast", temperature=0,
                                       messages=[{"role": "user", "content": marker}])
    text = whole.choices[0].message.content
    assert wait_until(lambda: stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'cached' AND cache = 'miss' "
                                        "AND request_id IS NOT NULL")[0][0] >= 1)
    pieces = []
    assert wait_until(lambda: ask(stack, "cached", marker).headers["x-tenantgate-cache"] == "hit")
    for chunk in oa.chat.completions.create(model="fast", temperature=0, stream=True,
                                            messages=[{"role": "user", "content": marker}]):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == text
    assert upstream_seen(stack, marker) == 1
    # Anthropic: a stream first, then the whole answer from the cache.
    an = anthropic.Anthropic(base_url=stack.base + "/tenant/cached", api_key=stack.keys["cached"],
                             http_client=anthropic.DefaultHttpxClient(verify=False), max_retries=0)
    marker2 = f"areplay-{uuid.uuid4().hex[:8]}"
    with an.messages.stream(model="sonnet", max_tokens=40, extra_body={"temperature": 0},
                            messages=[{"role": "user", "content": marker2}]) as s:
        streamed = "".join(s.text_stream)
    assert wait_until(lambda: upstream_seen(stack, marker2) == 1)

    def hit():
        r = an.messages.with_raw_response.create(model="sonnet", max_tokens=40, extra_body={"temperature": 0},
                                                 messages=[{"role": "user", "content": marker2}])
        return r.headers.get("x-tenantgate-cache") == "hit" and r.parse().content[0].text == streamed
    assert wait_until(hit)
    with an.messages.stream(model="sonnet", max_tokens=40, extra_body={"temperature": 0},
                            messages=[{"role": "user", "content": marker2}]) as s:
        assert "".join(s.text_stream) == streamed
    assert upstream_seen(stack, marker2) == 1


def test_what_is_not_cached(stack):
    # A stream cut off midway.
    marker = f"cut-{uuid.uuid4().hex[:8]}"
    content = marker + ' #mock {"cut": true}'
    with httpx.stream("POST", f"{stack.base}/tenant/cached/v1/chat/completions", verify=False, timeout=30,
                      headers=auth(stack, "cached"),
                      json={"model": "fast", "stream": True, "temperature": 0,
                            "messages": [{"role": "user", "content": content}]}) as r:
        r.read()
    assert wait_until(lambda: stack.sql("SELECT error_code FROM executions WHERE tenant = 'cached' "
                                        "ORDER BY id DESC LIMIT 1") == [("upstream_error",)])
    assert ask(stack, "cached", content, stream=False).headers["x-tenantgate-cache"] == "miss"
    # Sampling above temperature 0, and a client's Cache-Control: no-store, are never served from the cache.
    warm = f"warm-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        r = ask(stack, "cached", warm, temperature=0.7)
        assert r.headers["x-tenantgate-cache"] == "miss"
    assert upstream_seen(stack, warm) == 2
    private = f"nostore-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        assert ask(stack, "cached", private, headers={"Cache-Control": "no-store"}).headers["x-tenantgate-cache"] == "miss"
    assert upstream_seen(stack, private) == 2
    # A tenant without a cache sends no cache header.
    assert "x-tenantgate-cache" not in ask(stack, "acme", private).headers


def test_ttl_eviction_purge_and_corrupt_entries(stack):
    # TTL of 1 s (this tenant also caches sampled answers).
    marker = f"ttl-{uuid.uuid4().hex[:8]}"
    ask(stack, "cached-ttl", marker, temperature=1)
    assert wait_until(lambda: ask(stack, "cached-ttl", marker, temperature=1).headers["x-tenantgate-cache"] == "hit")
    assert wait_until(lambda: ask(stack, "cached-ttl", marker, temperature=1).headers["x-tenantgate-cache"] == "miss",
                      timeout=5)
    # At most 4 entries for 'cached2': the least recently used goes first.
    tag = uuid.uuid4().hex[:6]
    for i in range(5):
        ask(stack, "cached2", f"lru-{tag}-{i}")
        assert wait_until(lambda: stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'cached2' AND "
                                            "cache = 'miss'")[0][0] >= 1)
    assert wait_until(lambda: stack.sql("SELECT entries FROM cache_usage WHERE tenant = 'cached2'") == [(4,)])
    assert stack.sql("SELECT COUNT(*) FROM cache_entries WHERE tenant = 'cached2'")[0][0] == 4
    assert ask(stack, "cached2", f"lru-{tag}-0").headers["x-tenantgate-cache"] == "miss"
    # A purge is seen by the next request, whichever worker answers it.
    kept = f"purge-{uuid.uuid4().hex[:8]}"
    ask(stack, "cached", kept)
    assert wait_until(lambda: ask(stack, "cached", kept).headers["x-tenantgate-cache"] == "hit")
    out = stack.cli("cache", "purge", "--tenant", "cached")
    assert "purged" in out.stdout
    # Workers trust what they read for at most a second.
    assert wait_until(lambda: ask(stack, "cached", kept).headers["x-tenantgate-cache"] == "miss", timeout=2)
    # A corrupt entry is a miss, never a 500.
    assert wait_until(lambda: stack.sql("SELECT COUNT(*) FROM cache_entries WHERE tenant = 'cached'")[0][0] >= 1)
    import sqlite3
    conn = sqlite3.connect(stack.home / "tenantgate.db", timeout=10)
    conn.execute("UPDATE cache_entries SET answer = X'7B7B7B' WHERE tenant = 'cached'")
    conn.commit()
    conn.close()
    assert wait_until(lambda: ask(stack, "cached", kept).headers["x-tenantgate-cache"] == "miss", timeout=2)
    r = ask(stack, "cached", kept)
    assert r.status_code == 200
    stats = json.loads(stack.cli("cache", "stats", "--tenant", "cached", "--json").stdout)
    assert stats[0]["tenant"] == "cached" and stats[0]["hits_24h"] >= 1


def test_cache_metrics(stack):
    marker = f"metric-{uuid.uuid4().hex[:8]}"
    ask(stack, "cached", marker)
    assert wait_until(lambda: ask(stack, "cached", marker).headers["x-tenantgate-cache"] == "hit")

    def counted():
        text = httpx.get(stack.base + "/metrics", verify=False).text
        return ('tenantgate_cache_hits_total{tenant="cached",kind="hit"}' in text
                and "tenantgate_cache_saved_usd_total" in text)
    assert wait_until(counted)


def test_semantic_hits_are_strict_and_the_tenants_own(stack):
    tag = uuid.uuid4().hex[:6]
    question = f"What is the capital of France {tag}?"
    first = ask(stack, "semantic", question)
    assert first.headers["x-tenantgate-cache"] == "miss"
    assert wait_until(lambda: stack.sql("SELECT COUNT(*) FROM cache_vectors WHERE tenant = 'semantic'")[0][0] >= 1)
    # A paraphrase with the same content words in the same order: a semantic hit, with its similarity.
    r = ask(stack, "semantic", f"Capital of France {tag}, please?")
    assert r.headers["x-tenantgate-cache"] == "semantic-hit", r.headers
    assert float(r.headers["x-tenantgate-cache-similarity"]) >= 0.9
    assert r.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert upstream_seen(stack, tag) == 1
    # Billed only the question's embedding.
    assert wait_until(lambda: stack.sql(
        "SELECT cache, tokens_out, tokens_in > 0 FROM executions WHERE tenant = 'semantic' ORDER BY id DESC LIMIT 1")
        == [("semantic-hit", 0, 1)])
    # Negations, numbers and swapped entities are misses even where the vectors are close.
    for stored, asked in [
        (f"Is Paris safe for tourists at night in the summer months {tag}", f"Is Paris not safe for tourists at night in the summer months {tag}"),
        (f"Flights from Paris to Rome in May {tag}", f"Flights from Rome to Paris in May {tag}"),
        (f"List 5 museums in Paris open late on Fridays for students with cards {tag}", f"List 6 museums in Paris open late on Fridays for students with cards {tag}"),
    ]:
        assert ask(stack, "semantic", stored).headers["x-tenantgate-cache"] == "miss"
        assert wait_until(lambda: ask(stack, "semantic", stored).headers["x-tenantgate-cache"] == "hit")
        assert ask(stack, "semantic", asked).headers["x-tenantgate-cache"] == "miss", asked
    # Another tenant with the same settings never gets the entry.
    assert ask(stack, "semantic2", f"Capital of France {tag}, please?").headers["x-tenantgate-cache"] == "miss"
    # Without the flag, only exact repeats hit.
    ask(stack, "cached", question)
    assert wait_until(lambda: ask(stack, "cached", question).headers["x-tenantgate-cache"] == "hit")
    assert ask(stack, "cached", f"Capital of France {tag}, please?").headers["x-tenantgate-cache"] == "miss"


def test_an_answer_a_policy_redacted_is_not_kept(stack):
    tag = uuid.uuid4().hex[:6]
    content = f"{tag} " + '#mock {"text": "card 4111 1111 1111 1111 ok", "chunk_chars": 4}'
    first = ask(stack, "cachedguard", content)
    assert "[REDACTED:pii.card]" in first.json()["choices"][0]["message"]["content"]
    assert wait_until(lambda: stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'cachedguard'")[0][0] >= 1)
    assert ask(stack, "cachedguard", content).headers["x-tenantgate-cache"] == "miss"
    assert stack.sql("SELECT COUNT(*) FROM cache_entries WHERE tenant = 'cachedguard'")[0][0] == 0
    # An answer the policy left alone is kept.
    clean = f"{tag} clean " + '#mock {"text": "nothing to hide", "chunk_chars": 4}'
    ask(stack, "cachedguard", clean)
    assert wait_until(lambda: ask(stack, "cachedguard", clean).headers["x-tenantgate-cache"] == "hit")


def ask_with(stack, tenant, key, content, **extra):
    body = {"model": "fast", "temperature": 0, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{stack.base}/tenant/{tenant}/v1/chat/completions", verify=False, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}, json=body)


def first_answer(stack, tenant, key, content):
    """The first answer to a key just created (every worker knows it within a second)."""
    answers = []
    assert wait_until(lambda: answers.append(ask_with(stack, tenant, key, content)) or answers[-1].status_code != 401)
    assert answers[-1].status_code == 200, answers[-1].text
    return answers[-1]


def test_the_key_is_what_goes_upstream_and_who_may_share_it(stack):
    marker = f"cache-scope-{uuid.uuid4().hex[:8]}"
    assert ask(stack, "cached2", marker).headers["x-tenantgate-cache"] == "miss"
    # The entry is written with the settlement, just after the answer.
    assert wait_until(lambda: ask(stack, "cached2", marker).headers["x-tenantgate-cache"] == "hit")
    # Before: fields forwarded upstream but absent from the key (vLLM's top_k) got the other answer.
    assert ask(stack, "cached2", marker, top_k=5).headers["x-tenantgate-cache"] == "miss"
    # Another key of the same tenant has entries of its own (cache.scope: key, the default)…
    other = stack.cli("key", "create", "cached2").stdout.strip().splitlines()[-1]
    assert first_answer(stack, "cached2", other, marker).headers["x-tenantgate-cache"] == "miss"
    # …unless the tenant shares its cache between keys (scope: tenant).
    assert ask(stack, "cachedshare", marker).headers["x-tenantgate-cache"] == "miss"
    assert wait_until(lambda: ask(stack, "cachedshare", marker).headers["x-tenantgate-cache"] == "hit")
    second = stack.cli("key", "create", "cachedshare").stdout.strip().splitlines()[-1]
    assert first_answer(stack, "cachedshare", second, marker).headers["x-tenantgate-cache"] == "hit"
