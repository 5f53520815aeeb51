"""Every fenced code block of README.md and docs/*.md, and every file in docs/examples/, is checked against
the real binary, so the documentation cannot go stale (issue #35). One test per block, named by its file
and the line of its opening fence (`README.md:76`); a block's class comes from its language tag:

- ```yaml (and docs/examples/*.yaml): a configuration. Imported with `tenantgate config import` into a
  fresh copy of the home `scripts/run` sets up (master key, migrated, scripts/demo.yaml imported: the
  instance every reader has), so a fragment may use the demo catalog (`demo-small`) but must otherwise be
  self-contained. It is then imported, in document order, into its file's session (below) too. A block
  whose first line is a comment naming a file (`# openai.yaml`) is also that file for the commands after it.
- ```sh / ```bash / ```console: commands. Each line (continuations joined; in a block with `$ ` prompts
  only the prompted lines, the others being their output) is parsed like a shell would, and:
  `tenantgate …` (also `var/bin/tenantgate`): every subcommand must exist and every option must be one its
  `--help` lists, with positional arguments and required options as its usage says; synopsis notation is
  understood (`[--json]` is optional, `…`, `PATH`, `a|b` are placeholders). Lines without placeholders are
  run for real, in document order, in the file's session (a scratch directory whose `var/` is set up as
  `scripts/run` does it, without starting anything) and must exit 0 — except the long-running or heavy
  commands (`serve`, `worker`, benches, `db copy`) and commands on PostgreSQL, which are only parsed.
  `scripts/X …`: the script must exist and be executable, and its source must mention every option used;
  only `scripts/join-logs` (read-only) is run. `curl …`: the path must be a route of docs/api.md's
  endpoint table and is requested for real from the worker as a CGI request (the way Apache's CGI front
  end runs it), routed as nginx routes it: a known route (never `404 not_found`), and a success unless
  something is left for the reader (a placeholder in the URL or a header, a file of the reader's to
  upload). `tg_…` stands for "a key of this tenant": the session makes one. A table printed in a `$ ` transcript
  must have the header the command really prints. `NAME=value`, `export` and `$(… | tail -n 1)` are
  followed; anything else is a failure, so a new kind of command cannot slip past.
- ```python: compiled.
- no tag, ```text, ```json: diagrams and output samples, skipped (and so counted in pytest's summary);
  such a block may not contain a command line.

Any other tag, or any other file type in docs/examples/, fails."""

import os
import re
import shlex
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import BIN, ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted(p for p in (ROOT / "docs" / "examples").iterdir() if p.is_file())

KINDS = {"yaml": "config", "yml": "config", "sh": "shell", "bash": "shell", "console": "shell",
         "python": "python", "": "skip", "text": "skip", "json": "skip"}

# Subcommands that are parsed but never run here: they serve until stopped, take minutes, or need a
# PostgreSQL server or a password on standard input.
NOT_RUN = {("serve",): "serves until stopped", ("worker",): "serves until stopped",
           ("db", "copy"): "needs PostgreSQL", ("admin", "password"): "reads a password from stdin",
           ("policy", "bench"): "a benchmark", ("cache", "bench"): "a benchmark", ("docs", "bench"): "a benchmark"}
# scripts/ that may be run: read-only and quick. The others (run, test, bench, soak, fuzz, install-user)
# build, start servers or install packages.
RUN_SCRIPTS = {"join-logs"}


# ---------------------------------------------------------------------------------------------- blocks

@dataclass
class Block:
    path: Path        # the document
    line: int         # 1-based line of the opening fence (1 for a whole example file)
    lang: str
    text: str
    index: int = 0    # position among its document's blocks

    @property
    def id(self):
        rel = self.path.relative_to(ROOT)
        return str(rel) if self.path.parent.name == "examples" else f"{rel}:{self.line}"

    @property
    def kind(self):
        return KINDS.get(self.lang)


FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")


def extract(path):
    """The fenced code blocks of a Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        end = i + 1
        while end < len(lines) and not re.fullmatch(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", lines[end]):
            end += 1
        assert end < len(lines), f"{path.relative_to(ROOT)}:{i + 1}: code block never closed"
        body = [line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:end]]
        blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n", len(blocks)))
        i = end + 1
    return blocks


def all_blocks():
    blocks = [b for doc in DOCS for b in extract(doc)]
    for p in EXAMPLES:
        ext = p.suffix.lstrip(".").lower()
        blocks.append(Block(p, 1, ext, p.read_text(encoding="utf-8")))
    return blocks


BLOCKS = all_blocks()


# ----------------------------------------------------------------------------------------- the binary

@dataclass
class Help:
    subcommands: list
    options: dict = field(default_factory=dict)      # every spelling → takes a value
    spellings: dict = field(default_factory=dict)    # every spelling → all spellings of that option
    required_options: list = field(default_factory=list)
    positionals: tuple = (0, 0, False)               # required, optional, variadic


_helps = {}


def cli_help(path):
    """What `tenantgate PATH --help` says: subcommands, or the options and positional arguments."""
    if path in _helps:
        return _helps[path]
    out = subprocess.run([BIN, *path, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, f"tenantgate {' '.join(path)} --help: {out.stderr}"
    text = out.stdout
    sections, current = {}, None
    for line in text.splitlines():
        header = re.fullmatch(r"([A-Z]+):(.*)", line)
        if header:
            current = header.group(1)
            sections[current] = [header.group(2)] if header.group(2).strip() else []
        elif current:
            sections[current].append(line)
    subcommands = [m.group(1) for line in sections.get("SUBCOMMANDS", [])
                   if (m := re.match(r"  ([a-z][a-z0-9-]*)(\s|$)", line))]
    h = Help(subcommands)
    for line in sections.get("OPTIONS", []):
        m = re.match(r"  (-[-\w]+(?:, -[-\w]+)*)( <[\w-]+>)?", line)
        if m:
            names = m.group(1).split(", ")
            for name in names:
                # `--version <version>` (prompt rollback) beside the global `--version`: a value wins.
                h.options[name] = h.options.get(name, False) or bool(m.group(2))
                h.spellings.setdefault(name, set()).update(names)
    usage = " ".join(line.strip() for line in sections.get("USAGE", []))
    usage = usage.split(" ".join(["tenantgate", *path]), 1)[-1]
    required = optional = 0
    variadic = False
    for m in re.finditer(r"\[([^\]]*)\]|(--[\w-]+)(?: <[\w-]+>)?|<[\w-]+>( \.\.\.)?", usage):
        if m.group(1) is not None:
            if m.group(1).startswith("<"):
                optional += 1
                variadic = variadic or "..." in m.group(1)
        elif m.group(2):
            h.required_options.append(m.group(2))
        else:
            required += 1
            variadic = variadic or bool(m.group(3))
    h.positionals = (required, optional, variadic)
    _helps[path] = h
    return h


def check_cli_args(args, where):
    """Resolves `args` (after `tenantgate`) against the binary's help: returns the subcommand path.
    Fails on an unknown subcommand or option, a missing value or required option, or too many or too
    few positional arguments. `…` as an argument of its own stands for more arguments."""
    path, i = (), 0
    while True:
        h = cli_help(path)
        if not h.subcommands:
            break
        assert i < len(args), f"{where}: `tenantgate {' '.join(path)}` needs a subcommand ({', '.join(h.subcommands)})"
        assert args[i] in h.subcommands, (
            f"{where}: `tenantgate {' '.join(path)}` has no subcommand {args[i]!r} (it has: {', '.join(h.subcommands)})")
        path += (args[i],)
        i += 1
    positional, seen, open_ended = 0, set(), False
    rest = args[i:]
    j = 0
    while j < len(rest):
        token = rest[j]
        if token in ("…", "..."):
            open_ended = True
        elif token.startswith("-") and token != "-" and not re.fullmatch(r"-\d+(\.\d+)?", token):
            name, _, inline = token.partition("=")
            assert name in h.options, (
                f"{where}: `tenantgate {' '.join(path)}` has no option {name} (it has: {', '.join(sorted(h.options))})")
            seen.add(name)
            if h.options[name] and not inline:
                assert j + 1 < len(rest), f"{where}: {name} needs a value"
                j += 1
        else:
            positional += 1
        j += 1
    required, optional, variadic = h.positionals
    if not open_ended:
        for name in h.required_options:
            assert seen & h.spellings.get(name, {name}), f"{where}: `tenantgate {' '.join(path)}` needs {name}"
        assert positional >= required, (
            f"{where}: `tenantgate {' '.join(path)}` takes {required} positional argument(s), got {positional}")
        assert variadic or positional <= required + optional, (
            f"{where}: `tenantgate {' '.join(path)}` takes at most {required + optional} positional argument(s), "
            f"got {positional}: {' '.join(rest)}")
    return path


# ------------------------------------------------------------------------------------------- routes

def documented_routes():
    """The paths of docs/api.md's endpoint table as patterns: `<id>`, `{id}` are one segment, `…` is
    anything."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    table = text.split("## Endpoints", 1)[1].split("\n\n", 2)[1]
    patterns = []
    for row in table.splitlines():
        if not row.startswith("| ") or row.startswith("|---"):
            continue
        for path in re.findall(r"`([/…][^`]*)`", row.split(" | ")[0]):
            regex = re.escape(path)
            regex = re.sub(r"\\?<[\w-]+\\?>|\\{[\w-]+\\}", "[^/]+", regex).replace("…", ".*")
            patterns.append(re.compile(regex))
    assert len(patterns) >= 10, f"docs/api.md's endpoint table not found: {patterns}"
    return patterns


ROUTES = documented_routes()


def nginx_route(path):
    """What conf.d/tenantgate.conf passes to the pool for this path: (TG_ROUTE, TG_TENANT, TG_PATH)."""
    m = re.fullmatch(r"/tenant/([^/]*)(/.*)?", path)
    if m:
        return "api", m.group(1), m.group(2) or ""
    if path.startswith("/v1/"):
        return "api", "", path
    if path in ("/healthz", "/readyz", "/metrics"):
        return path[1:], None, path
    if path.startswith("/admin/"):
        return "admin", None, path
    return None


# ------------------------------------------------------------------------------------------ sessions

def make_home(home):
    """A home as scripts/run sets it up before it starts anything: a master key, the schema, the demo
    configuration and the demo key. (`var/bin/tenantgate`, the instance's wrapper, is this binary with
    this home: commands through it are run as `tenantgate` with TENANTGATE_HOME set.)"""
    home.mkdir(parents=True)
    (home / "master.key").write_text(os.urandom(32).hex() + "\n")
    (home / "master.key").chmod(0o600)
    env = cli_env(home, quiet=True)
    for args in (["migrate"], ["config", "import", str(ROOT / "scripts/demo.yaml")]):
        subprocess.run([BIN, *args], env=env, check=True, capture_output=True)
    made = subprocess.run([BIN, "key", "create", "demo", "--name", "demo"], env=env, check=True,
                          capture_output=True, text=True)
    (home / "demo.key").write_text(made.stdout.strip().splitlines()[-1] + "\n")


def cli_env(home, quiet=False, extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTGATE_")}
    env["TENANTGATE_HOME"] = str(home)
    if quiet:
        env["TENANTGATE_CLI_QUIET"] = "1"
    env.update(extra or {})
    return env


def copy_home(template, target):
    shutil.copytree(template, target, symlinks=True)


def run_cli(args, home, where, env_extra=None, cwd=None):
    out = subprocess.run([BIN, *args], env=cli_env(home, extra=env_extra), capture_output=True, text=True,
                         cwd=cwd, timeout=60)
    assert out.returncode == 0, (
        f"{where}: `tenantgate {shlex.join(args)}` exited {out.returncode}:\n{out.stderr}{out.stdout}")
    return out


PLACEHOLDER = "…"


def is_placeholder(token):
    return "…" in token or "..." in token


def is_synopsis_placeholder(token):
    """Synopsis placeholders in a tenantgate command: `PATH`, `N`, `unix:PATH|HOST:PORT`, `key_0123…`."""
    return (is_placeholder(token) or re.search(r"\w\|\w", token) is not None
            or re.search(r"(?<![A-Za-z0-9])[A-Z][A-Z0-9_]*(?![A-Za-z0-9])", token) is not None)


@dataclass
class Command:
    line: int
    text: str
    output: list


def shell_commands(block):
    """The commands of a shell block with their doc line; in a transcript, each with its output lines."""
    lines = block.text.splitlines()
    transcript = any(line.startswith("$ ") for line in lines)
    commands, i = [], 0
    while i < len(lines):
        raw, line = lines[i], block.line + 1 + i
        if transcript:
            if not raw.startswith("$ "):
                assert commands, f"{block.id}: output before the first `$ ` command"
                commands[-1].output.append(raw)
                i += 1
                continue
            raw = raw[2:]
        while raw.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            raw = raw.rstrip()[:-1] + " " + lines[i].strip()
        commands.append(Command(line, raw, []))
        i += 1
    return commands


def scan_line(text):
    """Removes a comment (`#` at the start of a word, outside quotes) and synopsis brackets (`[` at the
    start or `]` at the end of a word, outside quotes). Returns the text and whether brackets were seen."""
    out, quote, synopsis = [], None, False
    for k, ch in enumerate(text):
        prev = text[k - 1] if k else " "
        nxt = text[k + 1] if k + 1 < len(text) else " "
        if quote:
            if ch == quote:
                quote = None
            out.append(ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "#" and prev.isspace():
            break
        elif ch == "[" and (prev.isspace() or prev == "["):
            synopsis = True
        elif ch == "]" and (nxt.isspace() or nxt == "]") and synopsis:
            pass
        else:
            out.append(ch)
    return "".join(out).strip(), synopsis


def substitutions(text):
    """Replaces each `$(…)` with a marker; returns the text and the inner commands."""
    inner, out, k = [], [], 0
    while k < len(text):
        if text.startswith("$(", k):
            depth, j = 1, k + 2
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            assert depth == 0, f"unbalanced $( in {text!r}"
            out.append(f"@@SUB{len(inner)}@@")
            inner.append(text[k + 2:j - 1])
            k = j
        else:
            out.append(text[k])
            k += 1
    return "".join(out), inner


class Session:
    """One document's scratch directory, worked through in document order: `var/` is the home, `docs` its
    checkout's docs, and files named by configuration blocks are written there."""

    def __init__(self, root, template):
        self.dir = root
        self.dir.mkdir(parents=True)
        self.home = self.dir / "var"
        copy_home(template, self.home)
        (self.dir / "docs").symlink_to(ROOT / "docs")
        self.done = -1
        self.keys = {}         # tenant → a key made for the doc's `tg_…`

    # One block: configuration, or commands.
    def apply(self, block):
        self.done = max(self.done, block.index)
        if block.kind == "config":
            name = re.match(r"#\s*([\w.-]+\.ya?ml)\b", block.text)
            target = self.dir / (name.group(1) if name else f"block-{block.line}.yaml")
            target.write_text(block.text)
            run_cli(["config", "import", str(target)], self.home, block.id, cwd=self.dir)
        elif block.kind == "shell":
            vars_ = {}
            for command in shell_commands(block):
                self.command(command, vars_, f"{block.path.relative_to(ROOT)}:{command.line}")

    def command(self, command, vars_, where):
        text, synopsis = scan_line(command.text)
        if not text:
            return
        text, inner = substitutions(text)
        try:
            tokens = shlex.split(text)
        except ValueError as e:
            pytest.fail(f"{where}: not a shell command line ({e}): {command.text}")
        values = [self.pipeline(cmd, vars_, where) for cmd in inner]

        def expand(token):
            token = re.sub(r"@@SUB(\d+)@@", lambda m: values[int(m.group(1))], token)

            def var(m):
                name = m.group(1) or m.group(2)
                return vars_.get(name, PLACEHOLDER)
            return re.sub(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", var, token)
        tokens = [expand(t) for t in tokens]
        if tokens and tokens[0] == "export":
            tokens = tokens[1:]
            assert tokens and all(re.match(r"[A-Za-z_]\w*=", t) for t in tokens), f"{where}: export what? {command.text}"
        env = {}
        while tokens and re.match(r"[A-Za-z_]\w*=", tokens[0]):
            name, _, value = tokens.pop(0).partition("=")
            env[name] = value
        if not tokens:
            vars_.update(env)
            return
        self.run(tokens, {**vars_, **env}, env, where, synopsis, command.output)

    def pipeline(self, text, vars_, where):
        """The output of a `$(…)`: its first command, then `tail -n N` / `head -n N` stages."""
        stages = [shlex.split(part) for part in text.split("|")]
        out = self.run(stages[0], vars_, {}, where, False, [], capture=True)
        if out is None:
            return PLACEHOLDER
        for stage in stages[1:]:
            assert len(stage) == 3 and stage[0] in ("tail", "head") and stage[1] == "-n", (
                f"{where}: only `| tail -n N` and `| head -n N` are followed here, not `| {' '.join(stage)}`")
            lines = out.splitlines()
            n = int(stage[2])
            out = "\n".join(lines[-n:] if stage[0] == "tail" else lines[:n])
        return out.strip()

    def run(self, tokens, vars_, env, where, synopsis, output, capture=False):
        """Checks (and where possible runs) one command; returns its standard output if it ran."""
        program, args = tokens[0], tokens[1:]
        if program == "tenantgate" or program.endswith("/tenantgate"):
            return self.tenantgate(args, vars_, env, where, output)
        if program.startswith("scripts/"):
            return self.script(program, args, env, where, output)
        if program == "curl":
            assert not synopsis, f"{where}: synopsis brackets in a curl line"
            return self.curl(args, where)
        if program == "cat" and capture:
            assert len(args) == 1, f"{where}: cat of one file only"
            path = self.dir / args[0]
            return path.read_text() if path.exists() else None
        pytest.fail(f"{where}: test_docs.py does not know how to check `{program}` (extend it): {shlex.join(tokens)}")

    def tenantgate(self, args, vars_, env, where, output):
        path = check_cli_args(args, where)
        if path in NOT_RUN or any(is_synopsis_placeholder(a) for a in args) \
                or "TENANTGATE_DATABASE_URL" in vars_ or any(is_placeholder(v) for v in env.values()):
            return None
        out = run_cli(args, self.home, where, env_extra=env, cwd=self.dir)
        print("ran " + f"{where}: tenantgate {shlex.join(args)}")
        check_output_header(out.stdout, output, where)
        return out.stdout

    def script(self, program, args, env, where, output):
        script = ROOT / program
        assert script.is_file() and script.stat().st_mode & stat.S_IXUSR, f"{where}: no executable {program}"
        source = script.read_text(encoding="utf-8")
        for arg in args:
            if arg.startswith("--"):
                name = arg.split("=", 1)[0]
                assert re.search(rf"['\"]{re.escape(name)}['\"\s=]", source), f"{where}: {program} knows no option {name}"
        if script.name not in RUN_SCRIPTS or any(is_placeholder(a) for a in args):
            return None
        out = subprocess.run([str(script), *args], env=cli_env(self.home, extra=env), cwd=self.dir,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{where}: `{program} {shlex.join(args)}` exited {out.returncode}:\n{out.stderr}"
        print("ran " + f"{where}: {program} {shlex.join(args)}")
        check_output_header(out.stdout, output, where)
        return out.stdout

    def key_of(self, tenant, where):
        if tenant not in self.keys:
            out = run_cli(["key", "create", tenant, "--name", "docs-test"], self.home, where, cwd=self.dir)
            self.keys[tenant] = out.stdout.strip().splitlines()[-1]
        return self.keys[tenant]

    def curl(self, args, where):
        method, headers, body, form, url = None, [], None, [], None
        valued = {"-H": "header", "--header": "header", "-d": "data", "--data": "data", "--data-raw": "data",
                  "-F": "form", "--form": "form", "-X": "method", "--request": "method"}
        plain = {"-k", "--insecure", "-i", "--include", "-s", "--silent", "-S", "--show-error", "-v"}
        j = 0
        while j < len(args):
            a = args[j]
            if a in valued or (re.fullmatch(r"-[a-zA-Z]+", a) and a[-1] in "HdFX" and a[:-1] != "-"):
                flags = [f"-{c}" for c in a[1:-1]] if not a.startswith("--") and len(a) > 2 else []
                for f in flags:
                    assert f in plain, f"{where}: curl option {f} is not followed here"
                assert j + 1 < len(args), f"{where}: {a} needs a value"
                what, value = valued[a if a in valued else "-" + a[-1]], args[j + 1]
                if what == "header":
                    headers.append(value)
                elif what == "data":
                    body = value
                elif what == "form":
                    form.append(value)
                else:
                    method = value
                j += 2
                continue
            if a.startswith("-"):
                flags = [a] if a.startswith("--") else [f"-{c}" for c in a[1:]]
                for f in flags:
                    assert f in plain, f"{where}: curl option {f} is not followed here"
            else:
                assert url is None, f"{where}: two URLs"
                url = a
            j += 1
        assert url, f"{where}: curl without a URL"
        parts = urlsplit(url)
        assert any(r.fullmatch(parts.path) for r in ROUTES), (
            f"{where}: {parts.path} is not a route of docs/api.md's endpoint table")
        routed = nginx_route(parts.path)
        assert routed, f"{where}: nginx passes no such path to the pool: {parts.path}"
        route, tenant, tg_path = routed
        # `tg_…` is "a key of this tenant": the reader has one, so the session makes one.
        headers = [re.sub(r"tg_…", lambda _: self.key_of(tenant, where), h) if tenant else h for h in headers]
        # What is left for the reader to fill in, or a file of the reader's: only the route is checked.
        placeholder = any(is_placeholder(x) for x in [url, *headers]) or any(
            v.partition("=")[2].startswith("@") and not (self.dir / v.partition("=")[2][1:]).exists() for v in form)
        data = b""
        content_type = None
        if form:
            boundary = "tenantgate-docs-test"
            chunks = []
            for item in form:
                name, _, value = item.partition("=")
                if value.startswith("@"):
                    f = self.dir / value[1:]
                    content = f.read_bytes() if f.exists() else b""
                    chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                                  f'filename="{Path(value[1:]).name}"\r\n\r\n'.encode() + content + b"\r\n")
                else:
                    chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                                  f'{value}\r\n'.encode())
            data = b"".join(chunks) + f"--{boundary}--\r\n".encode()
            content_type = f"multipart/form-data; boundary={boundary}"
        elif body is not None:
            data = body.encode()
            content_type = "application/x-www-form-urlencoded"   # curl's own default for -d
        method = method or ("POST" if data or form else "GET")
        env = cli_env(self.home, extra={
            "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": method, "QUERY_STRING": parts.query,
            "REQUEST_URI": parts.path + ("?" + parts.query if parts.query else ""), "DOCUMENT_URI": parts.path,
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTPS": "on", "REQUEST_ID": os.urandom(16).hex(),
            "TG_ROUTE": route, "TG_PATH": tg_path, "CONTENT_LENGTH": str(len(data))})
        if tenant is not None:
            env["TG_TENANT"] = tenant
        for h in headers:
            name, _, value = h.partition(":")
            if name.strip().lower() == "content-type":
                content_type = value.strip()
            else:
                env["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
        if content_type:
            env["CONTENT_TYPE"] = content_type
        out = subprocess.run([BIN, "worker"], input=data, env=env, capture_output=True, cwd=self.dir, timeout=60)
        head, _, answer = out.stdout.partition(b"\r\n\r\n") if b"\r\n\r\n" in out.stdout else out.stdout.partition(b"\n\n")
        m = re.search(rb"^Status: (\d+)", head, re.M)
        status = int(m.group(1)) if m else 200
        shown = f"{where}: {method} {parts.path} answered {status}: {answer[:300].decode(errors='replace')}"
        assert out.returncode == 0 and head, f"{where}: the worker failed as CGI: {out.stderr.decode()[-500:]}"
        assert not (status == 404 and b'"not_found"' in answer), shown
        if not placeholder:
            degraded = parts.path == "/readyz" and status == 503 and b"degraded" in answer   # documented
            assert status < 400 or degraded, shown
        print("ran " + f"{where}: curl {method} {parts.path} → {status}")
        return answer.decode(errors="replace")


def check_output_header(stdout, output, where):
    """A table in a transcript: its header line must be the one the command prints."""
    shown = [line for line in output if line.strip()]
    if not shown or not re.fullmatch(r"[a-z_]+(\s+[a-z_]+){2,}", shown[0].strip()):
        return
    real = stdout.splitlines()[0].split() if stdout.strip() else []
    assert shown[0].split() == real, f"{where}: the documented output's header is stale:\n  doc:  {shown[0]}\n  real: {' '.join(real)}"


# --------------------------------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    template = root / "template"
    make_home(template)
    return {"root": root, "template": template, "sessions": {}, "count": 0}


def session_for(scratch, block):
    """The block's document's session, with every earlier block of the document applied (in order)."""
    sessions = scratch["sessions"]
    if block.path not in sessions:
        sessions[block.path] = Session(scratch["root"] / ("session-" + block.path.stem), scratch["template"])
    s = sessions[block.path]
    for earlier in extract(block.path)[:block.index]:
        if earlier.index > s.done and earlier.kind in ("config", "shell"):
            s.apply(earlier)
    return s


def validate_config(scratch, block):
    """Imported alone into a fresh copy of scripts/run's home: self-contained but for the demo catalog."""
    scratch["count"] += 1
    home = scratch["root"] / f"alone-{scratch['count']}"
    copy_home(scratch["template"], home)
    f = home / "block.yaml"
    f.write_text(block.text)
    out = run_cli(["config", "import", str(f)], home, f"{block.id} (alone)")
    assert "configuration imported" in out.stdout, out.stdout


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_block(block, scratch):
    if block.kind is None:
        what = "a code block tagged" if block.path.suffix == ".md" else "a file of type"
        pytest.fail(f"{block.id}: {what} {block.lang!r}, which test_docs.py does not check: use one of "
                    f"{', '.join(repr(k) for k in sorted(KINDS) if k)} (or no tag), or teach test_docs.py")
    if block.kind == "skip":
        for k, line in enumerate(block.text.splitlines()):
            assert not re.match(r"(\$ |(\S*/)?tenantgate [a-z]|curl |scripts/[a-z])", line), (
                f"{block.path.relative_to(ROOT)}:{block.line + 1 + k}: a command in an untagged block: tag it sh")
        pytest.skip(f"{block.lang or 'untagged'} block: a diagram or an output sample")
    if block.kind == "python":
        compile(block.text, block.id, "exec")
        return
    # The document's session first (earlier blocks applied), and this block counted as applied whatever
    # happens, so a failure is reported once, by its own block.
    session = session_for(scratch, block) if block.path.suffix == ".md" else None
    if session:
        session.done = block.index
    if block.kind == "config":
        validate_config(scratch, block)
        if session:
            session.apply(block)
        return
    assert shell_commands(block), f"{block.id}: a shell block without a command"
    session.apply(block)


def test_blocks_were_found():
    kinds = {}
    for b in BLOCKS:
        kinds.setdefault(b.kind, []).append(b.id)
    assert any(b.path.name == "README.md" for b in BLOCKS)
    assert {"config", "shell", "python", "skip"} <= set(kinds), kinds
