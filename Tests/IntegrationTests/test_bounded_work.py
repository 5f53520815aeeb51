"""Bounded work per request, through nginx: hostile 1 MiB bodies against detectors and tenant patterns are
answered within seconds and kill no worker, a JWT with an absurd `exp` is refused cleanly, every
text-bearing field of an answer passes the tenant's egress rules (whole and streamed, both APIs), and a
request whose inspection budget runs out fails its rules closed."""

import base64
import json
import time

import httpx
import pytest

from conftest import JWT_SECRET, Stack, wait_until
from test_jwt import claims, token

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"


def auth(stack, tenant="bounded"):
    return {"Authorization": f"Bearer {stack.keys[tenant]}"}


def post_chat(stack, content, tenant="bounded", timeout=30, **extra):
    return httpx.post(f"{stack.base}/tenant/{tenant}/v1/chat/completions", verify=False, timeout=timeout,
                      headers=auth(stack, tenant),
                      json={"model": "fast", "messages": [{"role": "user", "content": content}], **extra})


def directive(**fields):
    """A mock directive whose extra fields travel base64-encoded (ingress rules never see the card)."""
    extra = base64.b64encode(json.dumps(fields).encode()).decode()
    return "#mock " + json.dumps({"text": "fine ", "extra_b64": extra})


def worker_deaths(stack):
    return [line for line in stack.app_log() if line.get("msg") == "worker_died"]


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@pytest.mark.parametrize("unit", ["eyJ", "sk-", "-----BEGIN ", "a@", "4"])
def test_a_1mib_hostile_body_against_the_secrets_detectors_is_answered_at_once(stack, unit):
    deaths = len(worker_deaths(stack))
    content = unit * ((1_000_000 // len(unit)))
    r, seconds = timed(lambda: post_chat(stack, content))
    # Before: `eyJ` × 340,000 had no answer after 240 s (the JWT detector rescanned the run from each eyJ).
    assert r.status_code in (200, 403), r.text
    assert seconds < 3, f"{unit!r}: {seconds:.1f} s"
    assert len(worker_deaths(stack)) == deaths


def test_a_shadow_tenant_pattern_over_a_long_input_is_linear(stack):
    # Before: 91 s for one request (PCRE2 re-checked the rest of the subject's UTF-8 at every match).
    content = "project-1 " * 100_000
    r, seconds = timed(lambda: post_chat(stack, content))
    assert r.status_code == 200, r.text
    assert seconds < 3, f"{seconds:.1f} s"
    request_id = r.headers["x-request-id"]
    query = "SELECT policy_triggers FROM executions WHERE request_id = ?"
    assert wait_until(lambda: stack.sql(query, request_id))
    row = stack.sql(query, request_id)[0][0]
    triggers = json.loads(row)
    # Every match was found (shadow mode records them, as one trigger with a count), none of the text.
    codeword = [t for t in triggers if t["policy"] == "codeword"]
    assert len(codeword) == 1 and codeword[0]["count"] == 100_000 and codeword[0]["length"] == 900_000
    assert "project-1" not in row


@pytest.mark.parametrize("exp", [2**63 - 1, 2**63 - 10, 2**62])
def test_a_signed_jwt_with_an_exp_near_int64_max_kills_no_worker(stack, exp):
    deaths = len(worker_deaths(stack))
    tok = token(claims(exp=exp))
    r = httpx.post(f"{stack.base}/tenant/acme/v1/chat/completions", verify=False, timeout=10,
                   headers={"Authorization": f"Bearer {tok}"},
                   json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
    # Before: the worker trapped on `exp + leeway` (503, worker_died). A far-future token is valid.
    assert r.status_code == 200, r.text
    assert len(worker_deaths(stack)) == deaths


WHOLE_FIELDS = [
    ("reasoning_content", {"message": {"reasoning_content": f"the card is {CARD}"}}),
    ("reasoning", {"message": {"reasoning": f"the card is {CARD}"}}),
    ("refusal", {"message": {"refusal": f"I cannot repeat {CARD}"}}),
    ("function_call", {"message": {"function_call": {"name": "pay", "arguments": json.dumps({"card": CARD})}}}),
    ("audio", {"message": {"audio": {"id": "a1", "data": "UklGRg==", "transcript": f"say {CARD}"}}}),
    ("unknown field", {"message": {"annotations": [{"type": "note", "text": f"card {CARD}"}]}}),
    ("logprobs", {"choice": {"logprobs": {"content": [{"token": t, "logprob": -0.1, "top_logprobs": []}
                                                      for t in CARD.split(" ")]}}}),
]


@pytest.mark.parametrize("name,fields", WHOLE_FIELDS, ids=[n for n, _ in WHOLE_FIELDS])
def test_whole_answers_redact_every_text_field(stack, name, fields):
    r = post_chat(stack, directive(**fields))
    assert r.status_code == 200, r.text
    body = r.text
    assert CARD not in body and CARD_DIGITS not in body, f"{name} leaked: {body}"
    message = r.json()["choices"][0]["message"]
    if name == "logprobs":
        # Token texts would spell out the card piece by piece: they are dropped, not sent.
        assert r.json()["choices"][0].get("logprobs") is None
        assert "1111" not in body
    elif name == "audio":
        assert "[REDACTED:pii.card]" in message["audio"]["transcript"]
        assert "data" not in message["audio"]
    else:
        assert "[REDACTED:pii.card]" in body


STREAM_FIELDS = [
    ("reasoning_content", [{"reasoning_content": "the card is 4111 1111 "}, {"reasoning_content": "1111 1111 ok"}]),
    ("reasoning", [{"reasoning": "the card is 4111 1111 "}, {"reasoning": "1111 1111 ok"}]),
    ("refusal", [{"refusal": "no: 4111 1111 "}, {"refusal": "1111 1111"}]),
    ("function_call", [{"function_call": {"name": "pay", "arguments": '{"card": "4111 1111 '}},
                       {"function_call": {"arguments": '1111 1111"}'}}]),
    ("audio", [{"audio": {"id": "a1", "data": "UklGRg==", "transcript": "say 4111 1111 "}},
               {"audio": {"data": "UklGRg==", "transcript": "1111 1111"}}]),
    ("unknown key", [{"secret_channel": CARD}]),
]


def stream_raw(stack, content, tenant="bounded"):
    with httpx.stream("POST", f"{stack.base}/tenant/{tenant}/v1/chat/completions", verify=False, timeout=30,
                      headers=auth(stack, tenant),
                      json={"model": "fast", "stream": True,
                            "messages": [{"role": "user", "content": content}]}) as r:
        assert r.status_code == 200
        return r.read().decode()


def joined(raw, pick):
    out = ""
    for line in raw.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                out += pick(choice) or ""
    return out


@pytest.mark.parametrize("name,deltas", STREAM_FIELDS, ids=[n for n, _ in STREAM_FIELDS])
def test_streamed_answers_redact_every_text_field(stack, name, deltas):
    raw = stream_raw(stack, directive(deltas=deltas))
    assert raw.rstrip().endswith("data: [DONE]")
    # Neither whole nor split across chunks.
    assert CARD not in raw and CARD_DIGITS not in raw
    if name == "function_call":
        args = joined(raw, lambda c: ((c.get("delta") or {}).get("function_call") or {}).get("arguments"))
        assert "[REDACTED:pii.card]" in args
    elif name == "audio":
        text = joined(raw, lambda c: ((c.get("delta") or {}).get("audio") or {}).get("transcript"))
        assert "[REDACTED:pii.card]" in text
        assert '"data"' not in raw
    elif name == "unknown key":
        assert "secret_channel" not in raw
    else:
        text = joined(raw, lambda c: (c.get("delta") or {}).get(name))
        assert "[REDACTED:pii.card]" in text and text.endswith("ok" if "reasoning" in name else "]")
    # The text itself still flows.
    assert joined(raw, lambda c: (c.get("delta") or {}).get("content")) == "fine "


def test_streamed_fields_of_unreadable_shape_are_dropped_and_finishing_text_keeps_its_order(stack):
    # Content as a list, a refusal as an object, a `message` beside the delta: nothing unread passes.
    raw = stream_raw(stack, directive(deltas=[{"content": [{"type": "text", "text": CARD}]},
                                              {"refusal": {"text": CARD}},
                                              {"audio": "x" + CARD}],
                                      chunk_choice={"message": {"content": CARD}}))
    assert CARD not in raw and CARD_DIGITS not in raw and raw.rstrip().endswith("data: [DONE]")
    # A side field in the finishing chunk: its released part comes before what was held, in order.
    raw = stream_raw(stack, directive(deltas=[{"reasoning_content": "first 4111 1111 "}],
                                      finish_delta={"reasoning_content": "1111 1111 then last"}))
    text = joined(raw, lambda c: (c.get("delta") or {}).get("reasoning_content"))
    assert text == "first [REDACTED:pii.card] then last"


def test_streamed_logprobs_are_dropped(stack):
    logprobs = {"content": [{"token": "4111", "logprob": -0.1, "top_logprobs": []}]}
    raw = stream_raw(stack, directive(chunk_choice={"logprobs": logprobs}))
    assert "logprobs" not in raw and "4111" not in raw


def test_anthropic_thinking_and_tool_input_are_redacted(stack):
    blocks = [
        {"type": "thinking", "thinking": f"the user's card is {CARD}", "signature": "sig"},
        {"type": "tool_use", "id": "toolu_1", "name": "pay", "input": {"card": CARD, "amount": 5}},
        {"type": "tool_use", "id": "toolu_2", "name": "pay", "input": {"number": int(CARD_DIGITS)}},
    ]
    r = httpx.post(f"{stack.base}/tenant/bounded/v1/messages", verify=False, timeout=30,
                   headers={**auth(stack), "anthropic-version": "2023-06-01"},
                   json={"model": "sonnet", "max_tokens": 20,
                         "messages": [{"role": "user", "content": directive(blocks=blocks)}]})
    assert r.status_code == 200, r.text
    assert CARD not in r.text and CARD_DIGITS not in r.text
    content = r.json()["content"]
    thinking = next(b for b in content if b["type"] == "thinking")
    assert "[REDACTED:pii.card]" in thinking["thinking"] and thinking["signature"] == "sig"
    tools = [b for b in content if b["type"] == "tool_use"]
    assert tools[0]["input"] == {"card": "[REDACTED:pii.card]", "amount": 5}
    # A card as a JSON number cannot be redacted in place: the input is replaced whole.
    assert tools[1]["input"] == {"redacted": "[REDACTED:pii.card]"}


@pytest.mark.parametrize("pattern", ["a*", "(x)?", "\\b", "(?=a)"])
def test_a_pattern_that_matches_the_empty_string_is_refused_on_import(stack, tmp_path, pattern):
    config = tmp_path / "empty.yaml"
    config.write_text(
        "tenants:\n  bounded:\n    policies:\n"
        f"      - {{name: empty, phase: ingress, pattern: '{pattern}', action: log}}\n")
    r = stack.cli("config", "import", str(config), check=False)
    assert r.returncode != 0
    assert "empty string" in r.stderr


def test_a_spent_inspection_budget_fails_rules_closed():
    """A pool with no inspection budget at all: every rule fails, and blocking and redacting rules close."""
    s = Stack(workers=1, threads=8)
    s.env.update({"TENANTGATE_INSPECTION_BASE_MS": "0", "TENANTGATE_INSPECTION_MS_PER_MIB": "0",
                  "TENANTGATE_INSPECTION_US_PER_CHECK": "0"})
    s.start()
    try:
        # The secrets rule (block, on_error closed) refuses; the shadow pattern (log) lets it through.
        r = post_chat(s, "hello there")
        assert r.status_code == 403 and r.json()["error"]["code"] == "policy_blocked"
        query = "SELECT policy_triggers FROM executions WHERE request_id = ?"
        assert wait_until(lambda: s.sql(query, r.headers["x-request-id"]))
        triggers = json.loads(s.sql(query, r.headers["x-request-id"])[0][0])
        assert any(t["failed"] for t in triggers)
        # The log line says why, without any of the text.
        line = next(l for l in s.app_log() if l.get("request_id") == r.headers["x-request-id"] and l.get("status"))
        assert line["inspection"] == "budget_exhausted" and "hello there" not in json.dumps(line)
        # A tenant without ingress rules: its egress redaction withholds the whole answer.
        r = httpx.post(f"{s.base}/tenant/cachedguard/v1/chat/completions", verify=False, timeout=30,
                       headers={"Authorization": f"Bearer {s.keys['cachedguard']}"},
                       json={"model": "fast", "messages": [{"role": "user", "content": "say something"}]})
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "[REDACTED:pii.card]"
    finally:
        s.stop()


def responses(stack, tenant, method="POST", path="", **kw):
    return httpx.request(method, f"{stack.base}/tenant/{tenant}/v1/responses{path}", verify=False, timeout=30,
                         headers=auth(stack, tenant), **kw)


def test_ingress_redacted_input_is_stored_redacted(stack):
    r = responses(stack, "bounded", json={"model": "fast", "input": f"pay with {CARD} please"})
    assert r.status_code == 200, r.text
    rid = r.json()["id"]
    items = responses(stack, "bounded", "GET", f"/{rid}/input_items")
    assert items.status_code == 200
    # Before: the upstream got the redacted text, but the store kept the card (and replayed it next turn).
    assert CARD not in items.text and "[REDACTED:pii.card]" in items.text
    row = stack.sql("SELECT * FROM stored_responses WHERE id = ?", rid)
    assert row and CARD not in json.dumps([str(v) for v in row[0]])


def test_a_cache_hit_is_not_stored_again_unless_asked(stack):
    marker = f"resp-cache-{time.monotonic_ns()}"
    body = {"model": "fast", "temperature": 0, "input": marker}
    first = responses(stack, "cached2", json=body)
    assert first.status_code == 200, first.text
    hit = []
    assert wait_until(lambda: hit.append(responses(stack, "cached2", json=body)) or
                      hit[-1].headers.get("x-tenantgate-cache") == "hit")
    # Free hits do not fill the tenant's store…
    assert responses(stack, "cached2", "GET", f"/{hit[-1].json()['id']}").status_code == 404
    # …unless the client says `store: true` itself.
    kept = responses(stack, "cached2", json={**body, "store": True})
    assert kept.headers.get("x-tenantgate-cache") == "hit"
    assert responses(stack, "cached2", "GET", f"/{kept.json()['id']}").status_code == 200


def test_other_media_by_url_are_refused_for_a_self_hosted_backend(stack):
    for part in [{"type": "video_url", "video_url": {"url": "http://169.254.169.254/v.mp4"}},
                 {"type": "audio_url", "audio_url": {"url": "http://10.0.0.1/a.wav"}},
                 {"image_url": "http://169.254.169.254/"}]:
        r = httpx.post(f"{stack.base}/tenant/bounded/v1/chat/completions", verify=False, timeout=30,
                       headers=auth(stack), json={"model": "local", "messages": [{"role": "user", "content": [
                           {"type": "text", "text": "what is this?"}, part]}]})
        assert r.status_code == 400, (part, r.text)
    # An Anthropic client's image or document by URL, to the same backend.
    for block in [{"type": "image", "source": {"type": "url", "url": "http://169.254.169.254/i.png"}},
                  {"type": "document", "source": {"type": "url", "url": "http://10.0.0.1/d.pdf"}}]:
        r = httpx.post(f"{stack.base}/tenant/bounded/v1/messages", verify=False, timeout=30,
                       headers={**auth(stack), "anthropic-version": "2023-06-01"},
                       json={"model": "local", "max_tokens": 10,
                             "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, block]}]})
        assert r.status_code == 400, (block, r.text)


@pytest.mark.parametrize("url,status", [("https://example.com/cat.png", 400), ("http://169.254.169.254/x", 400),
                                        ("data:image/png;base64,iVBORw0KGgo=", 200)])
def test_a_self_hosted_backend_gets_no_image_urls_unless_allowed(stack, url, status):
    before = len(stack.upstream_requests())
    r = httpx.post(f"{stack.base}/tenant/bounded/v1/chat/completions", verify=False, timeout=30,
                   headers=auth(stack), json={"model": "local", "messages": [{"role": "user", "content": [
                       {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]}]})
    # Before: the self-hosted server was handed the URL to fetch from inside the operator's network.
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["error"]["param"] == "messages" and "data: URL" in r.json()["error"]["message"]
        assert len(stack.upstream_requests()) == before


def collections(stack, tenant, method, path="", **kw):
    return httpx.request(method, f"{stack.base}/tenant/{tenant}/v1/collections{path}", verify=False, timeout=30,
                         headers=auth(stack, tenant), **kw)


def words(n, seed):
    return " ".join(f"w{seed}x{i}" for i in range(n))


def test_a_tenant_at_its_storage_quota_is_refused_and_others_are_not(stack):
    # tinystore: limits.storage_mb 1; a document's text counts three times (document, chunks, index).
    assert collections(stack, "tinystore", "POST", json={"name": "kb"}).status_code == 201
    first = collections(stack, "tinystore", "POST", "/kb/documents", json={"text": words(25_000, 1)})
    assert first.status_code == 201, first.text
    info = httpx.get(f"{stack.base}/tenant/tinystore/v1/tenant-info", verify=False, headers=auth(stack, "tinystore"))
    storage = info.json()["limits"]["storage"]
    text_bytes = len(words(25_000, 1).encode())
    # The text three times, and the few audit bytes of the tenant's own trail.
    assert storage["limit_bytes"] == 1 << 20 and 3 * text_bytes <= storage["used_bytes"] < 3 * text_bytes + 4096
    second = collections(stack, "tinystore", "POST", "/kb/documents", json={"text": words(25_000, 2)})
    assert second.status_code == 429, second.text
    assert second.json()["error"]["code"] == "storage_quota_exceeded"
    # Nothing of it was written…
    listed = collections(stack, "tinystore", "GET", "/kb/documents").json()["data"]
    assert [d["id"] for d in listed] == [first.json()["id"]]
    # …and another tenant's writes go on.
    name = f"c-{time.monotonic_ns()}"
    assert collections(stack, "docs", "POST", json={"name": name}).status_code == 201
    assert collections(stack, "docs", "POST", f"/{name}/documents", json={"text": words(25_000, 3)}).status_code == 201
    # Deleting frees the room again.
    assert collections(stack, "tinystore", "DELETE", f"/kb/documents/{first.json()['id']}").status_code in (200, 204)
    again = collections(stack, "tinystore", "POST", "/kb/documents", json={"text": words(25_000, 2)})
    assert again.status_code == 201, again.text


def test_hostile_bodies_leave_another_tenant_served(stack):
    """Two hostile 1 MiB bodies at a time, over and over: another tenant's /v1/models stays fast."""
    import statistics
    import threading
    stop = threading.Event()
    answered = []

    def hostile(unit):
        while not stop.is_set():
            r, seconds = timed(lambda: post_chat(stack, unit * (1_000_000 // len(unit)), timeout=30))
            answered.append((r.status_code, seconds))

    workers = [threading.Thread(target=hostile, args=(u,)) for u in ("eyJ", "project-1 ")]
    deaths = len(worker_deaths(stack))
    for w in workers:
        w.start()
    windows = []
    try:
        with httpx.Client(base_url=stack.base, verify=False, timeout=10,
                          headers={"Authorization": f"Bearer {stack.keys['acme']}"}) as c:
            # Two windows of 5 s: the better one counts (one stall of this 2-core machine's own load, the
            # test client included, is not the gateway starving a tenant).
            for _ in range(2):
                latencies = []
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    r, seconds = timed(lambda: c.get("/tenant/acme/v1/models"))
                    assert r.status_code == 200
                    latencies.append(seconds)
                windows.append(statistics.quantiles(latencies, n=100)[98])
                if windows[-1] < 0.05:
                    break
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert len(answered) >= 4 and all(status in (200, 403) and s < 3 for status, s in answered), answered
    assert min(windows) < 0.05, f"p99 per window: {[round(p * 1000, 1) for p in windows]} ms"
    assert len(worker_deaths(stack)) == deaths


def test_inspection_is_charged_against_the_rate_limit_and_a_tenant_at_it_burns_nothing(stack):
    # chargedguard: 3 requests a minute, an ingress keyword block and the secrets preset.
    for _ in range(3):
        r = post_chat(stack, "forbidden-word, please", tenant="chargedguard")
        assert r.status_code == 403 and r.json()["error"]["code"] == "policy_blocked", r.text
    # Before: blocked requests cost nothing, so a clean request was still served (200) after any number of
    # them. Each was inspected, and is charged as a request of the window.
    # The blocked ones are charged when they settle (at once, but after their answers).
    assert wait_until(lambda: stack.sql(
        "SELECT COALESCE(SUM(amount), 0) FROM rate_log WHERE tenant = 'chargedguard' AND kind = 'r'")[0][0] == 3)
    clean = post_chat(stack, "hello", tenant="chargedguard")
    assert clean.status_code == 429 and clean.json()["error"]["code"] == "rate_limit_exceeded", clean.text
    assert clean.headers["X-RateLimit-Limit"] == "3"
    # At the limit, a hostile body is refused before anything inspects it: 429, not the policy's 403, at once.
    deaths = len(worker_deaths(stack))
    content = "forbidden-word " + "eyJ" * 330_000
    r, seconds = timed(lambda: post_chat(stack, content, tenant="chargedguard"))
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded", r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert seconds < 3
    assert len(worker_deaths(stack)) == deaths
    # It left no policy trigger in the log (nothing ran), and the refusal names the limit.
    rid = r.headers["X-Request-ID"]
    assert wait_until(lambda: any(e.get("request_id") == rid for e in stack.app_log()))
    line = next(e for e in stack.app_log() if e.get("request_id") == rid)
    assert "policy" not in line and line.get("error") == "rate_limit_exceeded", line


def fastcgi_get(sock_path, params, timeout=30):
    """One FastCGI request straight to the pool's socket (as a front end would send it); its stdout."""
    import socket
    import struct

    def record(kind, content):
        out = b""
        for i in range(0, max(1, len(content)), 65535):
            part = content[i:i + 65535]
            pad = (8 - len(part) % 8) % 8
            out += struct.pack(">BBHHBB", 1, kind, 1, len(part), pad, 0) + part + b"\0" * pad
        return out

    def length(n):
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)

    body = b"".join(length(len(k)) + length(len(v)) + k + v for k, v in params)
    message = (record(1, struct.pack(">HB5x", 1, 0)) + record(4, body) + record(4, b"") + record(5, b""))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(message)
        out = b""
        while True:
            head = s.recv(8, socket.MSG_WAITALL)
            if len(head) < 8:
                break
            _, kind, _, size, pad, _ = struct.unpack(">BBHHBB", head)
            content = s.recv(size + pad, socket.MSG_WAITALL)[:size] if size + pad else b""
            if kind == 3:  # END_REQUEST
                break
            if kind == 6:
                out += content
        return out


@pytest.mark.parametrize("shape", ["many", "long"])
def test_fastcgi_params_are_read_in_linear_time(stack, shape):
    """libfcgi's params parser, the worker's params map and the request's headers: 1 MiB of params (many
    short ones, or one long header) costs about 16 times what 64 KiB does (not 256: quadratic)."""
    sock = stack.home / "run" / "tenantgate.sock"
    base = [(b"REQUEST_METHOD", b"GET"), (b"TG_ROUTE", b"healthz"), (b"TG_PATH", b"/healthz"),
            (b"DOCUMENT_URI", b"/healthz")]

    def params(size):
        if shape == "many":
            return base + [(b"HTTP_X_H%d" % i, b"v" * 24) for i in range(size // 32)]
        return base + [(b"HTTP_X_LONG", b"a" * size)]

    def best(size, runs=3):
        times = []
        for _ in range(runs):
            out, seconds = timed(lambda: fastcgi_get(sock, params(size)))
            assert b"200" in out.split(b"\r\n", 1)[0] or b'"ok"' in out, out[:200]
            times.append(seconds)
        return min(times)

    deaths = len(worker_deaths(stack))
    best(64 << 10, runs=1)  # warm the connection path
    small, large = best(64 << 10), best(1 << 20)
    assert large < 3, f"{large:.2f} s for 1 MiB of params"
    assert large < max(small, 0.002) * 48, f"64 KiB {small * 1000:.1f} ms, 1 MiB {large * 1000:.1f} ms"
    assert len(worker_deaths(stack)) == deaths
