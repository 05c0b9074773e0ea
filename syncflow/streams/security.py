"""Kafka client security for every role, and the schema registry's credentials.

One settings group (its types are in syncflow/settings.py), `settings.kafka_security` (env `SYNCFLOW_KAFKA_SECURITY__<FIELD>`), says
how every Kafka client of syncflow connects: the confluent-kafka producers, consumers and
admin clients (`kafka_client_config`), and sync-in's Faust app on aiokafka
(`faust_credentials`). `settings.schema_registry_security` does the same for the schema
registry client (`registry_config`).

Secrets are pydantic SecretStr (their repr and str are masked) and can instead be read from a
file (`password_file`, ...), which is how a Kubernetes Secret mounted as a volume is given to a
pod. A file is read when a client is built, so a rotated Secret is picked up by the next client.
No function here logs, and no error message carries a secret.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from syncflow.errors import ConfigError
from syncflow.settings import KafkaSecuritySettings, SchemaRegistrySecuritySettings

if TYPE_CHECKING:  # pragma: no cover
    import faust

    from syncflow.settings import Settings

def read_secret(value: SecretStr | None, file: Path | None, what: str) -> str | None:
    """The secret given inline, else the content of its file (one trailing newline dropped,
    as `kubectl create secret --from-file` and editors leave one), else None."""
    if value is not None and file is not None:
        raise ConfigError(f"{what}: set either the value or the _file, not both")
    if value is not None:
        return value.get_secret_value()
    if file is None:
        return None
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what}_file {str(file)!r} cannot be read: {exc.strerror or type(exc).__name__}") from None
    return text[:-1] if text.endswith("\n") else text


# -- confluent-kafka (librdkafka) ------------------------------------------------------------
def security_config(sec: KafkaSecuritySettings) -> dict[str, Any]:
    """The librdkafka properties of `sec` (empty for PLAINTEXT)."""
    if sec.protocol == "PLAINTEXT":
        return {}
    cfg: dict[str, Any] = {"security.protocol": sec.protocol}
    if sec.tls:
        cfg["ssl.ca.location"] = str(sec.ca_file) if sec.ca_file else "probe"  # probe: the system's CAs
        cfg["ssl.endpoint.identification.algorithm"] = "https" if sec.verify_hostname else "none"
        if sec.cert_file and sec.key_file:
            cfg["ssl.certificate.location"] = str(sec.cert_file)
            cfg["ssl.key.location"] = str(sec.key_file)
            if (key_password := read_secret(sec.key_password, sec.key_password_file, "kafka_security.key_password")) is not None:
                cfg["ssl.key.password"] = key_password
    if sec.sasl:
        cfg["sasl.mechanism"] = sec.sasl_mechanism
        if sec.sasl_mechanism == "OAUTHBEARER":
            cfg["sasl.oauthbearer.method"] = "oidc"
            cfg["sasl.oauthbearer.token.endpoint.url"] = sec.oauth_token_endpoint
            cfg["sasl.oauthbearer.client.id"] = sec.oauth_client_id
            cfg["sasl.oauthbearer.client.secret"] = read_secret(
                sec.oauth_client_secret, sec.oauth_client_secret_file, "kafka_security.oauth_client_secret")
            if sec.oauth_scope:
                cfg["sasl.oauthbearer.scope"] = sec.oauth_scope
        else:
            cfg["sasl.username"] = sec.username
            cfg["sasl.password"] = read_secret(sec.password, sec.password_file, "kafka_security.password")
    return cfg


def kafka_client_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The base confluent-kafka configuration of every producer, consumer and admin client:
    the bootstrap servers and `settings.kafka_security`, then `overrides` (dotted librdkafka
    names may be passed as a dict: `kafka_client_config(s, **{"group.id": g})`)."""
    cfg: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap_servers}
    cfg.update(security_config(settings.kafka_security))
    cfg.update(overrides)
    return cfg


# -- aiokafka (Faust) ---------------------------------------------------------------------------
def ssl_context(sec: KafkaSecuritySettings) -> ssl.SSLContext:
    """A client TLS context: the configured CA (else the system's), the client certificate
    when set, host names checked unless `verify_hostname` is off."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(sec.ca_file) if sec.ca_file else None)
    if sec.cert_file and sec.key_file:
        ctx.load_cert_chain(str(sec.cert_file), str(sec.key_file),
                            password=read_secret(sec.key_password, sec.key_password_file, "kafka_security.key_password"))
    ctx.check_hostname = sec.verify_hostname
    return ctx


class OAuthClientCredentialsProvider:
    """An aiokafka token provider (registered as an aiokafka.abc.AbstractTokenProvider when
    Faust credentials are built, so importing settings does not import aiokafka): a token from
    the OIDC token endpoint by the client-credentials grant, reused until 30 s before it
    expires (at most half its lifetime)."""

    def __init__(self, token_endpoint: str, client_id: str, client_secret: str, scope: str | None = None,
                 *, timeout_s: float = 10.0):
        self._endpoint, self._client_id, self._secret, self._scope = token_endpoint, client_id, client_secret, scope
        self._timeout_s = timeout_s
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<OAuthClientCredentialsProvider {self._endpoint} client_id={self._client_id}>"

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                token, lifetime = await asyncio.to_thread(self._fetch)
                self._token = token
                self._renew_at = time.monotonic() + max(1.0, min(lifetime - 30.0, lifetime / 2))
            return self._token

    def extensions(self) -> dict[str, str]:
        return {}

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "client_id": self._client_id, "client_secret": self._secret}
        if self._scope:
            form["scope"] = self._scope
        request = urllib.request.Request(self._endpoint, data=urllib.parse.urlencode(form).encode(), method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                                  "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as resp:  # noqa: S310 - configured URL
                body = json.loads(resp.read(1_048_576))
        except (OSError, ValueError) as exc:  # the message names the endpoint, never the secret
            raise ConfigError(f"OAUTHBEARER token from {self._endpoint}: {type(exc).__name__}: {exc}") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ConfigError(f"OAUTHBEARER token from {self._endpoint}: no access_token in the answer")
        expires = body.get("expires_in", 300)
        return token, float(expires) if isinstance(expires, (int, float)) and expires > 0 else 300.0


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """`broker_credentials` for sync-in's faust.App: None for PLAINTEXT, else SSL, SASL (PLAIN,
    SCRAM) or OAUTHBEARER credentials carrying the TLS context of `ssl_context`."""
    import faust
    from aiokafka.abc import AbstractTokenProvider

    sec = settings.kafka_security
    if sec.protocol == "PLAINTEXT":
        return None
    ctx = ssl_context(sec) if sec.tls else None
    if not sec.sasl:
        return faust.SSLCredentials(ctx)
    if sec.sasl_mechanism == "OAUTHBEARER":
        secret = read_secret(sec.oauth_client_secret, sec.oauth_client_secret_file, "kafka_security.oauth_client_secret")
        provider = OAuthClientCredentialsProvider(sec.oauth_token_endpoint or "", sec.oauth_client_id or "",
                                                  secret or "", sec.oauth_scope)
        AbstractTokenProvider.register(OAuthClientCredentialsProvider)
        return faust.OAuthCredentials(oauth_cb=provider, ssl_context=ctx)  # type: ignore[arg-type]
    return faust.SASLCredentials(
        username=sec.username,
        password=read_secret(sec.password, sec.password_file, "kafka_security.password"),
        ssl_context=ctx,
        mechanism=sec.sasl_mechanism,
    )


# -- schema registry ------------------------------------------------------------------------
def registry_config(url: str, sec: SchemaRegistrySecuritySettings | None = None) -> dict[str, Any]:
    """The confluent-kafka SchemaRegistryClient configuration: URL, basic auth, TLS."""
    conf: dict[str, Any] = {"url": url}
    if sec is None:
        return conf
    if sec.username:
        password = read_secret(sec.password, sec.password_file, "schema_registry_security.password") or ""
        conf["basic.auth.user.info"] = f"{sec.username}:{password}"
    if sec.ca_file:
        conf["ssl.ca.location"] = str(sec.ca_file)
    if sec.cert_file and sec.key_file:
        conf["ssl.certificate.location"] = str(sec.cert_file)
        conf["ssl.key.location"] = str(sec.key_file)
    return conf


__all__ = [
    "KafkaSecuritySettings",
    "OAuthClientCredentialsProvider",
    "SchemaRegistrySecuritySettings",
    "faust_credentials",
    "kafka_client_config",
    "read_secret",
    "registry_config",
    "security_config",
    "ssl_context",
]
