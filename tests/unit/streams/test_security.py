"""settings.kafka_security and schema_registry_security: what every client gets from them
(confluent-kafka config, Faust credentials, registry config), secrets from files, masked
everywhere they could be printed, refused when incomplete; the OAUTHBEARER token provider
against a real local token endpoint."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from syncflow.errors import ConfigError
from syncflow.settings import KafkaSecuritySettings, SchemaRegistrySecuritySettings
from syncflow.streams.security import (
    OAuthClientCredentialsProvider,
    faust_credentials,
    kafka_client_config,
    read_secret,
    registry_config,
)
from syncflow.settings import Settings

SECRET = "pa55-w0rd-that-must-not-leak"


def settings(**security: object) -> Settings:
    return Settings(_env_file=None, kafka_bootstrap_servers="broker:9094", kafka_security=security)  # type: ignore[call-arg]


def test_plaintext_by_default_is_just_the_bootstrap_servers() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.kafka_security.protocol == "PLAINTEXT"
    assert kafka_client_config(s) == {"bootstrap.servers": s.kafka_bootstrap_servers}
    assert kafka_client_config(s, **{"group.id": "g"}) == {"bootstrap.servers": s.kafka_bootstrap_servers, "group.id": "g"}
    assert faust_credentials(s) is None


def test_sasl_ssl_scram_from_env_vars_with_the_password_in_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")  # as a Kubernetes Secret or an editor leaves it
    ca = tmp_path / "ca.crt"
    for name, value in {"PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512", "USERNAME": "svc",
                        "PASSWORD_FILE": str(secret_file), "CA_FILE": str(ca)}.items():
        monkeypatch.setenv(f"SYNCFLOW_KAFKA_SECURITY__{name}", value)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert kafka_client_config(s, **{"acks": "all"}) == {
        "bootstrap.servers": s.kafka_bootstrap_servers, "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(ca), "ssl.endpoint.identification.algorithm": "https",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc", "sasl.password": SECRET, "acks": "all",
    }
    creds = faust_credentials(s.model_copy(update={"kafka_security": s.kafka_security.model_copy(update={"ca_file": None})}))
    assert type(creds).__name__ == "SASLCredentials"
    assert (creds.protocol.value, creds.mechanism.value, creds.username, creds.password) == (  # type: ignore[union-attr]
        "SASL_SSL", "SCRAM-SHA-512", "svc", SECRET)
    assert isinstance(creds.ssl_context, ssl.SSLContext) and creds.ssl_context.check_hostname  # type: ignore[union-attr]
    assert SECRET not in repr(creds)


def test_a_secret_never_shows_in_the_settings_repr_str_or_dump() -> None:
    s = settings(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", username="svc", password=SECRET)
    assert kafka_client_config(s)["sasl.password"] == SECRET
    for text in (repr(s), str(s), repr(s.kafka_security), s.model_dump_json(), str(s.model_dump())):
        assert SECRET not in text
    assert "security.protocol" in kafka_client_config(s) and "ssl.ca.location" not in kafka_client_config(s)
    creds = faust_credentials(s)
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.ssl_context is None  # type: ignore[union-attr]


def test_tls_only_with_a_client_certificate_and_no_host_name_check(tmp_path: Path) -> None:
    s = settings(protocol="SSL", cert_file=tmp_path / "c.pem", key_file=tmp_path / "k.pem", key_password=SECRET,
                 verify_hostname=False)
    cfg = kafka_client_config(s)
    assert cfg["security.protocol"] == "SSL" and cfg["ssl.ca.location"] == "probe"
    assert cfg["ssl.endpoint.identification.algorithm"] == "none"
    assert (cfg["ssl.certificate.location"], cfg["ssl.key.location"], cfg["ssl.key.password"]) == (
        str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), SECRET)
    assert not any(k.startswith("sasl.") for k in cfg)


def test_oauthbearer_is_librdkafka_oidc_and_an_aiokafka_token_provider(tmp_path: Path) -> None:
    from aiokafka.abc import AbstractTokenProvider

    (tmp_path / "secret").write_text(SECRET)
    s = settings(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", oauth_token_endpoint="https://idp/token",
                 oauth_client_id="syncflow", oauth_client_secret_file=tmp_path / "secret", oauth_scope="kafka")
    cfg = kafka_client_config(s)
    assert {k: v for k, v in cfg.items() if k.startswith("sasl.")} == {
        "sasl.mechanism": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.token.endpoint.url": "https://idp/token", "sasl.oauthbearer.client.id": "syncflow",
        "sasl.oauthbearer.client.secret": SECRET, "sasl.oauthbearer.scope": "kafka"}
    creds = faust_credentials(s)
    assert type(creds).__name__ == "OAuthCredentials" and creds.protocol.value == "SASL_SSL"  # type: ignore[union-attr]
    assert isinstance(creds.oauth_cb, AbstractTokenProvider)  # type: ignore[union-attr]
    assert SECRET not in repr(creds.oauth_cb)  # type: ignore[union-attr]


@pytest.mark.parametrize("security, complaint", [
    ({"protocol": "SASL_SSL", "username": "u"}, "needs username and password"),
    ({"protocol": "SASL_SSL", "password": "p"}, "needs username and password"),
    ({"protocol": "SASL_SSL", "username": "u", "password": "p", "password_file": "/x"}, "either password or password_file"),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "oauth_client_id": "c"}, "OAUTHBEARER needs"),
    ({"protocol": "SSL", "cert_file": "/c.pem"}, "cert_file and key_file go together"),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
    ({"protocol": "TLS"}, "protocol"),
    ({"protocol": "SSL", "passwrd": "x"}, "passwrd"),
])
def test_incomplete_or_unknown_security_settings_are_refused(security: dict, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        KafkaSecuritySettings(**security)


def test_an_unreadable_secret_file_names_the_file_not_a_secret(tmp_path: Path) -> None:
    s = settings(protocol="SASL_SSL", username="u", password_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match="password_file .*missing"):
        kafka_client_config(s)
    assert read_secret(None, None, "x") is None


def test_schema_registry_basic_auth_and_tls(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n")
    sec = SchemaRegistrySecuritySettings(username="reg", password_file=tmp_path / "pw", ca_file=tmp_path / "ca.crt")
    assert registry_config("https://registry:8081", sec) == {
        "url": "https://registry:8081", "basic.auth.user.info": f"reg:{SECRET}", "ssl.ca.location": str(tmp_path / "ca.crt")}
    assert registry_config("http://r") == {"url": "http://r"}
    assert SECRET not in repr(SchemaRegistrySecuritySettings(username="reg", password=SECRET))
    with pytest.raises(ValidationError):
        SchemaRegistrySecuritySettings(username="reg")


async def test_token_provider_uses_the_client_credentials_grant_and_reuses_the_token() -> None:
    calls: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        calls.append(dict(await request.post()))  # type: ignore[arg-type]
        return web.json_response({"access_token": f"tok-{len(calls)}", "token_type": "Bearer", "expires_in": 3600})

    app = web.Application()
    app.router.add_post("/token", token)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        provider = OAuthClientCredentialsProvider(str(server.make_url("/token")), "syncflow", SECRET, "kafka")
        assert await provider.token() == "tok-1"
        assert await provider.token() == "tok-1"  # reused, not fetched per connection
        assert calls == [{"grant_type": "client_credentials", "client_id": "syncflow", "client_secret": SECRET,
                          "scope": "kafka"}]
        bad = OAuthClientCredentialsProvider(str(server.make_url("/nothing-here")), "syncflow", SECRET)
        with pytest.raises(ConfigError) as refused:
            await bad.token()
        assert SECRET not in str(refused.value)
    finally:
        await server.close()
