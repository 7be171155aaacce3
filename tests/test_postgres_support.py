"""The throw-away PostgreSQL server works, and target-postgres (under Meltano) loads into it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.postgres import PostgresServer, query, running_postgres

REPO = Path(__file__).resolve().parents[1]
TARGET_EXE = REPO / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"
N_RECORDS = 50


def test_running_postgres_answers_select_1() -> None:
    with running_postgres() as server:
        assert query(server, "select 1") == [(1,)]


def _singer_stream(n: int) -> str:
    """SCHEMA + n RECORDs (nested object, array, date-time) + STATE, as Singer JSON lines."""
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": ["string", "null"]},
            "updatedAt": {"type": ["string", "null"], "format": "date-time"},
            "emailAddress": {
                "type": ["object", "null"],
                "properties": {"value": {"type": "string"}, "type": {"type": "string"}},
            },
            "tags": {
                "type": ["array", "null"],
                "items": {"type": "object", "properties": {"title": {"type": "string"}}},
            },
        },
    }
    messages: list[dict[str, object]] = [
        {"type": "SCHEMA", "stream": "candidates", "schema": schema, "key_properties": ["id"]}
    ]
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for i in range(n):
        record = {
            "id": str(uuid.UUID(int=i + 1)),
            "name": f"Candidate {i + 1}",
            "updatedAt": (start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "emailAddress": {"value": f"c{i + 1}@example.com", "type": "Work"},
            "tags": [{"title": "a, b"}, {"title": f"tag {i + 1}"}],
        }
        messages.append({"type": "RECORD", "stream": "candidates", "record": record})
    state = {"bookmarks": {"candidates": {"replication_key_value": "2024-01-02T00:00:00Z"}}}
    messages.append({"type": "STATE", "value": state})
    return "".join(json.dumps(m) + "\n" for m in messages)


def _meltano() -> str:
    """The meltano executable of the running interpreter's venv, else the one on PATH."""
    beside = Path(sys.executable).parent / "meltano"
    found = str(beside) if beside.exists() else shutil.which("meltano")
    if found is None:
        pytest.fail("meltano is not installed: install the dev dependencies (meltano==4.4.1)")
    return found


def _invoke_target_postgres(server: PostgresServer, stream: str) -> subprocess.CompletedProcess:
    """Pipe a Singer stream into `meltano invoke target-postgres`, configured by environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_POSTGRES_")}
    env.update(
        MELTANO_PROJECT_ROOT=str(REPO),
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        MELTANO_HUB_URL="http://127.0.0.1:9",  # any Hub lookup fails at once
        TARGET_POSTGRES_HOST=server.host,
        TARGET_POSTGRES_PORT=str(server.port),
        TARGET_POSTGRES_USER=server.user,
        # target-postgres 0.8.1 insists on a password; the test server trusts any.
        TARGET_POSTGRES_PASSWORD="unused",
        TARGET_POSTGRES_DATABASE=server.database,
    )
    return subprocess.run(
        [_meltano(), "invoke", "--no-install", "target-postgres"],
        input=stream,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )


@pytest.mark.postgres
def test_target_postgres_under_meltano_loads_every_record() -> None:
    if not TARGET_EXE.exists():
        pytest.fail(
            f"{TARGET_EXE.relative_to(REPO)} is missing: run `meltano install` in the repo first"
        )
    with running_postgres() as server:
        result = _invoke_target_postgres(server, _singer_stream(N_RECORDS))
        assert result.returncode == 0, result.stderr[-5000:]
        assert json.loads(result.stdout.strip().splitlines()[-1]) == {
            "bookmarks": {"candidates": {"replication_key_value": "2024-01-02T00:00:00Z"}}
        }
        rows = query(server, "select count(*), count(distinct id) from ashby.candidates")
        assert rows == [(N_RECORDS, N_RECORDS)]
        first = query(
            server,
            """select "emailAddress"->>'value', tags[1]->>'title', tags[2]->>'title',
                      "updatedAt"::text
               from ashby.candidates where name = 'Candidate 1'""",
        )
        assert first == [("c1@example.com", "a, b", "tag 1", "2024-01-01 00:00:00")]
