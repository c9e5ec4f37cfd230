"""Address headers that come again and again are parsed once per parse process; a long one is never kept."""

from __future__ import annotations

from mailticketd.mail import parse
from mailticketd.mail.parse import parse_mail
from tests.helpers import SUPPORT, make_mail


def test_the_same_headers_in_many_mails_give_the_same_people() -> None:
    """Every mail to the support address, and a customer's every mail, name the same people with their names,
    however often their headers were seen before."""
    mails = [parse_mail(make_mail("Jörg Müller <joerg@kunde.example>", subject=f"Frage {n}", to=f"Support <{SUPPORT}>",
                                  cc="Anna Beispiel <Anna@Kunde.example>, Bob <bob@kunde.example>"))
             for n in range(3)]
    for mail in mails:
        assert mail.from_ is not None
        assert (mail.from_.address, mail.from_.name) == ("joerg@kunde.example", "Jörg Müller")
        assert [(a.address, a.name) for a in mail.to] == [(SUPPORT, "Support")]
        assert [(a.address, a.name) for a in mail.cc] == [("anna@kunde.example", "Anna Beispiel"),
                                                           ("bob@kunde.example", "Bob")]


def test_a_long_address_header_is_parsed_but_not_kept() -> None:
    """A header longer than what a parse process remembers (a sender controls it) is parsed as ever and leaves
    nothing behind."""
    parse._remembered_pairs.cache_clear()
    parse_mail(make_mail())
    without_cc = parse._remembered_pairs.cache_info().currsize
    parse._remembered_pairs.cache_clear()
    many = ", ".join(f"kollege{n}@kunde.example" for n in range(200))
    mail = parse_mail(make_mail(cc=many))
    assert len(mail.cc) == 200 and mail.cc[-1].address == "kollege199@kunde.example"
    assert parse._remembered_pairs.cache_info().currsize == without_cc  # the long Cc was not kept
