"""The anthropic provider and the inbound Messages API, through nginx, with both official SDKs."""

import json
import time

import anthropic
import httpx
import openai
import pytest

from conftest import wait_until


def seen(stack, marker):
    return [q for q in stack.upstream_requests() if marker in json.dumps(q["body"])]


def oai(stack, tenant):
    return openai.OpenAI(base_url=f"{stack.base}/tenant/{tenant}/v1", api_key=stack.keys[tenant],
                         http_client=httpx.Client(verify=False), max_retries=0)


def ant(stack, tenant, key=None):
    return anthropic.Anthropic(base_url=f"{stack.base}/tenant/{tenant}", api_key=key or stack.keys[tenant],
                               http_client=anthropic.DefaultHttpxClient(verify=False), max_retries=0)


def execution(stack, rid):
    rows = []

    def found():
        rows[:] = stack.sql("SELECT model, status, tokens_in, tokens_out, cost_nano, error_code FROM executions "
                            "WHERE request_id = ?", rid)
        return bool(rows)
    assert wait_until(found), "no execution row"
    return rows[0]


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}


# OpenAI SDK client, Anthropic backend

def test_openai_sdk_is_served_by_an_anthropic_backend(stack):
    raw = oai(stack, "anthro").chat.completions.with_raw_response.create(
        model="sonnet", messages=[{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "oa-1 hello #mock {\"cache_read\": 10}"}])
    reply = raw.parse()
    assert reply.choices[0].message.content == "part0 part1 part2 part3 "
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "sonnet"
    [up] = seen(stack, "oa-1")
    assert up["path"] == "/v1/messages"
    assert up["headers"]["x-api-key"] == "sk-ant-upstream-secret-456"
    assert up["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in up["headers"]
    body = up["body"]
    assert body["model"] == "claude-sonnet-4-5"
    assert body["max_tokens"] == 64  # the catalog's default for the model
    assert body["system"] == "Be brief."
    assert [m["role"] for m in body["messages"]] == ["user"]
    # Usage: prompt = input + cache reads; cache reads priced at the cached price.
    usage = reply.usage
    assert usage.completion_tokens == 4
    assert usage.prompt_tokens_details.cached_tokens == 10
    model, status, tin, tout, cost, _ = execution(stack, raw.headers["x-request-id"])
    assert (model, status, tin, tout) == ("sonnet", 200, usage.prompt_tokens, 4)
    assert cost == (tin - 10) * 3000 + 10 * 300 + 4 * 15000


def test_openai_sdk_streams_from_an_anthropic_backend(stack):
    stream = oai(stack, "anthro").chat.completions.create(
        model="sonnet", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "oa-2 #mock {\"chunks\": 6, \"cache_write\": 7}"}])
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == "".join(f"part{i} " for i in range(6))
    assert finish == "stop"
    assert usage.completion_tokens == 6
    [up] = seen(stack, "oa-2")
    assert up["body"]["stream"] is True
    rows = stack.sql("SELECT tokens_in, tokens_out, cost_nano FROM executions WHERE tenant = 'anthro' "
                     "ORDER BY id DESC LIMIT 1")
    assert wait_until(lambda: stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'anthro' AND tokens_out = 6")
                      [0][0] >= 1)
    rows = stack.sql("SELECT tokens_in, cost_nano FROM executions WHERE tenant = 'anthro' AND tokens_out = 6")
    tin, cost = rows[-1]
    assert tin == usage.prompt_tokens
    assert cost == (tin - 7) * 3000 + 7 * 3750 + 6 * 15000


def test_openai_tools_round_trip_through_anthropic(stack):
    client = oai(stack, "anthro")
    reply = client.chat.completions.create(
        model="sonnet", tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
        messages=[{"role": "user", "content": "oa-3 weather? #mock {\"tool\": true}"}])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.id == "toolu_mock1" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 2}
    [up] = seen(stack, "oa-3")
    assert up["body"]["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                                    "input_schema": WEATHER["function"]["parameters"]}]
    assert up["body"]["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    # The tool result goes back as a tool_result block in a user turn.
    client.chat.completions.create(model="sonnet", tools=[WEATHER], messages=[
        {"role": "user", "content": "oa-3b weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}])
    [up] = seen(stack, "oa-3b")
    msgs = up["body"]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[1]["content"] == [{"type": "tool_use", "id": "toolu_mock1", "name": "get_weather",
                                   "input": {"city": "Paris", "days": 2}}]
    assert msgs[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_mock1", "content": "sunny, 21C"}]


def test_openai_stream_of_tool_calls_from_anthropic(stack):
    stream = oai(stack, "anthro").chat.completions.create(
        model="sonnet", stream=True, tools=[WEATHER],
        messages=[{"role": "user", "content": "oa-4 #mock {\"tool\": true, \"chunks\": 1}"}])
    args, name, finish = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                name = call.function.name or name
                args += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert name == "get_weather" and json.loads(args) == {"city": "Paris", "days": 2}
    assert finish == "tool_calls"


# Anthropic SDK client (inbound /v1/messages), every kind of backend

@pytest.mark.parametrize("model,path", [("fast", "/v1/chat/completions"), ("sonnet", "/v1/messages")])
def test_anthropic_sdk_is_served_by_any_backend(stack, model, path):
    marker = f"am-1-{model}"
    raw = ant(stack, "anthro").messages.with_raw_response.create(
        model=model, max_tokens=50, system="You are terse.", stop_sequences=["END"],
        messages=[{"role": "user", "content": [{"type": "text", "text": f"{marker} hi"}]}])
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text == "part0 part1 part2 part3 "
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 4 and message.usage.input_tokens > 0
    assert raw.headers["x-tenantgate-model"] == model
    [up] = seen(stack, marker)
    assert up["path"] == path
    if model == "fast":
        body = up["body"]
        assert body["messages"][0] == {"role": "system", "content": "You are terse."}
        assert body["max_tokens"] == 50 and body["stop"] == ["END"]
        assert up["headers"]["authorization"] == "Bearer sk-upstream-secret-123"
    else:
        assert up["body"]["system"] == "You are terse." and up["body"]["max_tokens"] == 50
    _, status, tin, tout, _, _ = execution(stack, raw.headers["x-request-id"])
    assert (status, tout) == (200, 4)
    assert tin == message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)


@pytest.mark.parametrize("model", ["fast", "sonnet", "mock-small"])
def test_anthropic_sdk_streams_from_any_backend(stack, model):
    marker = f"am-2-{model}"
    with ant(stack, "anthro").messages.stream(
            model=model, max_tokens=50,
            messages=[{"role": "user", "content": f"{marker} #mock {{\"chunks\": 5}}"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    if model == "mock-small":
        assert text.startswith("This is TenantGate's mock backend.")
    else:
        assert text == "".join(f"part{i} " for i in range(5))
        assert final.usage.output_tokens == 5
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == text
    assert final.usage.input_tokens > 0


def test_anthropic_sdk_keeps_cache_usage_from_an_anthropic_backend(stack):
    message = ant(stack, "anthro").messages.create(
        model="sonnet", max_tokens=20,
        messages=[{"role": "user", "content": "am-3 #mock {\"cache_read\": 30, \"cache_write\": 12}"}])
    assert message.usage.cache_read_input_tokens == 30
    assert message.usage.cache_creation_input_tokens == 12


def test_anthropic_sdk_tools_through_anthropic_backend(stack):
    tool = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER["function"]["parameters"]}
    client = ant(stack, "anthro")
    message = client.messages.create(
        model="sonnet", max_tokens=30, tools=[tool], tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "am-4 #mock {\"tool\": true}"}])
    assert message.stop_reason == "tool_use"
    use = [b for b in message.content if b.type == "tool_use"][0]
    assert use.name == "get_weather" and use.input == {"city": "Paris", "days": 2}
    [up] = seen(stack, "am-4")
    assert up["body"]["tools"][0]["input_schema"] == tool["input_schema"]
    assert up["body"]["tool_choice"] == {"type": "tool", "name": "get_weather"}
    # A tool result flows back.
    client.messages.create(model="sonnet", max_tokens=30, tools=[tool], messages=[
        {"role": "user", "content": "am-4b weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}])
    [up] = seen(stack, "am-4b")
    assert up["body"]["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": use.id,
                                                     "content": "sunny"}]
    # Streamed tool use reaches the SDK as input_json deltas.
    with client.messages.stream(model="sonnet", max_tokens=30, tools=[tool],
                                messages=[{"role": "user", "content": "am-4c #mock {\"tool\": true}"}]) as stream:
        final = stream.get_final_message()
    use = [b for b in final.content if b.type == "tool_use"][0]
    assert use.input == {"city": "Paris", "days": 2} and final.stop_reason == "tool_use"


# Errors on /v1/messages come in Anthropic's shape

def test_messages_errors_use_anthropic_shape(stack):
    headers = {"x-api-key": stack.keys["anthro"], "anthropic-version": "2023-06-01"}
    with stack.client() as c:
        url = "/tenant/anthro/v1/messages"
        r = c.post(url, headers=headers, json={"model": "sonnet", "messages": [{"role": "user", "content": "err-x"}]})
        assert r.status_code == 400
        assert r.json()["type"] == "error"
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in r.json()["error"]["message"]
        r = c.post(url, headers=headers, json={"model": "sonnet", "max_tokens": 5,
                                               "messages": [{"role": "user", "content": 42}]})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = c.post(url, headers=headers, json={"model": "sonnet", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]})
        assert r.status_code == 400
        big = {"model": "sonnet", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
        r = c.post(url, headers=headers, json=big)  # refused by nginx itself, still in Anthropic's shape
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
        r = c.post("/tenant/anthro/v1/chat/completions", headers=headers, json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        r = c.post(url, headers=headers, content=b"{nope")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = c.post(url, headers={**headers, "x-api-key": "tg_forged"}, json={})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = c.post(url, headers=headers, json={"model": "backup", "max_tokens": 5,
                                               "messages": [{"role": "user", "content": "err-x"}]})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert not seen(stack, "err-x")
    with pytest.raises(anthropic.BadRequestError):
        ant(stack, "anthro").messages.create(model="sonnet", max_tokens=0, messages=[{"role": "user", "content": "err-x"}])


def test_messages_api_flag(stack):
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        ant(stack, "nomsg").messages.create(model="fast", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["error"]["code"] == "feature_disabled"


# Faults

def test_anthropic_upstream_failures(stack):
    client = oai(stack, "anthro")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "f-1 #mock {\"status\": 400}"}])
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "f-2 #mock {\"status\": 529}"}])
    assert info.value.status_code == 502
    assert len(seen(stack, "f-2")) == 3  # 529 (overloaded) is retried
    # Mid-stream: an error event from Anthropic becomes a final error event and a clean end.
    with stack.client() as c:
        with c.stream("POST", "/tenant/anthro/v1/chat/completions",
                      headers={"Authorization": f"Bearer {stack.keys['anthro']}"},
                      json={"model": "sonnet", "stream": True, "messages": [
                          {"role": "user", "content": "f-3 #mock {\"stream_error\": true}"}]}) as r:
            body = r.read().decode()
    assert "part0" in body and "Overloaded" in body and body.rstrip().endswith("data: [DONE]")
    with pytest.raises(anthropic.APIStatusError):
        with ant(stack, "anthro").messages.stream(model="sonnet", max_tokens=20, messages=[
                {"role": "user", "content": "f-4 #mock {\"cut\": true}"}]) as stream:
            "".join(stream.text_stream)


def test_first_byte_timeout(stack):
    # The upstream answers after 4 s, inside the backend's 8 s total timeout: only the 400 ms first-byte
    # timeout can make this a 504.
    r = httpx.post(f"{stack.base}/tenant/anthro/v1/chat/completions", verify=False, timeout=30,
                   headers={"Authorization": f"Bearer {stack.keys['anthro']}"},
                   json={"model": "slowpoke", "messages": [{"role": "user", "content": "fb-1 #mock {\"delay_ms\": 4000}"}]})
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"


def test_fallback_from_openai_to_anthropic(stack):
    r = httpx.post(f"{stack.base}/tenant/anthro/v1/chat/completions", verify=False, timeout=30,
                   headers={"Authorization": f"Bearer {stack.keys['anthro']}"},
                   json={"model": "fast", "messages": [
                       {"role": "user", "content": "fb-2 #mock {\"status\": 500, \"only_model\": \"upstream-fast-v2\"}"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-tenantgate-model"] == "sonnet"
    assert r.json()["choices"][0]["message"]["content"] == "part0 part1 part2 part3 "
    assert [q["path"] for q in seen(stack, "fb-2")] == ["/v1/chat/completions"] * 3 + ["/v1/messages"]


def test_anthropic_circuit_is_per_tenant(stack):
    client = ant(stack, "anthro2")
    for i in range(2):
        with pytest.raises(anthropic.APIStatusError):
            client.messages.create(model="sonnet", max_tokens=5,
                                   messages=[{"role": "user", "content": f"cb-a{i} #mock {{\"status\": 500}}"}])
    before = len(stack.upstream_requests())
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="sonnet", max_tokens=5, messages=[{"role": "user", "content": "cb-open"}])
    assert info.value.status_code == 503 and info.value.body["error"]["code"] == "circuit_open"
    assert info.value.response.headers["retry-after"]
    assert len(stack.upstream_requests()) == before
    # Another tenant on the same backend is served meanwhile.
    assert ant(stack, "anthro").messages.create(
        model="sonnet", max_tokens=5, messages=[{"role": "user", "content": "cb-other"}]).stop_reason
    # After the 2 s cooldown one probe goes through and closes the circuit.
    def probe():
        return client.messages.create(model="sonnet", max_tokens=5,
                                      messages=[{"role": "user", "content": "cb-probe"}]).content
    assert wait_until(probe, timeout=10, interval=0.25)
    assert probe()


def test_bare_messages_path_resolves_the_tenant_from_the_key(stack):
    client = anthropic.Anthropic(base_url=stack.base, api_key=stack.keys["anthro"],
                                 http_client=anthropic.DefaultHttpxClient(verify=False), max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="mock-small", max_tokens=20, messages=[{"role": "user", "content": "bare path"}])
    assert raw.headers["x-tenant-id"] == "anthro"
    assert raw.parse().content[0].text.startswith("This is TenantGate's mock backend.")


def test_anthropic_to_anthropic_is_native(stack):
    """cache_control, thinking, top_k and document blocks reach an Anthropic backend untouched."""
    body = {
        "model": "sonnet", "max_tokens": 40, "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "system": [{"type": "text", "text": "Long shared context.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "A memo."}},
            {"type": "text", "text": "nat-1 summarise", "cache_control": {"type": "ephemeral"}}]}],
        "metadata": {"user_id": "u-9"},
    }
    headers = {"x-api-key": stack.keys["anthro"], "anthropic-version": "2023-06-01",
               "anthropic-beta": "interleaved-thinking-2025-05-14"}
    r = httpx.post(f"{stack.base}/tenant/anthro/v1/messages", json=body, headers=headers, verify=False, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "msg_mock"  # the upstream's own answer
    [up] = seen(stack, "nat-1")
    assert up["body"] == {**body, "model": "claude-sonnet-4-5"}
    assert up["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert up["headers"]["x-api-key"] == "sk-ant-upstream-secret-456"  # never the client's gateway key
    # Streaming: the upstream's events, as sent.
    with httpx.stream("POST", f"{stack.base}/tenant/anthro/v1/messages", json={**body, "stream": True,
                      "messages": [{"role": "user", "content": "nat-2"}]}, headers=headers, verify=False) as s:
        text = s.read().decode()
    assert text.count("event: ping") == 1 and '"id": "msg_mock"' in text and "event: message_stop" in text
    rid = s.headers["x-request-id"]
    _, status, tin, tout, _, _ = execution(stack, rid)
    assert (status, tout) == (200, 4) and tin > 0
    # The same document for a model on an OpenAI backend cannot be translated: a clear 400, no call.
    r = httpx.post(f"{stack.base}/tenant/anthro/v1/messages", json={**body, "model": "fast"}, headers=headers,
                   verify=False, timeout=30)
    assert r.status_code == 400 and "document" in r.json()["error"]["message"]
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert len(seen(stack, "nat-1")) == 1


def test_tenant_prompt_applies_to_native_calls(stack):
    message = ant(stack, "anthro3").messages.create(
        model="sonnet", max_tokens=20, system="Client rules.",
        messages=[{"role": "user", "content": "nat-3"}])
    assert message.content[0].text
    [up] = seen(stack, "nat-3")
    assert up["body"]["system"] == "Tenant rules for anthro3.\n\nClient rules."


def test_count_tokens(stack):
    client = ant(stack, "anthro")
    messages = [{"role": "user", "content": "count-1 how many tokens is this?"}]
    native = client.messages.count_tokens(model="sonnet", system="Be brief.", messages=messages)
    [up] = seen(stack, "count-1")
    assert up["path"] == "/v1/messages/count_tokens" and up["body"]["model"] == "claude-sonnet-4-5"
    assert native.input_tokens > 1000  # the upstream's count (the mock adds 1000 to tell it apart)
    estimate = client.messages.count_tokens(model="fast", messages=messages)
    assert 0 < estimate.input_tokens < 1000
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.count_tokens(model="backup", messages=messages)
    # Free, like upstream: no tokens charged (the upstream call is logged with zero tokens and counts
    # against the requests-per-minute limit).
    assert not stack.sql("SELECT 1 FROM executions WHERE model = 'sonnet' AND tokens_in > 1000")


def test_embeddings_on_an_anthropic_model_are_refused_up_front(stack):
    r = httpx.post(f"{stack.base}/tenant/anthro/v1/embeddings", verify=False, timeout=30,
                   headers={"Authorization": f"Bearer {stack.keys['anthro']}"},
                   json={"model": "sonnet", "input": "emb-anthropic"})
    assert r.status_code == 400 and "does not offer embeddings" in r.json()["error"]["message"]
    assert not seen(stack, "emb-anthropic")


def test_native_stream_error_is_passed_on_once(stack):
    headers = {"x-api-key": stack.keys["anthro"], "anthropic-version": "2023-06-01"}
    body = {"model": "sonnet", "max_tokens": 20, "stream": True,
            "messages": [{"role": "user", "content": "nat-err #mock {\"stream_error\": true}"}]}
    with httpx.stream("POST", f"{stack.base}/tenant/anthro/v1/messages", json=body, headers=headers,
                      verify=False, timeout=30) as r:
        text = r.read().decode()
        rid = r.headers["x-request-id"]
    assert text.count("event: error") == 1 and "Overloaded" in text and "part0" in text
    _, status, _, _, _, code = execution(stack, rid)
    assert (status, code) == (200, "upstream_error")
