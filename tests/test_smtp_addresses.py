"""MAIL FROM and RCPT TO: the quick reading of plain ``<local@domain>`` answers exactly as aiosmtpd's parser does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosmtplib
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from mailticketd.app import Daemon
from mailticketd.smtp.server import _Protocol
from tests.helpers import SUPPORT, make_config, make_mail, settle

ODD = [
    "<kunde@firma.example>", "<kunde@firma.example> SIZE=4096", "<Kunde.Name+tag@Sub.Firma.example> BODY=8BITMIME",
    "<a@b>  (comment) SIZE=1", "<a@b>(comment)", "<a@b>\t SIZE=1", "<a@b>SIZE=1", "<a..b@c>", "<.a@b>", "<a.@b>",
    '<"q u"@c>', '<"a"@b>', "<a@[192.0.2.1]>", "<>", "< a@b>", "<a@b >", "<a@b.>", "<a@.b>", "<a@b..c>", "<a@-b>",
    "<a@b_c>", "<@relay.example:a@b>", "<a@b", "a@b", " <a@b>", "<a@b>>", "<a<b@c>", "<a(b)@c>", "<a@b(c)>",
    "<{x}|~'!#$%&*/=?^_`@b>", "<müller@firma.example>", "<a@bücher.example>", "<" + "x" * 70 + "@b>",
    "<" + "x" * 64 + "@b>", "<a@b>\r", "<a@b> \\", "", "<",
]


def _answer(protocol: SMTP, arg: str) -> object:
    try:
        return protocol._getaddr(arg)
    except Exception as error:  # noqa: BLE001 - aiosmtpd's parser raises on some input ("<"); ours must too
        return type(error)


def _protocols(limit: int) -> tuple[_Protocol, SMTP]:
    ours, theirs = _Protocol.__new__(_Protocol), SMTP.__new__(SMTP)
    ours.local_part_limit = theirs.local_part_limit = limit
    return ours, theirs


def test_odd_addresses_are_read_as_aiosmtpd_reads_them() -> None:
    """Addresses with comments, quotes, literals, empty parts or non-ASCII give the same address and rest as before."""
    for limit in (0, 64):
        ours, theirs = _protocols(limit)
        for arg in ODD:
            assert _answer(ours, arg) == _answer(theirs, arg), (limit, arg)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(["<", ">", "@", ".", "a", "B", "9", "-", "_", "+", "'", " ", "\t", "(", ")", '"',
                                 "[", "]", ":", ",", "\\", "ü", "SIZE=1", "x" * 40]), max_size=20).map("".join))
def test_generated_addresses_are_read_as_aiosmtpd_reads_them(arg: str) -> None:
    """For any command argument made of address characters, the answer is aiosmtpd's own."""
    ours, theirs = _protocols(64)
    assert _answer(ours, arg) == _answer(theirs, arg)


async def test_envelope_addresses_arrive_as_sent(tmp_path: Path) -> None:
    """Over SMTP, a plain sender, one with parameters and a quoted one are stored as aiosmtpd would read them."""
    config = make_config(tmp_path, inbox={"parse_processes": 0})
    senders = ["kunde@firma.example", "Kunde.Name+tag@Sub.Firma.example", '"q u"@firma.example']
    async with Daemon(config) as daemon:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port, timeout=30) as client:
            for sender in senders:
                errors, _ = await client.sendmail(sender, [SUPPORT], make_mail(sender="kunde@firma.example"))
                assert not errors
            code, message = await client.execute_command(b"MAIL", b"FROM:<a@b.>")
            assert code == 553, message
        await settle(daemon)
    with sqlite3.connect(config.storage.database) as conn:
        stored = [row[0] for row in conn.execute("SELECT mail_from FROM inbox ORDER BY id")]
    assert stored == senders
