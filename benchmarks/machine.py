"""The machine a benchmark run measured on: CPU, cores, memory, Python, PostgreSQL, Redis."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import psycopg
import redis

from tests.support.settings import REDIS_URL, SERVER_URL


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _postgres_version() -> str:
    url = SERVER_URL.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        return f"unknown ({type(exc).__name__})"
    return str(row[0]).split(" ")[0] if row else "unknown"


def _redis_version() -> str:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        try:
            return str(client.info("server").get("redis_version", "unknown"))
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"unknown ({type(exc).__name__})"


def describe() -> dict[str, Any]:
    """The machine, as ``latest.json`` records it."""
    return {
        "model": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "postgresql": _postgres_version(),
        "redis": _redis_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two descriptions are of one machine and one set of servers."""
    keys = ("model", "cpus", "memory_gib", "python", "postgresql", "redis")
    return all(a.get(k) == b.get(k) for k in keys)


def summary(machine: dict[str, Any]) -> str:
    """One line: ``2 cores AMD EPYC 7B13, 24 GiB, Python 3.11.9, PostgreSQL 15.20, Redis 7.0``."""
    memory = machine.get("memory_gib")
    return (
        f"{machine.get('cpus')} cores {machine.get('model') or 'unknown CPU'}, "
        f"{f'{memory:g} GiB' if memory else 'memory unknown'}, "
        f"Python {machine.get('python')}, PostgreSQL {machine.get('postgresql')}, "
        f"Redis {machine.get('redis')}"
    )
