"""A scriptable mock LLM upstream speaking OpenAI (and Anthropic) HTTP, for integration tests and benchmarks.

Behaviour is scripted per request by a directive in the last user message: `#mock {"status": 500}`.
Directives: status, delay_ms, chunk_delay_ms, chunks, cut (stream stops without [DONE] / message_stop),
broken_json, no_usage, retry_after, tool (answer with a call of the first offered tool, in both APIs), cache_read,
cache_write (Anthropic prompt-cache token counts), stream_error (Anthropic `error` event mid-stream),
usage (an object that replaces the OpenAI usage report, e.g. absurd numbers from a hostile upstream),
extra_b64 (base64 of a JSON object: `message` and `choice` merged into a whole OpenAI answer's message and
choice, `deltas` streamed before the finishing chunk, `finish_delta` the finishing chunk's delta, `chunk_choice` merged into every streamed choice,
`blocks` appended to a whole Anthropic answer's content: fields a real upstream sends beside the text).
POST .../chat/completions speaks OpenAI, POST .../v1/responses OpenAI's Responses API, POST .../v1/messages speaks Anthropic (and requires
`anthropic-version` and `max_tokens`, like the real API). Every request is recorded (GET /_requests,
POST /_reset).
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.attempts = {}

    def attempt(self, key):
        """How many times a request with this key was seen before (for fail_times)."""
        with self.lock:
            n = self.attempts.get(key, 0)
            self.attempts[key] = n + 1
            return n

    def add(self, entry):
        with self.lock:
            self.requests.append(entry)

    def all(self):
        with self.lock:
            return list(self.requests)

    def reset(self):
        with self.lock:
            self.requests.clear()


def text_of(content):
    if isinstance(content, list):
        return " ".join(p.get("text") or text_of(p.get("content")) or "" for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def directive(body):
    try:
        messages = body.get("messages") or []
        for message in reversed(messages):
            content = text_of(message.get("content"))
            if isinstance(content, str) and "#mock " in content:
                return json.loads(content.split("#mock ", 1)[1])
        # Embeddings: a directive in any input text (up to its end of line).
        inputs = body.get("input")
        for text in [inputs] if isinstance(inputs, str) else (inputs or []):
            if isinstance(text, str) and "#mock " in text:
                return json.loads(text.split("#mock ", 1)[1].split("\n", 1)[0])
    except (ValueError, AttributeError):
        pass
    return {}


def extra(d):
    """The directive's `extra_b64` fields (see the module doc), decoded."""
    if "extra_b64" not in d:
        return {}
    return json.loads(__import__("base64").b64decode(d["extra_b64"]).decode())


def given_pieces(d):
    """A given answer (`text`, or `text_b64` for answers a request must not carry in clear), cut into
    `chunk_chars`-character pieces; None when the directive gives none."""
    text = d.get("text")
    if "text_b64" in d:
        text = __import__("base64").b64decode(d["text_b64"]).decode()
    if text is None:
        return None
    size = int(d.get("chunk_chars", 3))
    return [text[i:i + size] for i in range(0, len(text), size)]


def prompt_tokens(body):
    """A tokenizer stand-in: 1 token per 4 bytes of text, 3 per message (like real chat templates)."""
    total = 0
    system = body.get("system")
    if isinstance(system, str):
        total += (len(system.encode()) + 3) // 4 + 3
    for message in body.get("messages") or []:
        content = text_of(message.get("content"))
        total += (len((content or "").encode()) + 3) // 4 + 3
    return total


def make_handler(recorder):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send_json(self, status, value, extra=None):
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/_requests":
                return self.send_json(200, recorder.all())
            self.send_json(404, {"error": {"message": "not found"}})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path == "/_reset":
                recorder.reset()
                return self.send_json(200, {"ok": True})
            try:
                body = json.loads(raw)
            except ValueError:
                return self.send_json(400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
            recorder.add({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
            d = directive(body)
            if d.get("delay_ms"):
                time.sleep(d["delay_ms"] / 1000)
            if d.get("only_model") and d["only_model"] != body.get("model"):
                d = {k: v for k, v in d.items() if k not in ("status", "retry_after", "delay_ms")}
            if d.get("fail_times") is not None:
                key = json.dumps(body.get("messages") or body.get("input"), sort_keys=True)
                if recorder.attempt(key) >= d["fail_times"]:
                    d = {k: v for k, v in d.items() if k not in ("status", "retry_after")}
            if self.path.endswith("/v1/messages/count_tokens"):
                if "max_tokens" in body or not self.headers.get("anthropic-version"):
                    return self.send_json(400, {"type": "error", "error": {
                        "type": "invalid_request_error", "message": "max_tokens: Extra inputs are not permitted"}})
                return self.send_json(200, {"input_tokens": prompt_tokens(body) + 1000})
            anthropic = self.path.endswith("/v1/messages")
            if d.get("status"):
                extra = {"Retry-After": str(d["retry_after"])} if "retry_after" in d else None
                error = {"message": "scripted failure", "type": "server_error"}
                if anthropic:
                    return self.send_json(d["status"], {"type": "error", "error": {**error, "type": "api_error"}}, extra)
                return self.send_json(d["status"], {"error": error}, extra)
            if anthropic:
                return self.messages(body, d)
            if self.path.endswith("/chat/completions"):
                return self.chat(body, d)
            if self.path.endswith("/v1/responses"):
                return self.responses_api(body, d)
            if self.path.endswith("/embeddings"):
                inputs = body.get("input")
                inputs = [inputs] if isinstance(inputs, str) else inputs
                data = [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, 0.3]}
                        for i in range(len(inputs))]
                tokens = sum((len(str(x).encode()) + 3) // 4 for x in inputs)
                return self.send_json(200, {"object": "list", "data": data, "model": body.get("model"),
                                            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
            self.send_json(404, {"error": {"message": "unknown path"}})

        def responses_api(self, body, d):
            """OpenAI's Responses API, natively: a text answer of four pieces, whole or as typed events."""
            pieces = [f"native{i} " for i in range(4)]
            text = "".join(pieces)
            usage = {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 4,
                     "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
            item = {"id": "msg_up1", "type": "message", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
            response = {"id": "resp_upstream1", "object": "response", "created_at": 1, "status": "completed",
                        "model": body.get("model"), "output": [item], "parallel_tool_calls": True,
                        "tool_choice": "auto", "tools": [], "usage": usage, "store": body.get("store")}
            if not body.get("stream"):
                return self.send_json(200, response)
            self.start_stream()
            seq = 0

            def event(kind, value):
                nonlocal seq
                payload = {"type": kind, **value, "sequence_number": seq}
                seq += 1
                self.wfile.write(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())
                self.wfile.flush()

            progress = {**response, "status": "in_progress", "output": [], "usage": None}
            event("response.created", {"response": progress})
            event("response.in_progress", {"response": progress})
            event("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress",
                                                                             "content": []}})
            event("response.content_part.added", {"item_id": "msg_up1", "output_index": 0, "content_index": 0,
                                                  "part": {"type": "output_text", "text": "", "annotations": []}})
            for piece in pieces:
                if d.get("chunk_delay_ms"):
                    time.sleep(d["chunk_delay_ms"] / 1000)
                event("response.output_text.delta", {"item_id": "msg_up1", "output_index": 0, "content_index": 0,
                                                     "delta": piece, "logprobs": []})
            if d.get("cut"):
                return
            event("response.output_text.done", {"item_id": "msg_up1", "output_index": 0, "content_index": 0,
                                                "text": text, "logprobs": []})
            event("response.content_part.done", {"item_id": "msg_up1", "output_index": 0, "content_index": 0,
                                                 "part": item["content"][0]})
            event("response.output_item.done", {"output_index": 0, "item": item})
            event("response.completed", {"response": response})

        def start_stream(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def messages(self, body, d):
            """The Anthropic Messages API."""
            if not self.headers.get("anthropic-version"):
                return self.send_json(400, {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "anthropic-version header is required"}})
            if not isinstance(body.get("max_tokens"), int):
                return self.send_json(400, {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "max_tokens: Field required"}})
            n = min(int(d.get("chunks", 4)), body["max_tokens"])
            pieces = [f"part{i} " for i in range(n)]
            pieces = given_pieces(d) or pieces
            n = len(pieces)
            tools = body.get("tools") or []
            call = tools[0] if d.get("tool") and tools else None
            usage = {"input_tokens": prompt_tokens(body), "output_tokens": n,
                     "cache_read_input_tokens": int(d.get("cache_read", 0)),
                     "cache_creation_input_tokens": int(d.get("cache_write", 0))}
            stop = "tool_use" if call else ("max_tokens" if n == body["max_tokens"] and n < int(d.get("chunks", 4))
                                            else "end_turn")
            if not body.get("stream"):
                content = [{"type": "text", "text": "".join(pieces)}] + extra(d).get("blocks", [])
                if call:
                    content.append({"type": "tool_use", "id": "toolu_mock1", "name": call["name"],
                                    "input": {"city": "Paris", "days": 2}})
                return self.send_json(200, {
                    "id": "msg_mock", "type": "message", "role": "assistant", "model": body.get("model"),
                    "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage})
            self.start_stream()

            def event(name, value):
                self.wfile.write(f"event: {name}\ndata: ".encode() + json.dumps({"type": name, **value}).encode()
                                 + b"\n\n")
                self.wfile.flush()

            try:
                event("message_start", {"message": {
                    "id": "msg_mock", "type": "message", "role": "assistant", "model": body.get("model"),
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {**usage, "output_tokens": 1}}})
                event("ping", {})
                event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
                for i, piece in enumerate(pieces):
                    if d.get("chunk_delay_ms"):
                        time.sleep(d["chunk_delay_ms"] / 1000)
                    if d.get("cut") and i == n // 2:
                        return
                    if d.get("stream_error") and i == n // 2:
                        event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
                        return
                    event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
                event("content_block_stop", {"index": 0})
                if call:
                    event("content_block_start", {"index": 1, "content_block": {
                        "type": "tool_use", "id": "toolu_mock1", "name": call["name"], "input": {}}})
                    for part in ['{"city": ', '"Paris", "days": 2}']:
                        event("content_block_delta", {"index": 1, "delta": {
                            "type": "input_json_delta", "partial_json": part}})
                    event("content_block_stop", {"index": 1})
                event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                        "usage": {"output_tokens": n}})
                event("message_stop", {})
            except (BrokenPipeError, ConnectionResetError):
                pass

        def chat(self, body, d):
            n = int(d.get("chunks", 4))
            cap = body.get("max_tokens") or body.get("max_completion_tokens")
            if cap:
                n = min(n, int(cap))
            # Stopped by the cap (like a real model): finish_reason "length".
            finish = "length" if cap and n == int(cap) and int(d.get("chunks", 4)) > n else "stop"
            pieces = [f"part{i} " for i in range(n)]
            pieces = given_pieces(d) or pieces
            n = len(pieces)
            text = "".join(pieces)
            usage = {"prompt_tokens": prompt_tokens(body), "completion_tokens": n}
            usage["total_tokens"] = usage["prompt_tokens"] + n
            if isinstance(d.get("usage"), dict):
                usage = d["usage"]
            tools = body.get("tools") or []
            if d.get("tool") and tools:
                # A call of the first offered function tool, with arguments {"city": "Paris"}.
                name = tools[0].get("function", {}).get("name", "")
                arguments = json.dumps({"city": "Paris"})
                usage = {"prompt_tokens": prompt_tokens(body), "completion_tokens": 7}
                usage["total_tokens"] = usage["prompt_tokens"] + 7
                if not body.get("stream"):
                    return self.send_json(200, {
                        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": body.get("model"),
                        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                            "role": "assistant", "content": None, "tool_calls": [{
                                "id": "call_mock1", "type": "function",
                                "function": {"name": name, "arguments": arguments}}]}}],
                        "usage": usage})
                self.start_stream()
                base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1,
                        "model": body.get("model")}
                head = {"index": 0, "id": "call_mock1", "type": "function", "function": {"name": name, "arguments": ""}}
                chunks = [{"role": "assistant", "content": None, "tool_calls": [head]},
                          {"tool_calls": [{"index": 0, "function": {"arguments": arguments[:8]}}]},
                          {"tool_calls": [{"index": 0, "function": {"arguments": arguments[8:]}}]}]
                for delta in chunks:
                    self.wfile.write(b"data: " + json.dumps({**base, "choices": [
                        {"index": 0, "delta": delta, "finish_reason": None}]}).encode() + b"\n\n")
                self.wfile.write(b"data: " + json.dumps({**base, "choices": [
                    {"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}).encode() + b"\n\n")
                if (body.get("stream_options") or {}).get("include_usage"):
                    self.wfile.write(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n")
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                return
            if not body.get("stream"):
                if d.get("broken_json"):
                    data = b'{"id": "x", "choices": [ {'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                more = extra(d)
                value = {
                    "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text, **more.get("message", {})},
                                 "finish_reason": finish, **more.get("choice", {})}],
                }
                if not d.get("no_usage"):
                    value["usage"] = usage
                return self.send_json(200, value)
            self.start_stream()

            def event(value):
                self.wfile.write(b"data: " + json.dumps(value).encode() + b"\n\n")
                self.wfile.flush()

            base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": body.get("model")}
            try:
                event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                            "finish_reason": None}]})
                for i, piece in enumerate(pieces):
                    if d.get("chunk_delay_ms"):
                        time.sleep(d["chunk_delay_ms"] / 1000)
                    if d.get("cut") and i == n // 2:
                        return
                    event({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None,
                                                **extra(d).get("chunk_choice", {})}]})
                for delta in extra(d).get("deltas", []):
                    event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None,
                                                **extra(d).get("chunk_choice", {})}]})
                event({**base, "choices": [{"index": 0, "delta": extra(d).get("finish_delta", {}),
                                            "finish_reason": finish}]})
                include = (body.get("stream_options") or {}).get("include_usage")
                if include and not d.get("no_usage"):
                    event({**base, "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


class Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops connections when the pool opens many at once (SYN retries
    # then look like upstream timeouts).
    request_queue_size = 1024


class MockUpstream:
    def __init__(self, host="127.0.0.1", port=0):
        self.recorder = Recorder()
        self.server = Server((host, port), make_handler(self.recorder))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    upstream = MockUpstream(port=port)
    print(upstream.port, flush=True)
    upstream.server.serve_forever()
