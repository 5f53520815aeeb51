"""An OpenAI-compatible upstream that misbehaves on demand, at the byte level.

A request names its behaviour with `#fault NAME` in its last message; `BEHAVIOURS` lists them. The server
speaks raw HTTP/1.1 on a socket so that it can do what a well-behaved HTTP library never would: reset
connections, cut bodies and streams, stall, send garbage, lie about lengths.
"""

import gzip
import json
import re
import socket
import socketserver
import struct
import threading
import time

USAGE = {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}


def completion(text="fault-free answer"):
    return {"id": "chatcmpl-fault", "object": "chat.completion", "created": 1, "model": "fault-up",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": USAGE}


def chunk(delta, finish=None, usage=None):
    value = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 1, "model": "fault-up",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        value["choices"] = []
        value["usage"] = usage
    return b"data: " + json.dumps(value).encode() + b"\n\n"


def sse_events(pieces=("one ", "two ", "three ", "four")):
    """A whole, well-formed stream: role, pieces, stop, usage, [DONE] (each an SSE event)."""
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": p}) for p in pieces]
    out.append(chunk({}, finish="stop"))
    out.append(chunk(None, usage=USAGE))
    out.append(b"data: [DONE]\n\n")
    return out


def head(status, reason="OK", headers=(), length=None):
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def whole(status, body, content_type="application/json", reason="OK", extra=()):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return head(status, reason, [("Content-Type", content_type), *extra], len(data)) + data


def error_json(message="scripted failure", kind="server_error"):
    return {"error": {"message": message, "type": kind}}


SSE_HEAD = head(200, headers=[("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])


class Conn:
    def __init__(self, sock):
        self.sock = sock

    def send(self, data):
        self.sock.sendall(data)

    def reset(self):
        """Close with RST (SO_LINGER 0) instead of FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def answer(conn, stream):
    """The well-formed answer for the request's mode."""
    if stream:
        conn.send(SSE_HEAD + b"".join(sse_events()))
    else:
        conn.send(whole(200, completion()))


# Each behaviour: fn(conn, stream). Those that only make sense for one mode still act in the other (an SSE
# answer to a plain request is itself a wrong content type).
def b_close_before_reading(conn, stream):
    conn.sock.close()


def b_reset_before_headers(conn, stream):
    conn.reset()


def b_partial_headers(conn, stream):
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Ty")
    conn.sock.close()


def b_garbage_status_line(conn, stream):
    conn.send(b"HELLO THERE\r\n\r\nnot http at all")
    conn.sock.close()


def status_behaviour(status, body, content_type="application/json", extra=()):
    def act(conn, stream):
        conn.send(whole(status, body, content_type, reason="Whatever", extra=extra))
    return act


def b_truncated_body(conn, stream):
    data = json.dumps(completion()).encode()
    conn.send(head(200, headers=[("Content-Type", "application/json")], length=len(data) + 500) + data[:40])
    conn.sock.close()


def b_reset_mid_body(conn, stream):
    data = json.dumps(completion()).encode()
    conn.send(head(200, headers=[("Content-Type", "application/json")], length=len(data)) + data[:40])
    time.sleep(0.05)
    conn.reset()


def b_gzip(conn, stream):
    if stream:
        data = gzip.compress(b"".join(sse_events()))
        conn.send(head(200, headers=[("Content-Type", "text/event-stream"), ("Content-Encoding", "gzip")],
                       length=len(data)) + data)
    else:
        conn.send(whole(200, gzip.compress(json.dumps(completion()).encode()),
                        extra=[("Content-Encoding", "gzip")]))


def b_chunked(conn, stream):
    body = b"".join(sse_events()) if stream else json.dumps(completion()).encode()
    kind = "text/event-stream" if stream else "application/json"
    out = head(200, headers=[("Content-Type", kind), ("Transfer-Encoding", "chunked")])
    for i in range(0, len(body), 7):
        piece = body[i:i + 7]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    conn.send(out + b"0\r\n\r\n")


def b_huge_body(conn, stream):
    # 40 MiB of one JSON string: more than any answer the gateway keeps in memory.
    filler = b"x" * (40 << 20)
    prefix = b'{"id":"chatcmpl-fault","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"'
    suffix = b'"},"finish_reason":"stop"}],"usage":' + json.dumps(USAGE).encode() + b"}"
    try:
        conn.send(head(200, headers=[("Content-Type", "application/json")],
                       length=len(prefix) + len(filler) + len(suffix)) + prefix)
        for i in range(0, len(filler), 1 << 20):
            conn.send(filler[i:i + (1 << 20)])
        conn.send(suffix)
    except OSError:
        pass


def b_slow_headers(conn, stream):
    time.sleep(2.5)
    try:
        answer(conn, stream)
    except OSError:
        pass


def b_slow_body(conn, stream):
    data = json.dumps(completion()).encode()
    try:
        conn.send(head(200, headers=[("Content-Type", "application/json")], length=len(data)) + data[:10])
        for b in data[10:]:
            time.sleep(0.2)
            conn.send(bytes([b]))
    except OSError:
        pass


def b_100_continue(conn, stream):
    conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    answer(conn, stream)


def b_redirect(conn, stream):
    conn.send(whole(302, b"", extra=[("Location", "http://127.0.0.1:9/v1/chat/completions")]))


def b_huge_header(conn, stream):
    conn.send(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (300 << 10) + b"\r\n")
    try:
        answer(conn, stream)
    except OSError:
        pass


def b_html_200(conn, stream):
    conn.send(whole(200, b"<html><body>Welcome to the captive portal</body></html>", "text/html"))


def b_empty_200(conn, stream):
    conn.send(whole(200, b""))


def b_json_wrong_shape(conn, stream):
    conn.send(whole(200, {"hello": "world", "choices": "not a list"}))


def b_not_json(conn, stream):
    conn.send(whole(200, b"{this is not json", "application/json"))


def b_json_for_stream(conn, stream):
    # A plain completion where a stream was asked for (and for a plain request: the right answer).
    conn.send(whole(200, completion()))


def b_sse_no_done(conn, stream):
    conn.send(SSE_HEAD + b"".join(sse_events()[:-1]))
    conn.sock.close()


def b_sse_cut_mid_event(conn, stream):
    events = sse_events()
    conn.send(SSE_HEAD + b"".join(events[:2]) + events[2][:20])
    conn.sock.close()


def b_sse_reset_mid(conn, stream):
    conn.send(SSE_HEAD + b"".join(sse_events()[:3]))
    time.sleep(0.05)
    conn.reset()


def b_sse_garbage_between(conn, stream):
    out = []
    for e in sse_events():
        out.append(e)
        out.append(b": a comment line\n\nnonsense-field: 1\n\n")
    conn.send(SSE_HEAD + b"".join(out))


def b_sse_crlf(conn, stream):
    conn.send(SSE_HEAD + b"".join(e.replace(b"\n", b"\r\n") for e in sse_events()))


def b_sse_byte_by_byte(conn, stream):
    conn.send(SSE_HEAD)
    for b in b"".join(sse_events()):
        conn.send(bytes([b]))


def b_sse_event_too_large(conn, stream):
    conn.send(SSE_HEAD + sse_events()[0])
    try:
        conn.send(b'data: {"choices":[{"index":0,"delta":{"content":"' + b"y" * (6 << 20) + b'"}}]}\n\n')
        conn.send(b"".join(sse_events()[1:]))
    except OSError:
        pass


def b_sse_stall(conn, stream):
    conn.send(SSE_HEAD + b"".join(sse_events()[:2]))
    time.sleep(3)


def b_sse_invalid_json(conn, stream):
    events = sse_events()
    conn.send(SSE_HEAD + events[0] + b"data: {not json at all\n\n" + b"".join(events[1:]))


def b_sse_error_event(conn, stream):
    conn.send(SSE_HEAD + b"".join(sse_events()[:2])
              + b"data: " + json.dumps(error_json("the model fell over")).encode() + b"\n\n")
    conn.sock.close()


def b_sse_wrong_type(conn, stream):
    # Events under a JSON content type.
    data = b"".join(sse_events())
    conn.send(head(200, headers=[("Content-Type", "application/json")], length=len(data)) + data)


BEHAVIOURS = {
    "close_before_reading": b_close_before_reading,
    "reset_before_headers": b_reset_before_headers,
    "partial_headers": b_partial_headers,
    "garbage_status_line": b_garbage_status_line,
    "status_500_json": status_behaviour(500, error_json()),
    "status_500_html": status_behaviour(500, b"<html><h1>Internal Server Error</h1></html>", "text/html"),
    "status_502_empty": status_behaviour(502, b""),
    "status_503_retry_after": status_behaviour(503, error_json(), extra=[("Retry-After", "1")]),
    "status_429_retry_after": status_behaviour(429, error_json("slow down", "rate_limit_error"),
                                               extra=[("Retry-After", "7")]),
    "status_429_bare": status_behaviour(429, b"Too Many Requests", "text/plain"),
    "status_529_overloaded": status_behaviour(529, error_json("overloaded", "overloaded_error")),
    "status_401": status_behaviour(401, error_json("bad upstream key", "authentication_error")),
    "status_400_json": status_behaviour(400, error_json("max_tokens is too large", "invalid_request_error")),
    "status_404_html": status_behaviour(404, b"<html>no such route</html>", "text/html"),
    "status_422_json": status_behaviour(422, {"detail": [{"msg": "field required"}]}),
    "truncated_body": b_truncated_body,
    "reset_mid_body": b_reset_mid_body,
    "gzip": b_gzip,
    "chunked": b_chunked,
    "huge_body": b_huge_body,
    "slow_headers": b_slow_headers,
    "slow_body": b_slow_body,
    "continue_100": b_100_continue,
    "redirect": b_redirect,
    "huge_header": b_huge_header,
    "html_200": b_html_200,
    "empty_200": b_empty_200,
    "json_wrong_shape": b_json_wrong_shape,
    "not_json": b_not_json,
    "json_for_stream": b_json_for_stream,
    "sse_no_done": b_sse_no_done,
    "sse_cut_mid_event": b_sse_cut_mid_event,
    "sse_reset_mid": b_sse_reset_mid,
    "sse_garbage_between": b_sse_garbage_between,
    "sse_crlf": b_sse_crlf,
    "sse_byte_by_byte": b_sse_byte_by_byte,
    "sse_event_too_large": b_sse_event_too_large,
    "sse_stall": b_sse_stall,
    "sse_invalid_json": b_sse_invalid_json,
    "sse_error_event": b_sse_error_event,
    "sse_wrong_type": b_sse_wrong_type,
}

FAULT = re.compile(rb"#fault ([a-z0-9_]+)")


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                piece = sock.recv(65536)
                if not piece:
                    return
                data += piece
            header, _, body = data.partition(b"\r\n\r\n")
            match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", header)
            length = int(match.group(1)) if match else 0
            while len(body) < length:
                piece = sock.recv(65536)
                if not piece:
                    return
                body += piece
        except OSError:
            return
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        stream = bool(request.get("stream"))
        found = FAULT.search(body)
        behaviour = BEHAVIOURS.get(found.group(1).decode() if found else "", None)
        self.server.seen.append(found.group(1).decode() if found else None)
        try:
            (behaviour or answer)(Conn(sock), stream)
        except OSError:
            pass


class FaultUpstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        self.seen = []

    def start(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()
