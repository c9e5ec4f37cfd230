"""Read the configuration: packaged defaults, then the site TOML, into frozen dataclasses.

The packaged ``defaults.toml`` is the schema: a key that is not there is
unknown, and a value must have the type of the default.  Every error names
the file and the key, so an admin sees at once what to fix.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

CONFIG_ENV = "MAILTICKETD_CONFIG"
# The PostgreSQL password, when ``[storage] password_file`` is not set (the URL never holds it).
PASSWORD_ENV = "MAILTICKETD_DATABASE_PASSWORD"
POSTGRESQL_SCHEMES = ("postgresql", "postgres")
SYSTEM_CONFIG = Path("/etc/mailticketd/mailticketd.toml")
LANGUAGES = ("de", "en")
TRANSPORTS = ("maildir", "smtp")
RELAY_SECURITY = ("auto", "none", "starttls", "tls")
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
# An installed package carries its templates inside it; a checkout keeps them in its top-level templates/.
_PACKAGE = Path(__file__).resolve().parent
DEFAULT_TEMPLATES = _PACKAGE / "templates" if (_PACKAGE / "templates").is_dir() else _PACKAGE.parent / "templates"
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    hostname: str
    max_message_size: int
    max_recipients: int
    max_connections: int
    max_line_length: int
    drain_timeout: float
    max_connections_per_client: int
    idle_timeout: float
    busy_idle_timeout: float
    max_session_time: float
    max_idle_commands: int
    spool_threshold: int
    spool_directory: Path | None
    tls_certificate: Path | None
    tls_key: Path | None
    require_tls: bool


@dataclass(frozen=True)
class MailConfig:
    addresses: tuple[str, ...]
    tag_prefix: str
    vm_pattern: re.Pattern[str]
    vm_scheme: str  # the naming scheme as customers read it, for the hint in acknowledgements
    organisation_name: str  # the provider's name in every footer; empty: no name
    default_language: str
    register_cc: bool
    from_name: str
    token_secrets: tuple[str, ...]
    templates: Path

    @property
    def support_address(self) -> str:
        """The address every outgoing mail comes from: the first configured one."""
        return self.addresses[0]

    def language_for(self, language: str | None) -> str:
        """A person's language if we have templates for it, else the default."""
        return language if language in LANGUAGES else self.default_language

    def is_local(self, address: str) -> bool:
        """One of our support addresses, with or without a ``+`` sub-address (any case)."""
        local, at, domain = address.strip().strip("<>").lower().partition("@")
        return bool(at) and f"{local.split('+', 1)[0]}@{domain}" in self.addresses


@dataclass(frozen=True)
class TicketsConfig:
    first_number: int
    reopen_window_days: float


@dataclass(frozen=True)
class NotifyConfig:
    primary_contact_copies: bool
    max_auto_replies_per_hour: int


@dataclass(frozen=True)
class InboxConfig:
    max_backlog: int
    max_attempts: int
    retry_delay: float
    poll_interval: float
    claim_lease: float  # seconds a daemon sharing the database keeps the mails it took; then another takes them
    parse_processes: int  # "auto" in the file is resolved to a number here


@dataclass(frozen=True)
class StorageConfig:
    database: Path  # the SQLite file; not used when ``url`` selects PostgreSQL
    busy_timeout: float
    state_directory: Path
    url: str = ""  # postgresql://user@host:port/name (never with a password): PostgreSQL instead of the file
    password_file: Path | None = None  # its first line is the PostgreSQL password

    @property
    def shared(self) -> bool:
        """True when the database is PostgreSQL, which several daemons may share."""
        return bool(self.url)

    @property
    def name(self) -> str:
        """The database for people: the URL or the file."""
        return self.url or str(self.database)

    def password(self) -> str | None:
        """The PostgreSQL password: ``password_file``'s first line, else ``$MAILTICKETD_DATABASE_PASSWORD``, else
        None (the driver then reads ``$PGPASSWORD`` and ``~/.pgpass`` as libpq does)."""
        if self.password_file is not None:
            try:
                lines = self.password_file.read_text("utf-8").splitlines()
            except OSError as error:
                raise ConfigError(str(self.password_file), "[storage] password_file",
                                  f"cannot be read: {error.strerror or error}") from error
            return lines[0] if lines else ""
        return os.environ.get(PASSWORD_ENV) or None


@dataclass(frozen=True)
class OutboundConfig:
    transport: str
    maildir: Path
    relay: str
    relay_security: str  # auto | none | starttls | tls
    relay_username: str
    relay_password: str
    relay_timeout: float
    retry_delay: float
    max_retry_delay: float
    max_lifetime: float
    poll_interval: float
    send_lease: float  # seconds a mail being sent is leased; a dead daemon's mail waits this long (PostgreSQL)

    @property
    def relay_host(self) -> str:
        return self.relay.rpartition(":")[0].strip("[]")

    @property
    def relay_port(self) -> int:
        return int(self.relay.rpartition(":")[2])


@dataclass(frozen=True)
class HttpConfig:
    host: str
    port: int
    base_url: str
    verification_hours: int
    session_idle_hours: float  # a helpdesk session ends after this long without a request
    session_max_hours: float  # and after this long in any case
    login_failures: int  # failed log-ins for one address (or ten times that for one client) ...
    login_lockout_minutes: float  # ... within this time lock further tries out for this time
    max_attachments: int  # files in one web answer or new ticket
    trust_forwarded_for: bool  # the client's address is the last one in X-Forwarded-For (behind a proxy)
    time_zone: str  # for the dates on the helpdesk pages
    max_connections: int
    header_timeout: float
    reserve_descriptors: int

    @property
    def secure(self) -> bool:
        """Pages are served over https (by the reverse proxy): cookies carry ``Secure``."""
        return self.base_url.lower().startswith("https://")


@dataclass(frozen=True)
class OperatorsConfig:
    addresses: tuple[str, ...]
    authserv_id: str
    trust_authentication_results: bool


@dataclass(frozen=True)
class HealthConfig:
    stuck_after: float


@dataclass(frozen=True)
class LogConfig:
    format: str
    level: str


@dataclass(frozen=True)
class Config:
    source: str
    smtp: SmtpConfig
    mail: MailConfig
    tickets: TicketsConfig
    notify: NotifyConfig
    inbox: InboxConfig
    storage: StorageConfig
    outbound: OutboundConfig
    http: HttpConfig
    operators: OperatorsConfig
    health: HealthConfig
    log: LogConfig


def load_defaults() -> dict[str, dict[str, Any]]:
    """Return the packaged defaults, which are also the schema."""
    text = resources.files("mailticketd").joinpath("defaults.toml").read_text("utf-8")
    return tomllib.loads(text)


def config_path(explicit: str | None, system: Path = SYSTEM_CONFIG) -> Path | None:
    """The file to read: ``--config``, else ``$MAILTICKETD_CONFIG``, else ``system`` if it exists, else none
    (the embedded defaults)."""
    chosen = explicit or os.environ.get(CONFIG_ENV) or None
    if chosen:
        return Path(chosen)
    return system if system.exists() else None


def load_config(path: Path | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Config:
    """Build the configuration from defaults, the site file at ``path`` and ``overrides``."""
    values = load_defaults()
    source = "embedded defaults"
    base = Path.cwd()  # with no file, relative paths are the current folder's (``make run``)
    if path is not None:
        source = str(path)
        _merge(values, _read_toml(path), source)
        base = path.absolute().parent
    if overrides:
        _merge(values, overrides, "overrides")
    return _build(values, source, base)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ConfigError(str(path), "(file)", f"cannot be read: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), "(file)", f"is not valid TOML: {error}") from error


def _merge(values: dict[str, dict[str, Any]], site: Mapping[str, Any], source: str) -> None:
    for section, table in site.items():
        if section not in values:
            raise ConfigError(source, f"[{section}]", "unknown section")
        if not isinstance(table, Mapping):
            raise ConfigError(source, f"[{section}]", "must be a table")
        for key, value in table.items():
            name = f"[{section}] {key}"
            if key not in values[section]:
                raise ConfigError(source, name, "unknown key")
            values[section][key] = _checked(value, values[section][key], source, name)


def _checked(value: Any, default: Any, source: str, name: str) -> Any:
    """Return ``value`` if it has the type of ``default`` (an int is a fine float)."""
    if name == "[inbox] parse_processes":  # "auto" or a number: checked in _build
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        wanted = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        wanted = "a whole number"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        wanted = "a number"
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        wanted = "a list of strings"
    else:
        ok = isinstance(value, str)
        wanted = "a string"
    if not ok:
        raise ConfigError(source, name, f"expected {wanted}, got {value!r}")
    return value


def _build(v: dict[str, dict[str, Any]], source: str, base: Path) -> Config:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(source, key, problem)

    # Relative paths mean the same file to the daemon and to the CLI, wherever either was started.
    state = base / Path(v["storage"]["state_directory"]).expanduser()

    def place(value: str) -> Path:
        return state / Path(value).expanduser()

    smtp_host, smtp_port = _listen(v["smtp"]["listen"], fail("[smtp] listen", "expected host:port"))
    http_host, http_port = _listen(v["http"]["listen"], fail("[http] listen", "expected host:port"))
    for section, key in (("smtp", "max_message_size"), ("smtp", "max_recipients"),
                         ("smtp", "max_connections"), ("smtp", "max_line_length"),
                         ("inbox", "max_backlog"), ("inbox", "max_attempts"), ("http", "verification_hours"),
                         ("http", "login_failures"), ("http", "max_attachments"),
                         ("smtp", "max_connections_per_client"), ("smtp", "max_idle_commands"),
                         ("smtp", "spool_threshold"), ("http", "max_connections")):
        if v[section][key] < 1:
            raise fail(f"[{section}] {key}", f"must be at least 1, got {v[section][key]!r}")
    for section, key in (("inbox", "claim_lease"), ("outbound", "send_lease"), ("smtp", "idle_timeout"), ("smtp", "busy_idle_timeout"), ("smtp", "max_session_time"),
                         ("http", "header_timeout")):
        if v[section][key] <= 0:
            raise fail(f"[{section}] {key}", f"must be more than 0 seconds, got {v[section][key]!r}")
    v["inbox"]["parse_processes"] = _parse_processes(v["inbox"]["parse_processes"], fail)
    if v["http"]["reserve_descriptors"] < 0:
        raise fail("[http] reserve_descriptors", f"must not be negative, got {v['http']['reserve_descriptors']!r}")
    if bool(v["smtp"]["tls_certificate"]) != bool(v["smtp"]["tls_key"]):
        raise fail("[smtp] tls_key" if v["smtp"]["tls_certificate"] else "[smtp] tls_certificate",
                   "tls_certificate and tls_key are set together")
    if v["smtp"]["require_tls"] and not v["smtp"]["tls_certificate"]:
        raise fail("[smtp] require_tls", "needs tls_certificate and tls_key")
    addresses = _addresses(v["mail"]["addresses"], fail)
    if not addresses:
        raise fail("[mail] addresses", "needs at least one local support address")
    try:
        vm_pattern = re.compile(v["mail"]["vm_pattern"], re.IGNORECASE)
    except re.error as error:
        raise fail("[mail] vm_pattern", f"is not a valid regular expression: {error}") from error
    _choice(v["mail"]["default_language"], LANGUAGES, fail("[mail] default_language", f"must be one of {', '.join(LANGUAGES)}"))
    _choice(v["outbound"]["transport"], TRANSPORTS, fail("[outbound] transport", f"must be one of {', '.join(TRANSPORTS)}"))
    _choice(v["log"]["format"], LOG_FORMATS, fail("[log] format", f"must be one of {', '.join(LOG_FORMATS)}"))
    _choice(v["log"]["level"], LOG_LEVELS, fail("[log] level", f"must be one of {', '.join(LOG_LEVELS)}"))
    if any(len(secret) < 16 for secret in v["mail"]["token_secrets"]):
        raise fail("[mail] token_secrets", "each secret needs at least 16 characters")
    if v["operators"]["trust_authentication_results"] and not v["operators"]["authserv_id"]:
        raise fail("[operators] authserv_id", "is needed when trust_authentication_results = true")
    try:
        zoneinfo.ZoneInfo(v["http"]["time_zone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise fail("[http] time_zone", f"is not a known time zone (such as Europe/Berlin): {v['http']['time_zone']!r}"
                   ) from error
    for key in ("session_idle_hours", "session_max_hours", "login_lockout_minutes"):
        if v["http"][key] <= 0:
            raise fail(f"[http] {key}", f"must be more than 0, got {v['http'][key]!r}")
    for section, key in (("tickets", "reopen_window_days"), ("notify", "max_auto_replies_per_hour")):
        if v[section][key] < 0:
            raise fail(f"[{section}] {key}", f"must not be negative, got {v[section][key]!r}")
    if not v["mail"]["tag_prefix"].strip():
        raise fail("[mail] tag_prefix", "must not be empty")
    if v["outbound"]["transport"] == "smtp" and not v["outbound"]["relay"]:
        raise fail("[outbound] relay", 'is needed when transport = "smtp"')
    if v["outbound"]["relay"]:
        _listen(v["outbound"]["relay"], fail("[outbound] relay", "expected host:port"))
    _choice(v["outbound"]["relay_security"], RELAY_SECURITY,
            fail("[outbound] relay_security", f"must be one of {', '.join(RELAY_SECURITY)}"))
    return Config(
        source=source,
        smtp=SmtpConfig(
            host=smtp_host, port=smtp_port, hostname=v["smtp"]["hostname"],
            max_message_size=v["smtp"]["max_message_size"], max_recipients=v["smtp"]["max_recipients"],
            max_connections=v["smtp"]["max_connections"], max_line_length=v["smtp"]["max_line_length"],
            drain_timeout=v["smtp"]["drain_timeout"],
            max_connections_per_client=v["smtp"]["max_connections_per_client"],
            idle_timeout=v["smtp"]["idle_timeout"], busy_idle_timeout=v["smtp"]["busy_idle_timeout"],
            max_session_time=v["smtp"]["max_session_time"], max_idle_commands=v["smtp"]["max_idle_commands"],
            spool_threshold=v["smtp"]["spool_threshold"], spool_directory=_path(v["smtp"]["spool_directory"], place),
            tls_certificate=_path(v["smtp"]["tls_certificate"], place), tls_key=_path(v["smtp"]["tls_key"], place),
            require_tls=v["smtp"]["require_tls"],
        ),
        mail=MailConfig(
            addresses=addresses, tag_prefix=v["mail"]["tag_prefix"], vm_pattern=vm_pattern,
            vm_scheme=v["mail"]["vm_scheme"], organisation_name=" ".join(v["mail"]["organisation_name"].split()),
            default_language=v["mail"]["default_language"], register_cc=v["mail"]["register_cc"],
            from_name=v["mail"]["from_name"], token_secrets=tuple(v["mail"]["token_secrets"]),
            templates=_templates_folder(v, place, fail),
        ),
        tickets=TicketsConfig(**v["tickets"]),
        notify=NotifyConfig(**v["notify"]),
        inbox=InboxConfig(**v["inbox"]),
        storage=_storage(v["storage"], state, place, fail),
        outbound=OutboundConfig(**(v["outbound"] | {"maildir": place(v["outbound"]["maildir"])})),
        http=HttpConfig(host=http_host, port=http_port, base_url=_base_url(v["http"]["base_url"], fail),
                        **{key: value for key, value in v["http"].items() if key not in ("listen", "base_url")}),
        operators=OperatorsConfig(
            addresses=_addresses(v["operators"]["addresses"], fail, "[operators] addresses"),
            authserv_id=v["operators"]["authserv_id"],
            trust_authentication_results=v["operators"]["trust_authentication_results"],
        ),
        health=HealthConfig(**v["health"]),
        log=LogConfig(format=v["log"]["format"], level=v["log"]["level"]),
    )


def _storage(values: dict[str, Any], state: Path, place: Any, fail: Any) -> StorageConfig:
    """A path selects SQLite; a ``postgresql://`` URL PostgreSQL, whose password is never in the config."""
    database: str = values["database"]
    password_file = _path(values["password_file"], place)
    if "://" not in database:
        return StorageConfig(database=place(database), busy_timeout=values["busy_timeout"], state_directory=state,
                             password_file=password_file)
    url = urlsplit(database)
    if url.scheme not in POSTGRESQL_SCHEMES:
        raise fail("[storage] database", f"is a path (SQLite) or a postgresql:// URL, got {url.scheme}://")
    if url.password is not None:
        raise fail("[storage] database", f"must not contain a password: put it in [storage] password_file or "
                                         f"${PASSWORD_ENV}")
    if not url.path.strip("/"):
        raise fail("[storage] database", "needs the database's name: postgresql://user@host:port/name")
    try:
        url.port
    except ValueError as error:
        raise fail("[storage] database", f"has a bad port: {error}") from error
    return StorageConfig(database=place("mailticketd.sqlite3"), busy_timeout=values["busy_timeout"],
                         state_directory=state, url=database, password_file=password_file)
MAX_PARSE_PROCESSES = 64


def _parse_processes(value: Any, fail: Any) -> int:
    """``[inbox] parse_processes``: "auto" is one process fewer than the cores this daemon may use (at least 1)."""
    if value == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores - 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PARSE_PROCESSES:
        raise fail("[inbox] parse_processes",
                   f'must be "auto" or a whole number from 0 to {MAX_PARSE_PROCESSES}, got {value!r}')
    return value


def _path(value: str, place: Any) -> Path | None:
    """A configured file or folder, relative ones like every other path; None when not set."""
    return Path(place(value)) if value else None


def _templates_folder(v: dict[str, dict[str, Any]], place: Any, fail: Any) -> Path:
    """``[templates] folder``, else the older ``[mail] templates``, else the templates shipped with the package."""
    folder, legacy = v["templates"]["folder"], v["mail"]["templates"]
    if folder and legacy and folder != legacy:
        raise fail("[mail] templates", "replaced by [templates] folder; set only that one")
    chosen = folder or legacy
    return Path(place(chosen)) if chosen else DEFAULT_TEMPLATES


def _base_url(value: str, fail: Any) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise fail("[http] base_url", f"must be an absolute http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _listen(value: str, error: ConfigError) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise error
    return host.strip("[]"), int(port)


def _addresses(values: list[str], fail: Any, key: str = "[mail] addresses") -> tuple[str, ...]:
    for value in values:
        if not _ADDRESS.match(value):
            raise fail(key, f"{value!r} is not an e-mail address")
    return tuple(dict.fromkeys(value.strip().lower() for value in values))


def _choice(value: str, allowed: tuple[str, ...], error: ConfigError) -> None:
    if value not in allowed:
        raise ConfigError(error.source, error.key, f"{error.problem}, got {value!r}")
