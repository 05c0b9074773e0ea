"""Where the figures come from: CPU, RAM, OS, Python and the stack's service versions.
The figures mean little without it."""

from __future__ import annotations

import contextlib
import os
import platform
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict[str, str]:
    """Where the figures come from: they mean little without it."""
    info = {"CPU": f"{cpu_model()}, {os.cpu_count()} cores", "RAM": ram(), "OS": os_name(),
            "Python": platform.python_version()}
    info.update(service_versions())
    return info


def cpu_model() -> str:
    with contextlib.suppress(OSError):  # no /proc: the platform's name below
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def ram() -> str:
    try:
        import psutil

        return f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except Exception:  # noqa: BLE001 - a report without RAM is still a report
        return "unknown"


def os_name() -> str:
    try:
        text = Path("/etc/os-release").read_text()
        m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
        pretty = m.group(1) if m else platform.system()
    except OSError:
        pretty = platform.system()
    return f"{pretty}, kernel {platform.release()}"


def service_versions() -> dict[str, str]:
    """Kafka, PostgreSQL and FerretDB versions of the stack the benchmarks used."""
    from syncflow.settings import Settings

    settings = Settings.load()
    out = {"Kafka": kafka_version(), "PostgreSQL": "unknown", "FerretDB": "unknown"}
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(settings.database_url)
        with engine.connect() as conn:
            out["PostgreSQL"] = str(conn.execute(text("SHOW server_version")).scalar())
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        out["PostgreSQL"] = f"unknown ({type(exc).__name__})"
    try:
        from pymongo import MongoClient

        client: MongoClient = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
        info = client.admin.command("buildInfo")
        client.close()
        version = info.get("ferretdbVersion")
        if not version or version == "unknown":  # a build from the module proxy does not know its own version
            version = ferretdb_pin() or "unknown"
        out["FerretDB"] = f"{version} (MongoDB wire {info.get('version', '?')})"
    except Exception as exc:  # noqa: BLE001
        out["FerretDB"] = f"unknown ({type(exc).__name__})"
    return out


def kafka_version() -> str:
    """The broker's version from the jars the local stack runs it from."""
    libs = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "syncflow" / "kafka-libs"
    for jar in sorted(libs.glob("kafka-server-*.jar")):
        m = re.match(r"kafka-server-(\d[\w.\-]*)\.jar$", jar.name)
        if m:
            return f"{m.group(1)} (KRaft, local stack)"
    return "unknown"


def ferretdb_pin() -> str | None:
    gomod = REPO / "deploy" / "local" / "ferretdb" / "go.mod"
    try:
        m = re.search(r"github.com/FerretDB/FerretDB (v[\w.\-]+)", gomod.read_text())
    except OSError:
        return None
    return f"{m.group(1)} (built from deploy/local/ferretdb)" if m else None


