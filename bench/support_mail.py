"""Realistic support mails and the directory they come from, shared by the benchmarks.

The directory is deterministic, so a client process can name people and VMs
that ``bench/population.py`` wrote without asking the database: organisation
``i`` (from 1) is ``Kunde 00001 GmbH`` with people ``person0..4@kunde00001.example``
(person0 is its authorised manager and primary contact) and ``VMS_PER_ORGANISATION``
VMs.  Mails are German, about 4 KB, name a VM in the subject and the text, carry
a CC now and then, and 5 % have a 200 KB attachment; replies quote the mail
they answer, as mail clients do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formatdate
from datetime import datetime, timezone

SUPPORT = "support@example.net"
OPERATOR = "op@provider.example"
PEOPLE_PER_ORGANISATION = 5
VMS_PER_ORGANISATION = 3
TAG_PREFIX = "MH#"
FIRST_NUMBER = 10000

_SUBJECTS = (
    "{vm} antwortet nicht mehr", "Festplatte auf {vm} voll", "{vm}: Backup fehlgeschlagen",
    "Zertifikat auf {vm} abgelaufen", "Hohe Last auf {vm} seit heute morgen", "{vm} bitte neu starten",
    "Frage zur Rechnung und zu {vm}", "Firewall-Freigabe für {vm}", "Update von PHP auf {vm}",
    "Datenbank auf {vm} langsam", "Mailversand von {vm} geht nicht", "RAM-Erweiterung für {vm}",
)
_SENTENCES = (
    "seit heute früh um kurz nach sieben ist {vm} von außen nicht mehr erreichbar.",
    "Unsere Monitoring-Software meldet einen Ausfall des Webservers, der Ping geht aber noch durch.",
    "Wir haben in der Nacht keine Änderungen vorgenommen, es lief ein automatisches Update der Pakete.",
    "Die Logdateien unter /var/log zeigen viele Meldungen über fehlgeschlagene Verbindungen zur Datenbank.",
    "Könnten Sie bitte prüfen, ob es auf Ihrer Seite eine Störung im Rechenzentrum gibt?",
    "Der Dienst ist für unsere Kunden geschäftskritisch, wir bitten daher um eine schnelle Rückmeldung.",
    "Die Auslastung der Festplatte liegt laut df bei 98 Prozent, obwohl wir gestern aufgeräumt haben.",
    "Außerdem möchten wir wissen, ob sich die Sicherung auf einen anderen Zeitpunkt verschieben lässt.",
    "Für Rückfragen erreichen Sie mich heute bis 18 Uhr unter der unten angegebenen Telefonnummer.",
    "Bitte führen Sie den Neustart erst nach Rücksprache mit unserer Entwicklungsabteilung durch.",
    "Im Anhang finden Sie einen Auszug aus dem Systemprotokoll der letzten Stunde.",
    "Die Antwortzeiten der Anwendung sind von üblicherweise 200 Millisekunden auf über vier Sekunden gestiegen.",
    "Wir vermuten, dass ein Cronjob hängen geblieben ist und den Arbeitsspeicher vollständig belegt.",
    "Gibt es eine Möglichkeit, die Größe der Festplatte ohne Ausfallzeit zu erweitern?",
    "Das TLS-Zertifikat wurde nicht automatisch erneuert, Browser zeigen jetzt eine Sicherheitswarnung.",
    "Unsere Buchhaltung fragt außerdem, warum auf der letzten Rechnung zwei zusätzliche Positionen stehen.",
    "Der Mailversand aus dem Shop bricht mit der Meldung ab, dass die Verbindung abgelehnt wurde.",
    "Wir bitten um Freigabe von Port 8443 für die Adressen unseres Dienstleisters aus Hamburg.",
    "Über das Wochenende ist die Anzahl der Prozesse stetig gestiegen, ohne dass mehr Besucher kamen.",
    "Vielen Dank vorab für Ihre Unterstützung, wir wissen Ihre schnelle Hilfe sehr zu schätzen.",
)
_FIRST = ("Anna", "Bernd", "Claudia", "Dieter", "Elke", "Frank", "Gabi", "Holger", "Ines", "Jürgen")
_LAST = ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann")


def organisation_name(organisation: int) -> str:
    return f"Kunde {organisation:05d} GmbH"


def address(organisation: int, person: int) -> str:
    return f"person{person}@kunde{organisation:05d}.example"


def person_name(organisation: int, person: int) -> str:
    return f"{_FIRST[(organisation + person) % 10]} {_LAST[(organisation * 7 + person) % 10]}"


def vm_name(organisation: int, index: int) -> str:
    """The ``index``-th VM of an organisation, ``de-XX-srv-NNNN`` with a data centre per 10,000 VMs."""
    serial = (organisation - 1) * VMS_PER_ORGANISATION + index
    block, number = divmod(serial, 10000)
    return f"de-{chr(97 + block // 26 % 26)}{chr(97 + block % 26)}-srv-{number:04d}"


def tag(number: int) -> str:
    return f"[{TAG_PREFIX}{number}]"


@dataclass(frozen=True)
class Sent:
    """What a client remembers of a mail it sent, to reply to it later."""

    organisation: int
    person: int
    subject: str
    message_id: str
    body: str


class MailMaker:
    """Builds the mails of one client; seeded, so a run can be repeated."""

    def __init__(self, organisations: int, seed: int, *, attachment_share: float = 0.05,
                 cc_share: float = 0.2, attachment_bytes: int = 200 * 1024) -> None:
        self.organisations = organisations
        self.random = random.Random(seed)
        self.seed = seed
        self.attachment_share, self.cc_share, self.attachment_bytes = attachment_share, cc_share, attachment_bytes
        self.count = 0

    def _text(self, vm: str, size: int = 4000) -> str:
        parts: list[str] = []
        length = 0
        while length < size:
            paragraph = " ".join(self.random.choice(_SENTENCES).format(vm=vm) for _ in range(4))
            parts.append(paragraph)
            length += len(paragraph) + 2
        return "\n\n".join(parts)

    def _message_id(self) -> str:
        self.count += 1
        return f"{self.seed}.{self.count}.{self.random.getrandbits(40):x}@mail.kunde.example"

    def _mail(self, organisation: int, person: int, subject: str, body: str, message_id: str, *,
              cc: str | None = None, in_reply_to: str | None = None, references: str | None = None,
              attachment: bool = False) -> bytes:
        message = EmailMessage()
        message["From"] = f"{person_name(organisation, person)} <{address(organisation, person)}>"
        message["To"] = f"Support <{SUPPORT}>"
        if cc:
            message["Cc"] = cc
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(timezone.utc))
        message["Message-ID"] = f"<{message_id}>"
        if in_reply_to:
            message["In-Reply-To"] = f"<{in_reply_to}>"
            message["References"] = references or f"<{in_reply_to}>"
        message["User-Agent"] = "Mozilla Thunderbird"
        message.set_content(body)
        if attachment:
            message.add_attachment(self.random.randbytes(self.attachment_bytes), maintype="application",
                                   subtype="octet-stream", filename="systemprotokoll.tar.gz")
        return message.as_bytes()

    def _people(self) -> tuple[int, int, str | None]:
        organisation = self.random.randint(1, self.organisations)
        person = self.random.randrange(PEOPLE_PER_ORGANISATION)
        cc = None
        if self.random.random() < self.cc_share:
            colleague = (person + 1 + self.random.randrange(PEOPLE_PER_ORGANISATION - 1)) % PEOPLE_PER_ORGANISATION
            cc = f"{person_name(organisation, colleague)} <{address(organisation, colleague)}>"
        return organisation, person, cc

    def new(self) -> tuple[bytes, Sent]:
        """A mail that opens a ticket."""
        organisation, person, cc = self._people()
        vm = vm_name(organisation, self.random.randrange(VMS_PER_ORGANISATION))
        subject = self.random.choice(_SUBJECTS).format(vm=vm)
        body = (f"Guten Tag,\n\n{self._text(vm)}\n\nMit freundlichen Grüßen\n{person_name(organisation, person)}\n"
                f"{organisation_name(organisation)}\nTel. +49 30 1234{organisation:05d}\n")
        message_id = self._message_id()
        raw = self._mail(organisation, person, subject, body, message_id, cc=cc,
                         attachment=self.random.random() < self.attachment_share)
        return raw, Sent(organisation, person, subject, message_id, body)

    def reply(self, to: Sent, number: int | None) -> bytes:
        """An answer to an earlier mail: quoted, with In-Reply-To, and the ticket's tag when ``number`` is known."""
        subject = f"AW: {tag(number)} {to.subject}" if number else f"AW: {to.subject}"
        quoted = "\n".join(f"> {line}" for line in to.body.splitlines()[:30])
        body = (f"Hallo,\n\n{self._text(vm_name(to.organisation, 0), 1200)}\n\nViele Grüße\n"
                f"{person_name(to.organisation, to.person)}\n\n"
                f"Am {formatdate(localtime=False)} schrieb {person_name(to.organisation, to.person)}:\n{quoted}\n")
        return self._mail(to.organisation, to.person, subject, body, self._message_id(), in_reply_to=to.message_id,
                          attachment=self.random.random() < self.attachment_share)

    def to_ticket(self, organisation: int, person: int, subject: str, *, in_reply_to: str | None = None) -> bytes:
        """A follow-up by ``person`` with ``subject`` as given (a tag in it, or none), optionally In-Reply-To."""
        body = (f"Hallo,\n\n{self._text(vm_name(organisation, 0), 1500)}\n\nViele Grüße\n"
                f"{person_name(organisation, person)}\n")
        return self._mail(organisation, person, subject, body, self._message_id(), in_reply_to=in_reply_to)
