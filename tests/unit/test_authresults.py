"""Reading our MTA's Authentication-Results: only its topmost header counts, copies make a pass worthless."""

from __future__ import annotations

from mailticketd.mail.authresults import FORGED, UNVERIFIED, VERIFIED, sender_check, verdict
from mailticketd.mail.parse import parse_mail

OURS = "mx.example.net"


def mail(*results: str) -> bytes:
    headers = "".join(f"Authentication-Results: {value}\r\n" for value in results)
    return (f"{headers}From: anna@customer.example\r\nTo: support@example.net\r\nSubject: Hallo\r\n"
            "Message-ID: <a@customer.example>\r\n\r\nHallo.\r\n").encode()


def test_the_topmost_header_of_our_id_wins_over_a_forged_copy_below() -> None:
    """Our MTA's dmarc=fail on top is what counts, not the sender's own dmarc=pass below it."""
    found = verdict(parse_mail(mail(f"{OURS}; dmarc=fail (p=reject) header.from=customer.example",
                                    f"{OURS}; dmarc=pass header.from=customer.example")), OURS)
    assert found is not None and found.dmarc == "fail" and found.forged
    assert sender_check(found, "anna@customer.example") == FORGED


def test_a_pass_is_worthless_when_the_mta_left_a_copy_of_its_id() -> None:
    """Two headers of our id mean the MTA does not strip them: a dmarc=pass then vouches for nobody."""
    found = verdict(parse_mail(mail(f"{OURS}; dmarc=pass header.from=customer.example",
                                    f"{OURS}; dmarc=pass header.from=customer.example")), OURS)
    assert found is not None and found.copies == 2
    assert not found.dmarc_passed_for("anna@customer.example")
    assert sender_check(found, "anna@customer.example") == UNVERIFIED


def test_a_header_of_another_host_above_ours_is_skipped() -> None:
    """A content filter's header of its own id on top does not hide our MTA's verdict below it."""
    found = verdict(parse_mail(mail("filter.example.net; spf=pass smtp.mailfrom=customer.example",
                                    f"{OURS} 1; dkim=pass header.d=customer.example; dmarc=pass"
                                    " header.from=customer.example")), OURS)
    assert found is not None and found.dmarc_passed_for("anna@customer.example")
    assert sender_check(found, "anna@customer.example") == VERIFIED


def test_no_header_of_our_id_is_no_verdict() -> None:
    """Without a header of our id (only a foreign one, or none) there is nothing to trust."""
    assert verdict(parse_mail(mail("evil.example; dmarc=pass header.from=customer.example")), OURS) is None
    assert verdict(parse_mail(mail("mx.example.net.evil.example; dmarc=pass header.from=customer.example")),
                   OURS) is None
    assert verdict(parse_mail(mail()), OURS) is None
    assert sender_check(None, "anna@customer.example") == UNVERIFIED


def test_a_pass_for_another_domain_does_not_vouch_for_the_author() -> None:
    """dmarc=pass for the attacker's own domain says nothing about the From address."""
    found = verdict(parse_mail(mail(f"{OURS}; dmarc=pass header.from=attacker.example")), OURS)
    assert sender_check(found, "anna@customer.example") == UNVERIFIED
