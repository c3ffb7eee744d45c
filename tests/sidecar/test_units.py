"""The sidecar's pure pieces: settings, URL handling, redaction, host names, the default model."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import httpx
import pytest

from geolibre_ml.sidecar.backend import LaunchPlan, Target, resolve
from geolibre_ml.sidecar.config import MIB, ConfigError, Settings
from geolibre_ml.sidecar.gateway import default_model
from geolibre_ml.sidecar.security import (
    RedactingFormatter,
    Redactor,
    host_of,
    is_loopback_host,
    redact_url,
    token_matches,
)


def test_settings_defaults_and_environment() -> None:
    settings = Settings.from_env({})
    assert settings.samgeo_url is None and settings.token is None
    assert settings.proxy_timeout == 1800
    assert settings.start_timeout == 60
    assert settings.max_upload_bytes == 100 * MIB
    assert settings.max_segmentations == 4
    settings = Settings.from_env(
        {
            "GEOLIBRE_ML_SAMGEO_URL": " http://h:1 ",
            "GEOLIBRE_SIDECAR_TOKEN": "   ",
            "GEOLIBRE_ML_PROXY_TIMEOUT": "2.5",
            "GEOLIBRE_ML_START_TIMEOUT": "",
        }
    )
    assert settings.samgeo_url == "http://h:1"
    assert settings.token is None  # blank is unset
    assert settings.proxy_timeout == 2.5
    assert settings.start_timeout == 60


@pytest.mark.parametrize("value", ["abc", "0", "-3", "nan", "inf"])
def test_bad_timeouts_are_refused_with_the_variable_named(value: str) -> None:
    with pytest.raises(ConfigError, match="GEOLIBRE_ML_PROXY_TIMEOUT"):
        Settings.from_env({"GEOLIBRE_ML_PROXY_TIMEOUT": value})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://user:pw@gpu.example:8000/samgeo", "http://***@gpu.example:8000/samgeo"),
        ("https://token@gpu.example/", "https://***@gpu.example/"),
        ("http://gpu.example/?api_key=k&x=", "http://gpu.example/?api_key=***&x=***"),
        ("http://u:p@[::1]:9000#frag", "http://***@[::1]:9000"),
        ("http://u:p@host:notaport/", "***"),
        ("user:secret@127.0.0.1:9", "***"),
        ("http:user:secret@host", "***"),
        ("localhost:8000?key=k", "***"),
        ("//user:secret@host:9", "//***@host:9"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_target_keeps_credentials_out_of_the_url() -> None:
    target = Target.parse("http://us%40er:p%3Ass@gpu.example:8000/prefix/?key=abc")
    assert target.base == "http://gpu.example:8000/prefix"
    assert target.auth == ("us@er", "p:ss")
    assert target.params == (("key", "abc"),)
    assert target.url("/segment/text") == "http://gpu.example:8000/prefix/segment/text"
    assert "p%3Ass" not in target.shown and "abc" not in target.shown


@pytest.mark.parametrize("url", ["ftp://h/", "127.0.0.1:8000", "http://", "http://h:99999"])
def test_target_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        Target.parse(url)


def test_resolution_order(tmp_path) -> None:
    samgeo = tmp_path / "samgeo-api"
    samgeo.write_text("#!/bin/sh\n")
    samgeo.chmod(0o755)
    path = str(tmp_path)
    url = resolve(Settings(samgeo_url="http://h:1", samgeo_cmd="x", path=path))
    assert isinstance(url, Target)
    cmd = resolve(Settings(samgeo_cmd="sh -c 'exit 0'", path="/usr/bin:/bin"))
    assert isinstance(cmd, LaunchPlan)
    assert cmd.command[1:] == ("-c", "exit 0") and cmd.command[0].endswith("/sh")
    on_path = resolve(Settings(path=path))
    assert isinstance(on_path, LaunchPlan)
    assert on_path.command == (str(samgeo),) and on_path.serves_sam_only
    ours = resolve(Settings(path=str(tmp_path / "empty")))
    assert isinstance(ours, LaunchPlan)
    assert ours.command == (sys.executable, "-m", "geolibre_ml", "model-server")
    assert ours.problem is None  # the engine is installed in the test environment
    missing = resolve(Settings(samgeo_cmd="'unbalanced", path=path))
    assert isinstance(missing, LaunchPlan) and "cannot be parsed" in (missing.problem or "")


def test_redactor_hides_every_form_of_the_secrets() -> None:
    url = "http://alice:correct-horse@gpu.example:8000/?key=k3y-value"
    redact = Redactor.for_settings(url, "tok-123456")
    text = f"{url} alice:correct-horse correct-horse k3y-value tok-123456 alice al"
    # The user name is part of the credentials; secrets under 4 characters are hidden only
    # within the URL, so that they do not blank every "al" in the log.
    assert redact(text) == "*** *** *** *** *** *** al"


@pytest.mark.parametrize(
    "url",
    ["alice:correct-horse@127.0.0.1:9", "http:alice:correct-horse@h", "//alice:correct-horse@h"],
)
def test_redactor_hides_the_password_of_a_url_without_scheme(url: str) -> None:
    redact = Redactor.for_settings(url, None)
    assert redact(f"{url} | correct-horse | alice:correct-horse") == "*** | *** | ***"


def test_a_url_without_scheme_is_refused_without_being_shown() -> None:
    with pytest.raises(ValueError, match="http:// or https://") as caught:
        Target.parse("alice:correct-horse@127.0.0.1:9")
    assert "correct-horse" not in str(caught.value)


def test_redacting_formatter_covers_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s", Redactor(["hunter22"]))
    try:
        raise RuntimeError("password hunter22 rejected")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, "f", 1, "failed: %s", ("hunter22",), None)
        record.exc_info = sys.exc_info()
    text = formatter.format(record)
    assert "hunter22" not in text
    assert "failed: ***" in text and "password *** rejected" in text


@pytest.mark.parametrize(
    ("value", "host"),
    [
        (b"localhost:8765", "localhost"),
        (b"LOCALHOST", "localhost"),
        (b"127.0.0.1", "127.0.0.1"),
        (b"[::1]:8765", "::1"),
        (b"[::1]", "::1"),
        (b"[::1]x", None),
        (b"host:port", None),
        (b"h\xffst", None),
    ],
)
def test_host_of(value: bytes, host: str | None) -> None:
    assert host_of(value) == host


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("192.168.1.2", False),
        ("localhost.example", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback_host(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_token_matches_on_raw_bytes() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> dict:
        return {"headers": list(headers)}

    token = b"tok"
    assert token_matches(token, scope((b"x-geolibre-token", b"tok")))
    assert token_matches(token, scope((b"authorization", b"Bearer tok")))
    assert token_matches(token, scope((b"authorization", b"BEARER  tok ")))
    assert token_matches(
        token, scope((b"x-geolibre-token", b"no"), (b"authorization", b"Bearer tok"))
    )
    assert not token_matches(token, scope())
    assert not token_matches(token, scope((b"x-geolibre-token", b"\xfftok")))
    assert not token_matches(token, scope((b"authorization", b"Basic tok")))


@pytest.mark.parametrize(
    ("configured", "models", "sam_only", "expected"),
    [
        ("classic", {"ready": {"sam3": True}}, False, "classic"),
        (None, {"models": {}, "ready": {"sam3": True, "classic": True}}, False, "sam3"),
        (None, {"models": {}, "ready": {"sam3": False, "classic": True}}, False, "classic"),
        (None, {"models": {"sam": ["vit_h"], "sam3": ["facebook/sam3"]}}, False, "sam3"),
        (None, {"models": {"sam2": ["tiny"]}}, False, "sam2"),
        (None, None, True, "sam3"),
        (None, None, False, "classic"),
    ],
)
def test_default_model(configured, models, sam_only, expected) -> None:
    assert default_model(configured, models, sam_only) == expected


def test_the_sidecar_imports_no_engine() -> None:
    """The sidecar runs in an environment without numpy, rasterio or the model server."""
    code = (
        "import sys, geolibre_ml.sidecar.server, geolibre_ml.sidecar.app;"
        "app = geolibre_ml.sidecar.app.create_app();"
        "bad = [m for m in ('numpy', 'rasterio', 'torch', 'geolibre_ml.segment',"
        " 'geolibre_ml.modelserver') if m in sys.modules];"
        "print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_landing_page_is_the_web_app_and_links_the_docs(proxied) -> None:
    page = httpx.get(f"{proxied.url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js"></script>' in page.text
    assert 'href="docs"' in page.text
    # The page's modules are served beside it, as JavaScript, and ask the status relatively.
    api = httpx.get(f"{proxied.url}/js/api.js")
    assert api.status_code == 200
    assert api.headers["content-type"].startswith("text/javascript")
    assert "'ml/status'" in api.text
    assert httpx.get(f"{proxied.url}/docs").status_code == 200


def test_serve_refuses_a_bad_timeout_with_a_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "geolibre_ml", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "GEOLIBRE_ML_START_TIMEOUT": "soon"},
        timeout=60,
    )
    assert result.returncode == 2
    assert "GEOLIBRE_ML_START_TIMEOUT='soon' is not a number of seconds" in result.stderr
