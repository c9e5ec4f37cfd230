"""Configuration: embedded defaults, the site TOML, and one clear line for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailticketd.config import ConfigError, config_path, load_config
from tests.process import cli


def test_embedded_defaults_match_the_design() -> None:
    """With no file: SQLite under ./var/, SMTP on 127.0.0.1:2525, HTTP on 127.0.0.1:8025, maildir outbound."""
    config = load_config(None)
    assert config.source == "embedded defaults"
    assert config.storage.database == Path.cwd() / "var" / "mailticketd.sqlite3"
    assert (config.smtp.host, config.smtp.port) == ("127.0.0.1", 2525)
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8025)
    assert config.outbound.transport == "maildir" and config.outbound.maildir == Path.cwd() / "var" / "maildir"
    assert config.mail.default_language == "de"
    assert config.mail.vm_pattern.fullmatch("de-fr-srv-0815")


def test_site_file_overrides_defaults(tmp_path: Path) -> None:
    """Keys in the site TOML replace the defaults; addresses are kept lower-cased."""
    path = tmp_path / "site.toml"
    path.write_text('[mail]\naddresses = ["Support@Example.NET"]\ntag_prefix = "TT#"\n'
                    '[smtp]\nlisten = "[::1]:25"\nmax_recipients = 5\n', encoding="utf-8")
    config = load_config(path)
    assert config.mail.addresses == ("support@example.net",)
    assert config.mail.tag_prefix == "TT#"
    assert (config.smtp.host, config.smtp.port, config.smtp.max_recipients) == ("::1", 25, 5)


@pytest.mark.parametrize(("text", "key", "problem"), [
    ("[smtp]\nmax_recipients = \"many\"\n", "[smtp] max_recipients", "expected a whole number, got 'many'"),
    ("[smtp]\nlisten_port = 25\n", "[smtp] listen_port", "unknown key"),
    ("[database]\npath = \"x\"\n", "[database]", "unknown section"),
    ("[mail]\nvm_pattern = \"de-(\"\n", "[mail] vm_pattern", "is not a valid regular expression"),
    ("[mail]\ndefault_language = \"fr\"\n", "[mail] default_language", "must be one of de, en, got 'fr'"),
    ("[mail]\naddresses = [\"not-an-address\"]\n", "[mail] addresses", "is not an e-mail address"),
    ("[outbound]\ntransport = \"smtp\"\n", "[outbound] relay", 'is needed when transport = "smtp"'),
    ("[smtp]\nlisten = \"localhost\"\n", "[smtp] listen", "expected host:port"),
    ("[smtp\n", "(file)", "is not valid TOML"),
    ("[http]\nbase_url = \"desk.example.net\"\n", "[http] base_url", "must be an absolute http:// or https:// URL"),
    ("[http]\nbase_url = \"ftp://desk.example.net\"\n", "[http] base_url", "must be an absolute http"),
    ("[templates]\nfolder = \"a\"\n[mail]\ntemplates = \"b\"\n", "[mail] templates", "replaced by [templates] folder"),
    ("[storage]\ndatabase = \"postgresql://desk:geheim@db.example/desk\"\n", "[storage] database",
     "must not contain a password: put it in [storage] password_file or $MAILTICKETD_DATABASE_PASSWORD"),
    ("[storage]\ndatabase = \"mysql://desk@db.example/desk\"\n", "[storage] database", "a postgresql:// URL"),
    ("[storage]\ndatabase = \"postgresql://desk@db.example\"\n", "[storage] database", "needs the database's name"),
    ("[inbox]\nclaim_lease = 0\n", "[inbox] claim_lease", "must be more than 0 seconds"),
])
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    """Each mistake is reported with the file, the key and what is wrong with it."""
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.key == key
    assert str(error.value).startswith(f"{path}: {key}: ")
    assert problem in error.value.problem


def test_a_postgresql_url_selects_postgresql_with_the_password_from_a_file_or_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL selects PostgreSQL (a path SQLite); the password is the password file's first line, else the
    environment's, and neither appears in what is shown of the database."""
    (tmp_path / "db-password").write_text("s3cret-from-file\nignored\n", encoding="utf-8")
    path = tmp_path / "site.toml"
    path.write_text('[storage]\ndatabase = "postgresql://desk@db.example:5433/desk"\n'
                    'password_file = "db-password"\nstate_directory = "."\n', encoding="utf-8")
    monkeypatch.setenv("MAILTICKETD_DATABASE_PASSWORD", "s3cret-from-env")
    storage = load_config(path).storage
    assert storage.shared and storage.name == "postgresql://desk@db.example:5433/desk"
    assert storage.password() == "s3cret-from-file"
    path.write_text('[storage]\ndatabase = "postgresql://desk@db.example:5433/desk"\n', encoding="utf-8")
    assert load_config(path).storage.password() == "s3cret-from-env"
    monkeypatch.delenv("MAILTICKETD_DATABASE_PASSWORD")
    assert load_config(path).storage.password() is None
    assert not load_config(None).storage.shared


def test_config_path_prefers_the_option_then_the_environment_then_etc(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """``--config`` wins over ``MAILTICKETD_CONFIG``, that over /etc/mailticketd/mailticketd.toml; with none, the
    embedded defaults are used."""
    system = tmp_path / "mailticketd.toml"
    monkeypatch.setenv("MAILTICKETD_CONFIG", "/etc/from-env.toml")
    assert config_path("/etc/explicit.toml", system) == Path("/etc/explicit.toml")
    assert config_path(None, system) == Path("/etc/from-env.toml")
    monkeypatch.delenv("MAILTICKETD_CONFIG")
    assert config_path(None, system) is None
    system.write_text("", encoding="utf-8")
    assert config_path(None, system) == system
    assert config_path(None) == Path("/etc/mailticketd/mailticketd.toml") or not Path("/etc/mailticketd").exists()


def test_templates_folder_and_its_older_key_are_relative_to_the_state_directory(tmp_path: Path) -> None:
    """``[templates] folder`` points at a site's own copy; the older ``[mail] templates`` still works the same."""
    from mailticketd.config import DEFAULT_TEMPLATES
    (tmp_path / "new.toml").write_text('[templates]\nfolder = "site-templates"\n', encoding="utf-8")
    (tmp_path / "old.toml").write_text('[mail]\ntemplates = "site-templates"\n', encoding="utf-8")
    assert load_config(tmp_path / "new.toml").mail.templates == tmp_path / "site-templates"
    assert load_config(tmp_path / "old.toml").mail.templates == tmp_path / "site-templates"
    assert load_config(None).mail.templates == DEFAULT_TEMPLATES and (DEFAULT_TEMPLATES / "de" / "ack.txt").exists()


def test_serve_with_an_unreadable_file_stops_with_one_clear_line(tmp_path: Path) -> None:
    """``serve --config`` on a missing file exits 2 with one line naming the file."""
    missing = tmp_path / "missing.toml"
    result = cli("--config", str(missing), "serve")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"mailticketd: config error: {missing}: (file): cannot be read: No such file or directory"]


def test_serve_reads_the_config_from_the_environment(tmp_path: Path) -> None:
    """``MAILTICKETD_CONFIG`` is read: a wrong type there stops start-up naming the key and that file."""
    path = tmp_path / "env.toml"
    path.write_text("[smtp]\nmax_message_size = true\n", encoding="utf-8")
    result = cli("serve", env={"MAILTICKETD_CONFIG": str(path)})
    assert result.returncode == 2
    assert f"{path}: [smtp] max_message_size: expected a whole number, got True" in result.stderr


def test_example_config_in_the_repository_is_valid_and_documents_every_key() -> None:
    """``config/mailticketd.toml`` loads, and every default key appears in it (commented or not)."""
    from mailticketd.config import load_defaults
    example = Path(__file__).resolve().parents[1] / "config" / "mailticketd.toml"
    load_config(example)
    text = example.read_text(encoding="utf-8")
    for section, keys in load_defaults().items():
        assert f"[{section}]" in text, section
        for key in keys:
            assert f"{key} =" in text, f"[{section}] {key}"
