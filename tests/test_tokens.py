"""Reply tokens bind a ticket and a recipient; secrets rotate; a secret is made when none is configured."""

from __future__ import annotations

import stat
from pathlib import Path

from mailticketd.tickets.tokens import SECRET_FILE, TokenSigner, load_signer, tokens_in

OLD = TokenSigner((b"old-secret-0123456789",))
NEW = TokenSigner((b"new-secret-0123456789", b"old-secret-0123456789"))


def test_token_verifies_for_its_recipient_and_ticket_only() -> None:
    """A token names its ticket for the address it was made for, and for no other address."""
    token = NEW.token(10042, "Anna@Customer.example")
    assert NEW.verify(token, "anna@customer.example") == 10042
    assert NEW.verify(token, "mallory@evil.example") is None


def test_changed_number_or_mac_is_refused() -> None:
    """Re-numbering a token or altering one character of its MAC makes it worthless."""
    token = NEW.token(10042, "op@provider.example")
    assert NEW.verify(token.replace("t10042.", "t10043."), "op@provider.example") is None
    altered = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert NEW.verify(altered, "op@provider.example") is None
    assert NEW.verify("garbage", "op@provider.example") is None


def test_old_secrets_still_verify_after_rotation() -> None:
    """A token signed with the old secret verifies once a new secret is put first."""
    token = OLD.token(7, "anna@customer.example")
    assert NEW.verify(token, "anna@customer.example") == 7
    assert NEW.token(7, "anna@customer.example") != token


def test_tokens_are_found_in_sub_addresses_of_our_addresses_only() -> None:
    """``support+TOKEN@`` of our domain carries a token; a look-alike domain does not."""
    found = tokens_in(["Support+t1.abc@Example.net", "support+t2.def@evil.example", "x@example.net"],
                      ("support@example.net",))
    assert found == ["t1.abc"]


def test_a_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    """With no configured secret, the first start writes one (mode 0600) and later starts reuse it."""
    first = load_signer((), tmp_path)
    second = load_signer((), tmp_path)
    assert first.secrets == second.secrets and len(first.secrets[0]) >= 32
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert load_signer(("configured-secret-123",), tmp_path).secrets == (b"configured-secret-123",)
