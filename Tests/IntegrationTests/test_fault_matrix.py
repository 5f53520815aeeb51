"""The upstream fault matrix: every scripted misbehaviour of fault_upstream.py × stream / non-stream × both
client APIs, through nginx. Each must give its documented status and shape (README, "Upstream faults"),
write exactly one execution row and one `request` log line, charge only what the upstream reported, and
leave nothing held.
"""

import json

import pytest

from conftest import wait_until
from fault_upstream import BEHAVIOURS

TENANT = "faulty"

# What the client gets: ("ok", tokens) a whole answer charged `tokens`; (status, code) an error answer; and
# for a stream that began, ("stream", code, billed) its final error event (the head was 200) and what the
# execution row charges: the upstream's usage report if one came, else EST, the documented estimate of
# what was streamed (prompt + streamed text / 4).
OK = ("ok", 15)
BAD = (502, "upstream_error")
TIMEOUT = (504, "upstream_timeout")
INVALID = (400, "invalid_request")
EST = "estimate"
EXPECT = {
    # behaviour: (plain, stream)
    "close_before_reading": (BAD, BAD),
    "reset_before_headers": (BAD, BAD),
    "partial_headers": (BAD, BAD),
    "garbage_status_line": (BAD, BAD),
    "status_500_json": (BAD, BAD),
    "status_500_html": (BAD, BAD),
    "status_502_empty": (BAD, BAD),
    "status_503_retry_after": (BAD, BAD),
    "status_429_retry_after": (BAD, BAD),
    "status_429_bare": (BAD, BAD),
    "status_529_overloaded": (BAD, BAD),
    "status_401": (BAD, BAD),
    "status_400_json": (INVALID, INVALID),
    "status_404_html": (BAD, BAD),
    "status_422_json": (INVALID, INVALID),
    "truncated_body": (BAD, BAD),
    "reset_mid_body": (BAD, BAD),
    "gzip": (OK, OK),
    "chunked": (OK, OK),
    "huge_body": (BAD, BAD),
    "slow_headers": (TIMEOUT, TIMEOUT),
    "slow_body": (TIMEOUT, TIMEOUT),
    "continue_100": (OK, OK),
    "redirect": (BAD, BAD),
    "huge_header": (BAD, BAD),
    "html_200": (BAD, BAD),
    "empty_200": (BAD, BAD),
    "json_wrong_shape": (BAD, BAD),
    "not_json": (BAD, BAD),
    "json_for_stream": (OK, BAD),
    "sse_no_done": (BAD, ("stream", "upstream_error", 15)),
    "sse_cut_mid_event": (BAD, ("stream", "upstream_error", EST)),
    "sse_reset_mid": (BAD, ("stream", "upstream_error", EST)),
    "sse_garbage_between": (BAD, OK),
    "sse_crlf": (BAD, OK),
    "sse_byte_by_byte": (BAD, OK),
    "sse_event_too_large": (BAD, ("stream", "upstream_error", 0)),
    "sse_stall": (TIMEOUT, ("stream", "upstream_timeout", EST)),
    "sse_invalid_json": (BAD, OK),
    "sse_error_event": (BAD, ("stream", "upstream_error", EST)),
    "sse_wrong_type": (BAD, OK),  # SSE under a JSON label still reads as SSE: labels lie, bytes decide
}


def test_every_behaviour_has_an_expectation():
    assert set(EXPECT) == set(BEHAVIOURS)
    assert len(BEHAVIOURS) >= 30


def call(stack, api, stream, behaviour, model="fault-model"):
    """One request; returns (outcome, request id) with outcome as in EXPECT."""
    text = f"fault matrix #fault {behaviour}"
    key = stack.keys[TENANT]
    if api == "anthropic":
        path, headers = f"/tenant/{TENANT}/v1/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"}
        body = {"model": model, "max_tokens": 32, "stream": stream, "messages": [{"role": "user", "content": text}]}
    else:
        path, headers = f"/tenant/{TENANT}/v1/chat/completions", {"Authorization": f"Bearer {key}"}
        body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
        if stream:
            body["stream_options"] = {"include_usage": True}
    with stack.client() as c:
        with c.stream("POST", path, json=body, headers=headers) as r:
            raw = r.read().decode()
            rid = r.headers.get("x-request-id")
            kind = r.headers.get("content-type", "")
            status = r.status_code
    if status != 200:
        assert kind.startswith("application/json"), (status, kind, raw[:200])
        value = json.loads(raw)
        if api == "anthropic":
            assert value["type"] == "error" and set(value["error"]) >= {"type", "message"}, value
        else:
            assert set(value["error"]) == {"message", "type", "code", "param"}, value
        return (status, value["error"]["code"]), rid
    if not stream:
        value = json.loads(raw)
        if api == "anthropic":
            assert value["content"][0]["text"] == "fault-free answer", value
            tokens = value["usage"]["input_tokens"] + value["usage"]["output_tokens"]
        else:
            assert value["choices"][0]["message"]["content"] == "fault-free answer", value
            tokens = value["usage"]["total_tokens"]
        return ("ok", tokens), rid
    assert kind.startswith("text/event-stream"), kind
    return stream_outcome(api, raw), rid


def stream_outcome(api, raw):
    """A stream's outcome: ("ok", tokens) when it ended properly, else ("stream", its last error code)."""
    datas = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
    events = [line[7:] for line in raw.splitlines() if line.startswith("event: ")]
    error = None
    tokens = 0
    text = ""
    for d in datas:
        if d == "[DONE]":
            continue
        value = json.loads(d)
        if "error" in value and api == "openai":
            error = value["error"].get("code")
        if api == "anthropic" and value.get("type") == "error":
            error = value["error"]["code"]
        if api == "openai":
            text += "".join((c.get("delta") or {}).get("content") or "" for c in value.get("choices") or [])
            if value.get("usage"):
                tokens = value["usage"]["total_tokens"]
        else:
            if value.get("type") == "content_block_delta":
                text += value["delta"].get("text", "")
            if value.get("type") == "message_delta":
                tokens = value["usage"].get("input_tokens", 0) + value["usage"]["output_tokens"]
    if api == "openai":
        ended = datas[-1:] == ["[DONE]"]
    else:
        ended = "message_stop" in events or "error" in events
    assert ended, raw[-300:]
    if error:
        return ("stream", error)
    assert text == "one two three four", raw[-500:]
    return ("ok", tokens)


def row(stack, rid):
    rows = stack.sql("SELECT status, error_code, tokens_in + tokens_out, cost_nano FROM executions "
                     "WHERE request_id = ?", rid)
    return rows


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("behaviour", sorted(EXPECT))
def test_fault(stack, behaviour, stream, api):
    outcome, rid = call(stack, api, stream, behaviour)
    expected = EXPECT[behaviour][1 if stream else 0]
    if api == "anthropic" and expected[0] == "ok":
        # Anthropic counts input and output; the upstream's 11 + 4 either way.
        expected = ("ok", 15)
    assert outcome == expected[:2], (behaviour, stream, api)
    # Exactly one execution row, with what the client saw and what the upstream reported.
    assert wait_until(lambda: len(row(stack, rid)) == 1, timeout=10), row(stack, rid)
    status, code, tokens, cost = row(stack, rid)[0]
    if outcome[0] == "ok":
        assert (status, code, tokens) == (200, None, 15)
        assert cost == 11 * 1000 + 4 * 2000
    elif outcome[0] == "stream":
        assert (status, code) == (200, outcome[1])
        if expected[2] == EST:
            assert 0 < tokens < 40 and cost > 0, (tokens, cost)
        else:
            assert tokens == expected[2]
    else:
        assert (status, code, tokens, cost) == (outcome[0], outcome[1], 0, 0)
    # Exactly one request log line, naming the outcome; no prompt text in it.
    lines = [e for e in stack.app_log() if e.get("request_id") == rid and e.get("msg") == "request"]
    assert len(lines) == 1, lines
    assert "fault matrix" not in json.dumps(lines[0])


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_connection_refused(stack, stream, api):
    outcome, rid = call(stack, api, stream, "none", model="fault-dead")
    assert outcome == BAD
    assert wait_until(lambda: len(row(stack, rid)) == 1, timeout=10)


def test_the_books_balance_after_the_matrix(stack):
    """After every fault: nothing held (leases retired), and the counters equal the execution rows."""
    def balanced():
        held = stack.sql("SELECT COALESCE(SUM(reserved_tokens), 0), COALESCE(SUM(reserved_nano), 0) "
                         "FROM budget_counters WHERE scope = ?", f"tenant:{TENANT}")[0]
        rows = stack.sql("SELECT COALESCE(SUM(tokens_in + tokens_out), 0), COALESCE(SUM(cost_nano), 0) "
                         "FROM executions WHERE tenant = ?", TENANT)[0]
        used = stack.sql("SELECT COALESCE(SUM(used_tokens), 0), COALESCE(SUM(used_nano), 0) FROM budget_counters "
                         "WHERE scope = ?", f"tenant:{TENANT}")[0]
        return tuple(held) == (0, 0) and tuple(rows) == tuple(used) and rows[0] > 0
    assert wait_until(balanced, timeout=15)
    assert not stack.sql("SELECT 1 FROM reservations WHERE tenant = ?", TENANT)
