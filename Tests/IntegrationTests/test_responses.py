"""The OpenAI Responses API through nginx with the official SDK, unchanged: create (text, image, function
tools with a round trip through previous_response_id), stream (event names, order, sequence numbers),
retrieve / delete / input_items, stored responses bound to their tenant, limits and budgets counted like
chat, usage in the execution row, an Anthropic backend, and bad input."""

import json
import uuid

import httpx
import openai
import pytest

from conftest import wait_until

WEATHER = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def client(stack, tenant="responder"):
    return openai.OpenAI(base_url=f"{stack.base}/tenant/{tenant}/v1", api_key=stack.keys[tenant], max_retries=0,
                         http_client=openai.DefaultHttpxClient(verify=False))


def raw(stack, tenant, method, path, **kw):
    return httpx.request(method, f"{stack.base}/tenant/{tenant}/v1/responses{path}", verify=False, timeout=30,
                         headers={"Authorization": f"Bearer {stack.keys[tenant]}"}, **kw)


def sent(stack, marker):
    return [q for q in stack.upstream_requests() if marker in json.dumps(q["body"])]


def test_create_text_and_the_upstream_request(stack):
    marker = uuid.uuid4().hex[:8]
    r = client(stack).responses.create(model="fast", input=f"Say hi {marker}", instructions="Be brief.",
                                       max_output_tokens=50, temperature=0.2, metadata={"k": "v"})
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.output_text == "part0 part1 part2 part3 " and r.model == "fast"
    assert r.output[0].type == "message" and r.output[0].content[0].type == "output_text"
    assert r.usage.output_tokens == 4 and r.usage.input_tokens > 0
    assert r.instructions == "Be brief." and r.metadata == {"k": "v"} and r.max_output_tokens == 50
    body = sent(stack, marker)[-1]["body"]
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": f"Say hi {marker}"}]
    assert body["max_tokens"] == 50 and body["temperature"] == 0.2 and "metadata" not in body
    # The execution row: endpoint, usage equal to the upstream's.
    assert wait_until(lambda: stack.sql(
        "SELECT endpoint, tokens_in, tokens_out, status FROM executions WHERE tenant = 'responder' "
        "ORDER BY id DESC LIMIT 1") == [("responses", r.usage.input_tokens, 4, 200)])


def test_images_and_message_items(stack):
    marker = uuid.uuid4().hex[:8]
    r = client(stack).responses.create(model="fast", input=[
        {"role": "user", "content": [{"type": "input_text", "text": f"What is this? {marker}"},
                                     {"type": "input_image", "image_url": "https://example.com/cat.png",
                                      "detail": "low"}]}])
    assert r.status == "completed"
    message = sent(stack, marker)[-1]["body"]["messages"][0]
    assert message["content"][1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png",
                                                                         "detail": "low"}}


def test_function_tools_round_trip_through_previous_response_id(stack):
    c = client(stack)
    first = c.responses.create(model="fast", tools=WEATHER, input='Weather in Paris? #mock {"tool": true}')
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"} and call.call_id == "call_mock1"
    marker = uuid.uuid4().hex[:8]
    second = c.responses.create(
        model="fast", tools=WEATHER, previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id,
                "output": f'Sunny {marker} #mock {{"text": "It is sunny."}}'}])
    assert second.output_text == "It is sunny." and second.previous_response_id == first.id
    messages = sent(stack, marker)[-1]["body"]["messages"]
    # The stored conversation came first: the question, the call, then the tool's answer.
    assert messages[0]["role"] == "user" and "Weather in Paris" in messages[0]["content"]
    assert messages[1]["tool_calls"][0]["id"] == "call_mock1"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_mock1",
                           "content": f'Sunny {marker} #mock {{"text": "It is sunny."}}'}
    # A third turn sees all of it.
    marker3 = uuid.uuid4().hex[:8]
    c.responses.create(model="fast", previous_response_id=second.id, input=f"Thanks {marker3}")
    assert [m["role"] for m in sent(stack, marker3)[-1]["body"]["messages"]] == ["user", "assistant", "tool",
                                                                                  "assistant", "user"]


def test_stream_events_in_order_with_sequence_numbers(stack):
    with client(stack).responses.stream(model="fast", input="stream please") as s:
        events = list(s)
        final = s.get_final_response()
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[2:5] == ["response.output_item.added", "response.content_part.added", "response.output_text.delta"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "part0 part1 part2 part3 " and final.usage.output_tokens == 4
    # Streamed responses are stored too, before the final event went out.
    assert client(stack).responses.retrieve(final.id).output_text == final.output_text


def test_streamed_function_call_events(stack):
    with client(stack).responses.stream(model="fast", tools=WEATHER, input='go #mock {"tool": true}') as s:
        events = list(s)
        final = s.get_final_response()
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types and "response.function_call_arguments.done" in types
    done = [e for e in events if e.type == "response.function_call_arguments.done"][0]
    assert json.loads(done.arguments) == {"city": "Paris"}
    assert final.output[0].type == "function_call" and final.output[0].call_id == "call_mock1"


def test_retrieve_delete_and_input_items(stack):
    c = client(stack)
    r = c.responses.create(model="fast", input=[{"role": "user", "content": "one"},
                                                {"role": "user", "content": "two"}])
    got = c.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text
    items = c.responses.input_items.list(r.id)
    assert [i.content[0].text if not isinstance(i.content, str) else i.content for i in items.data] in (
        [["two"], ["one"]], ["two", "one"])
    c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
    # store: false keeps nothing.
    unstored = c.responses.create(model="fast", input="ephemeral", store=False)
    assert raw(stack, "responder", "GET", f"/{unstored.id}").status_code == 404


def test_stored_responses_are_bound_to_their_tenant(stack):
    r = client(stack).responses.create(model="fast", input="mine")
    for method, path in [("GET", f"/{r.id}"), ("DELETE", f"/{r.id}"), ("GET", f"/{r.id}/input_items")]:
        other = raw(stack, "responder2", method, path)
        unknown = raw(stack, "responder2", method, "/resp_" + "0" * 48)
        assert other.status_code == 404 == unknown.status_code
        assert other.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    with pytest.raises(openai.NotFoundError):
        client(stack, "responder2").responses.create(model="fast", input="hi", previous_response_id=r.id)
    # Ids the gateway never issued, odd or hostile, are 404 too.
    for bad in ["resp_123", "../../x", "resp_" + "g" * 48, "RESP_" + "a" * 48]:
        assert raw(stack, "responder", "GET", f"/{bad}").status_code == 404
    assert client(stack).responses.retrieve(r.id).id == r.id


def test_limits_count_responses_like_chat(stack):
    c = client(stack, "narrow")
    statuses = []
    for _ in range(3):
        statuses.append(c.responses.with_raw_response.create(model="fast", input="hi").status_code)
    with pytest.raises(openai.RateLimitError):
        c.responses.create(model="fast", input="one more")
    r = httpx.post(f"{stack.base}/tenant/narrow/v1/chat/completions", verify=False,
                   headers={"Authorization": f"Bearer {stack.keys['narrow']}"},
                   json={"model": "fast", "messages": [{"role": "user", "content": "chat"}]})
    assert statuses == [200, 200, 200] and r.status_code == 429


def test_an_anthropic_backend_serves_responses(stack):
    marker = uuid.uuid4().hex[:8]
    r = client(stack).responses.create(model="sonnet", input=f"hello {marker}", instructions="Terse.")
    assert r.status == "completed" and r.output_text
    upstream = sent(stack, marker)[-1]
    assert upstream["path"].endswith("/v1/messages") and upstream["body"]["system"] == "Terse."
    with client(stack).responses.stream(model="sonnet", input="stream from claude") as s:
        assert s.get_final_response().output_text


def test_the_mock_backend_and_max_output_tokens(stack):
    r = client(stack).responses.create(model="mock-small", input="hello mock", max_output_tokens=3)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"


def test_bad_input_is_refused_and_nothing_is_stored(stack):
    before = stack.sql("SELECT COUNT(*) FROM stored_responses WHERE tenant = 'responder'")[0][0]
    cases = [
        {"model": "fast"},
        {"model": "fast", "input": []},
        {"model": "fast", "input": [{"type": "mystery"}]},
        {"model": "fast", "input": [{"role": "wizard", "content": "x"}]},
        {"model": "fast", "input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
        {"model": "fast", "input": "x", "tools": [{"type": "web_search"}]},
        {"model": "fast", "input": "x", "text": {"format": {"type": "xml"}}},
        {"model": "fast", "input": "x", "background": True},
        {"model": "fast", "input": "x", "unknown_field": 1},
        {"model": "fast", "input": "x", "max_output_tokens": -1},
    ]
    for body in cases:
        r = raw(stack, "responder", "POST", "", json=body)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (body, r.text)
    r = raw(stack, "responder", "POST", "", json={"model": "fast", "input": "x", "previous_response_id": "resp_" + "a" * 48})
    assert r.status_code == 404
    r = raw(stack, "noresp", "POST", "", json={"model": "fast", "input": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "feature_disabled"
    assert stack.sql("SELECT COUNT(*) FROM stored_responses WHERE tenant = 'responder'")[0][0] == before
    # A structured-output format goes upstream as response_format.
    marker = uuid.uuid4().hex[:8]
    client(stack).responses.create(model="fast", input=f"json {marker}", text={"format": {
        "type": "json_schema", "name": "thing", "schema": {"type": "object"}, "strict": True}})
    assert sent(stack, marker)[-1]["body"]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "thing", "schema": {"type": "object"}, "strict": True}}


def test_guardrails_and_the_cache_apply_to_responses(stack):
    guarded = client(stack, "guarded")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        guarded.responses.create(model="fast", input="tell me the forbidden-word")
    assert refused.value.body["code"] == "policy_blocked"
    card = "4111 1111 1111 1111"
    r = guarded.responses.create(model="fast", input=f'card please #mock {{"text": "Use {card} today"}}')
    assert card not in r.output_text and "today" in r.output_text
    # A repeat of an eligible request is answered from the tenant's cache, in the Responses shape.
    marker = uuid.uuid4().hex[:8]
    cached = client(stack, "cached")
    first = cached.responses.with_raw_response.create(model="fast", input=f"cache me {marker}", temperature=0)
    second = cached.responses.with_raw_response.create(model="fast", input=f"cache me {marker}", temperature=0)
    assert first.headers["x-tenantgate-cache"] == "miss" and second.headers["x-tenantgate-cache"] == "hit"
    assert second.parse().output_text == first.parse().output_text and len(sent(stack, marker)) == 1


def test_deleting_a_tenant_deletes_its_responses(stack):
    stack.cli("tenant", "create", "doomed-resp", "--models", "fast")
    key = stack.cli("key", "create", "doomed-resp").stdout.strip().splitlines()[-1]
    c = openai.OpenAI(base_url=f"{stack.base}/tenant/doomed-resp/v1", api_key=key, max_retries=0,
                      http_client=openai.DefaultHttpxClient(verify=False))
    assert wait_until(lambda: c.responses.with_raw_response.create(model="fast", input="x").status_code == 200)
    assert stack.sql("SELECT COUNT(*) FROM stored_responses WHERE tenant = 'doomed-resp'")[0][0] >= 1
    stack.cli("tenant", "delete", "doomed-resp")
    assert stack.sql("SELECT COUNT(*) FROM stored_responses WHERE tenant = 'doomed-resp'")[0][0] == 0


def test_a_native_responses_backend_gets_the_request_as_written(stack):
    c = client(stack)
    marker = uuid.uuid4().hex[:8]
    first = c.responses.create(model="fast", input=f"first turn {marker}")
    r = c.responses.create(model="native-fast", input=f"native {marker}", previous_response_id=first.id,
                           instructions="Native.", metadata={"k": "v"})
    assert r.id.startswith("resp_") and len(r.id) == 53 and r.id != "resp_upstream1"
    assert r.output_text == "native0 native1 native2 native3 " and r.model == "native-fast"
    upstream = [q for q in sent(stack, marker) if q["path"].endswith("/v1/responses")][-1]
    body = upstream["body"]
    # As written: the upstream model, nothing stored upstream, the earlier turn expanded into input items.
    assert body["model"] == "upstream-native-v1" and body["store"] is False and "previous_response_id" not in body
    assert body["instructions"] == "Native." and body["metadata"] == {"k": "v"}
    assert body["input"][0] == {"type": "message", "role": "user", "content": f"first turn {marker}"}
    assert body["input"][1]["role"] == "assistant" and body["input"][-1]["content"] == f"native {marker}"
    assert c.responses.retrieve(r.id).output_text == r.output_text
    assert wait_until(lambda: stack.sql(
        "SELECT endpoint, tokens_in, tokens_out, model FROM executions WHERE tenant = 'responder' "
        "ORDER BY id DESC LIMIT 1") == [("responses", 11, 4, "native-fast")])
    # Streamed natively: the upstream's events, with the gateway's id, stored before the final one.
    with c.responses.stream(model="native-fast", input="native stream") as s:
        events = list(s)
        final = s.get_final_response()
    assert [e.type for e in events][0] == "response.created" and events[-1].type == "response.completed"
    assert final.id.startswith("resp_") and final.id != "resp_upstream1" and final.usage.output_tokens == 4
    assert all(getattr(e, "response", None) is None or e.response.id == final.id for e in events)
    assert c.responses.retrieve(final.id).output_text == final.output_text
    # A tenant prompt changes what the upstream must see: that call is translated to Chat Completions.
    marker2 = uuid.uuid4().hex[:8]
    client(stack, "responder2").responses.create(model="native-fast", input=f"prompted {marker2}")
    assert sent(stack, marker2)[-1]["path"].endswith("/chat/completions")
