"""Generated hostile mails (hypothesis strategies) and the probes that watch the daemon while it eats them.

``tests/test_hostile.py`` sends them with a small CI profile; ``bench/fuzz.py``
runs the same tests with the ``long`` profile and larger caps
(``MAILTICKETD_FUZZ_PROFILE=long``).
"""

from __future__ import annotations

import base64
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

LONG = os.environ.get("MAILTICKETD_FUZZ_PROFILE", "ci") == "long"

settings.register_profile(
    "ci", max_examples=60, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.register_profile(
    "long", max_examples=1500, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
PROFILE = "long" if LONG else "ci"


@dataclass(frozen=True)
class Caps:
    """How big the generated monsters may get (the CI profile stays small enough for a short run)."""

    subject_bytes: int  # a folded subject of this many bytes (a 200 KB subject once froze the loop for seconds)
    header_count: int  # extra header fields
    line_bytes: int  # longest single line (past 64 KiB once a permanent 500; now wrapped)
    body_bytes: int  # one part's body
    depth: int  # multipart nesting


CAPS = Caps(subject_bytes=400_000, header_count=20_000, line_bytes=200_000, body_bytes=8_000_000, depth=400) \
    if LONG else Caps(subject_bytes=200_000, header_count=3_000, line_bytes=150_000, body_bytes=600_000, depth=120)

CHARSETS = ["utf-8", "iso-8859-1", "windows-1252", "us-ascii", "koi8-r", "shift_jis", "gb2312", "utf-7",
            "utf-16", "x-unknown", "utf-8\0", "", "\xe4", "iso-2022-jp", "latin-1\r", "cp1252'", "unicode-1-1-utf-7"]
ENCODINGS = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus", "BASE64", ""]
TEXT_TYPES = ["text/plain", "text/html", "text/enriched", "text/x-unknown"]
LEAF_TYPES = TEXT_TYPES + ["application/octet-stream", "image/png", "application/pdf", "message/rfc822",
                           "message/delivery-status", "application/ms-tnef", "/", "text", "a/b/c"]
MULTI_TYPES = ["mixed", "alternative", "related", "digest", "report", "signed", "encrypted", "x-unknown"]

_words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_junk = st.binary(max_size=200)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A part's body: text in some charset, raw bytes, broken base64/QP, NULs, or one very long line."""
    kind = draw(st.sampled_from(["text", "bytes", "bad-base64", "bad-qp", "nul", "long-line", "big", "html"]))
    if kind == "text":
        charset = draw(st.sampled_from(["utf-8", "latin-1", "cp1252", "utf-16", "koi8-r"]))
        return draw(_words).encode(charset, "replace")
    if kind == "bytes":
        return draw(_junk)
    if kind == "bad-base64":
        return draw(st.sampled_from([b"====", b"!!!!abc", b"YWJj\x00ZGVm", b"Y", base64.b64encode(b"ok")[:-1]]))
    if kind == "bad-qp":
        return draw(st.sampled_from([b"=ZZ=\n=", b"abc=\r\n=0", b"=\xff=FF=fF", b"=" * 500]))
    if kind == "nul":
        return b"before\0after\0" * draw(st.integers(1, 50))
    if kind == "long-line":
        return b"x" * draw(st.integers(900, CAPS.line_bytes)) + b"\n"
    if kind == "html":
        depth = draw(st.integers(1, 3000))
        return b"<div>" * depth + draw(_words).encode() + b"<script>alert(1)</script>" + b"</div>" * (depth // 2)
    return (b"0123456789abcdef" * 4 + b"\n") * (draw(st.integers(1, CAPS.body_bytes)) // 65)


@st.composite
def leaves(draw: st.DrawFn) -> bytes:
    """One non-multipart part with hostile headers."""
    content_type = draw(st.sampled_from(LEAF_TYPES))
    charset = draw(st.sampled_from(CHARSETS))
    lines = [f"Content-Type: {content_type}; charset=\"{charset}\"".encode("utf-8", "surrogateescape")]
    if draw(st.booleans()):
        lines.append(b"Content-Transfer-Encoding: " + draw(st.sampled_from(ENCODINGS)).encode())
    if draw(st.booleans()):
        name = draw(st.sampled_from(["a.pdf", "\xfc\xf6.txt", "../../etc/passwd", "x" * 3000, "nul\0.exe",
                                     "=?utf-8?B?w7w=?=.txt", ""]))
        lines.append(b"Content-Disposition: attachment; filename=\"" + name.encode("utf-8") + b"\"")
    return b"\r\n".join(lines) + b"\r\n\r\n" + draw(bodies())


def _multipart(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        subtype = draw(st.sampled_from(MULTI_TYPES))
        boundary = draw(st.sampled_from(["b1", "", "==", "a" * 80, "b1", "\xe4\0", "--", "x y"]))
        parts = draw(st.lists(children, max_size=5))
        head = f"Content-Type: multipart/{subtype}; boundary=\"{boundary}\"".encode("utf-8")
        marker = b"--" + boundary.encode("utf-8")
        close = draw(st.booleans())
        body = b"".join(b"\r\n" + marker + b"\r\n" + part for part in parts)
        return head + b"\r\n\r\npreamble" + body + (b"\r\n" + marker + b"--\r\n" if close else b"")
    return build()


mime_trees = st.recursive(leaves(), _multipart, max_leaves=12)


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    """Multipart inside multipart (or message/rfc822 inside message/rfc822) many levels down."""
    depth = draw(st.integers(10, CAPS.depth))
    kind = draw(st.sampled_from(["multipart", "rfc822"]))
    inner = b"Content-Type: text/plain\r\n\r\ndeep down"
    for level in range(depth):
        if kind == "rfc822":
            inner = b"Content-Type: message/rfc822\r\n\r\nSubject: level %d\r\n" % level + inner
        else:
            boundary = b"n%d" % level
            inner = (b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\n--" + boundary
                     + b"\r\n" + inner + b"\r\n--" + boundary + b"--\r\n")
    return inner


_ENCODED_WORDS = ["=?utf-8?B?w7xiZXI=?=", "=?utf-8?B?####?=", "=?x-unknown?Q?abc?=", "=?utf-8?Q?a=ZZ?=",
                  "=?iso-8859-1?q?Gr=FC=DFe?=", "=??B??=", "=?utf-8\0?B?YQ==?=", "=?utf-8*de?Q?x?="]


@st.composite
def subjects(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["text", "encoded", "8bit", "nul", "folded", "unfolded", "tag"]))
    if kind == "text":
        return draw(_words).encode("utf-8")
    if kind == "encoded":
        return b" ".join(w.encode() for w in draw(st.lists(st.sampled_from(_ENCODED_WORDS), min_size=1, max_size=8)))
    if kind == "8bit":
        return draw(_words).encode(draw(st.sampled_from(["latin-1", "cp1252", "utf-8"])), "replace") + b"\xe4\xff"
    if kind == "nul":
        return b"Hallo\0Welt"
    if kind == "tag":
        return b"Re: [MH#" + str(draw(st.integers(-5, 10**30))).encode() + b"] [MH#10000] AW: " * 3
    size = draw(st.integers(1000, CAPS.subject_bytes))
    if kind == "folded":
        return b"\r\n ".join([b"word " * 15] * (size // 76))
    return b"x" * min(size, CAPS.line_bytes - 20)


@st.composite
def addresses(draw: st.DrawFn) -> bytes:
    return draw(st.sampled_from([
        b"anna@customer.example", b"Anna <anna@customer.example>", b"\"M\xc3\xbcller, Hans\" <hans@customer.example>",
        b"=?utf-8?B?w7w=?= <u@customer.example>", b"<>", b"", b"undisclosed-recipients:;", b"a@b@c",
        b"\"support@example.net\" <mallory@evil.example>", b"support@example.net", b"MAILER-DAEMON@x.example",
        b"x" * 2000 + b"@customer.example", b"nul\0@customer.example", b"anna@customer.example, bob@other.example",
        b"(comment) anna@customer.example (more", b"\xe4@\xf6.example",
    ]))


@st.composite
def hostile_mails(draw: st.DrawFn, body: st.SearchStrategy[bytes] = mime_trees) -> bytes:
    """A whole mail: hostile header block over a generated MIME tree."""
    headers = [b"From: " + draw(addresses()), b"To: support@example.net"]
    if draw(st.booleans()):
        headers.append(b"Cc: " + draw(addresses()))
    headers.append(b"Subject: " + draw(subjects()))
    # Every mail gets its own id (also the odd ones), so that "duplicate" would mean a mail was lost.
    unique = uuid.uuid4().hex.encode()
    headers.append(b"Message-ID: " + draw(st.sampled_from([
        b"<" + unique + b"@hostile.example>", b"", b"<>", b"no-brackets-" + unique, b"<a" + unique + b"@b> <c@d>",
        b"<\xe4" + unique + b"@x>", b"<" + b"m" * 5000 + unique + b"@x>", b"<" + unique + b"\0@x>"])))
    headers += draw(st.lists(st.sampled_from([
        b"MIME-Version: 1.0", b"MIME-Version: 9.9", b"Date: Mon, 32 Foo 99999 25:61:61 +9999", b"Date: ",
        b"In-Reply-To: <" + b"r" * 3000 + b">", b"References: " + b"<a@b> " * 500, b"Auto-Submitted: no",
        b"X-Weird: \xff\xfe\0", b"Reply-To: support@example.net", b"Content-Type: multipart/mixed",
        b"Authentication-Results: mx.example.net; dmarc=pass header.from=customer.example",
        b"Received: from x\r\n\tby y", b"Thread-Index: !!!", b"X-Header-Without-Colon",
    ]), max_size=6))
    extra = draw(st.integers(0, CAPS.header_count)) if draw(st.integers(0, 9)) == 0 else 0
    headers += [b"X-Junk-%d: %s" % (i, b"v" * 30) for i in range(extra)]
    return b"\r\n".join(headers) + b"\r\n" + draw(body)


@dataclass
class Prober:
    """A second client, in a thread: connect, read the banner, EHLO, NOOP, QUIT, again and again."""

    port: int
    times: list[tuple[float, float]] = field(default_factory=list)  # (when, seconds for the round trip)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Prober:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def slowest_since(self, moment: float) -> float:
        """The slowest round trip that began after ``moment`` (and one that is still running counts)."""
        return max((seconds for when, seconds in self.times if when >= moment), default=0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as conn:
                    reader = conn.makefile("rb")
                    banner = reader.readline()
                    conn.sendall(b"NOOP\r\n")
                    noop = reader.readline()
                    conn.sendall(b"QUIT\r\n")
                    reader.readline()
                if not (banner.startswith(b"220") and noop.startswith(b"250")):
                    self.failures.append(f"{banner!r} {noop!r}")
            except OSError as error:
                self.failures.append(repr(error))
            self.times.append((began, time.monotonic() - began))
            self._stop.wait(0.05)


def rss_peak_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def wait_for_outcome(database: Path, inbox_id: int, timeout: float = 30.0) -> tuple[str, str | None, str | None, int]:
    """(status, decision, reason, articles) once the inbox row is done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(database, timeout=30) as conn:
            status, decision, reason = conn.execute(
                "SELECT status, decision, reason FROM inbox WHERE id = ?", (inbox_id,)).fetchone()
            articles = conn.execute("SELECT count(*) FROM articles WHERE inbox_id = ?", (inbox_id,)).fetchone()[0]
        if status != "pending":
            return status, decision, reason, int(articles)
        time.sleep(0.05)
    raise AssertionError(f"inbox row {inbox_id} still pending after {timeout}s")
