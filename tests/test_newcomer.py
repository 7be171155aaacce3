"""A newcomer's first hour (issue 24): every bad input is one line, no secret is ever shown,
typos warn by name, ``--test`` tells the truth, and connection failures are fast."""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from ashby_emulator import Emulator
from conftest import ROOT, SECRET_KEY, run_tap, tap_config

from tap_ashby import client as client_mod
from tap_ashby.client import CONNECT_RETRIES, MAX_BACKOFF_SECONDS, AshbyClient, Call
from tap_ashby.settings import CONFIG_SCHEMA
from tap_ashby.throttle import RequestBudget
from tap_ashby.validate import schema_problems

TAP_BIN = str(Path(sys.executable).with_name("tap-ashby"))  # the console script itself
FAKE_SECRET = "ashby-FAKE-secret-7c1e9a5b3d"
DIGIT_SECRET = 918273645546372819  # an all-digit key, as YAML would parse it


def closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def own_lines(stderr: str) -> list[str]:
    """stderr lines that are not the SDK's routine INFO log lines."""
    return [line for line in stderr.splitlines() if line.strip() and "| INFO" not in line]


def run_cli(
    args: list[str], cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TAP_BIN, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )


def without_extras(tmp: Path) -> dict[str, str]:
    """An environment in which the tap's optional extras are not installed (the dev venv
    has s3fs for the s3:// tests): a sitecustomize hides them from import."""
    site = tmp / "no-extras"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\nfor name in ('s3fs', 'gcsfs', 'adlfs'):\n    sys.modules[name] = None\n"
    )
    return {"PYTHONPATH": str(site)}


def assert_secret_free(proc: subprocess.CompletedProcess, *secrets: str) -> None:
    output = proc.stdout + proc.stderr
    for secret in secrets:
        assert secret not in output
        assert base64.b64encode(f"{secret}:".encode()).decode() not in output


# -- the table: (what to write, extra arguments, what the one line must say) ------------------
Setup = Callable[[Path, Emulator], list[str]]


def config_file(content: str | bytes) -> Setup:
    def setup(tmp: Path, emu: Emulator) -> list[str]:
        path = tmp / "config.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["--config", str(path)]

    return setup


def config(changes: dict[str, Any], *extra: str, base: bool = True) -> Setup:
    """A config for the emulator (fake key unless changed), plus ``extra`` arguments."""

    def setup(tmp: Path, emu: Emulator) -> list[str]:
        cfg = {**tap_config(emu, api_key=FAKE_SECRET), **changes} if base else dict(changes)
        cfg = {k: v for k, v in cfg.items() if v is not None}
        (tmp / "config.json").write_text(json.dumps(cfg))
        return ["--config", str(tmp / "config.json"), *extra]

    return setup


def with_file(flag: str, content: str | bytes, changes: dict[str, Any] | None = None) -> Setup:
    def setup(tmp: Path, emu: Emulator) -> list[str]:
        path = tmp / f"{flag.strip('-')}.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return [*config(changes or {})(tmp, emu), flag, str(path)]

    return setup


def refused(*extra: str) -> Setup:
    def setup(tmp: Path, emu: Emulator) -> list[str]:
        port = closed_port()
        return config({"base_url": f"http://127.0.0.1:{port}"}, *extra)(tmp, emu)

    return setup


def denied_key(*extra: str) -> Setup:
    def setup(tmp: Path, emu: Emulator) -> list[str]:
        emu.add_key(FAKE_SECRET, {"candidatesRead"})
        return config({}, *extra)(tmp, emu)

    return setup


def valid_key(changes: dict[str, Any], *extra: str) -> Setup:
    def setup(tmp: Path, emu: Emulator) -> list[str]:
        emu.add_key(FAKE_SECRET, set(emu.api.keys[emu.key]))
        return config(changes, *extra)(tmp, emu)

    return setup


CASES: dict[str, tuple[Setup, list[str]]] = {
    # files
    "config missing": (lambda tmp, emu: ["--config", str(tmp / "nope.json")], ["nope.json"]),
    "config not JSON": (config_file("{api_key: 1"), ["config file", "not valid JSON"]),
    "config not UTF-8": (config_file(b"\xff\xfe{}"), ["config file", "UTF-8"]),
    "config not an object": (config_file("[1, 2]"), ["config file", "JSON object"]),
    "state missing": (
        lambda tmp, emu: [*config({})(tmp, emu), "--state", str(tmp / "gone.json")],
        ["state file", "gone.json"],
    ),
    "state not JSON": (with_file("--state", "{nope"), ["state file", "not valid JSON"]),
    "state not UTF-8": (with_file("--state", b"\xff{}"), ["state file", "UTF-8"]),
    "catalog not JSON": (with_file("--catalog", "{nope"), ["catalog file", "not valid JSON"]),
    "catalog not a catalog": (with_file("--catalog", "{}"), ["catalog file", "--discover"]),
    # types and values
    "key missing": (config({"api_key": None}), ["api_key", "missing"]),
    "key empty": (config({"api_key": ""}), ["api_key"]),
    "key as a list": (config({"api_key": [FAKE_SECRET]}), ["api_key", "must be a string"]),
    "key as a number": (config({"api_key": DIGIT_SECRET}), ["api_key", "must be a string"]),
    "key as an object": (config({"api_key": {"k": FAKE_SECRET}}), ["api_key", "string"]),
    "page_size too big": (config({"page_size": 500}), ["page_size", "at most 100"]),
    "page_size a word": (config({"page_size": "ten"}), ["page_size", "whole number"]),
    "bad option": (config({"on_missing_permission": "ignore"}), ["on_missing_permission"]),
    "bad start_date": (config({"start_date": "last tuesday"}), ["start_date"]),
    "http to a remote host": (config({"base_url": "http://ashby.example.com"}), ["https://"]),
    "not a URL": (config({"base_url": "ftp//nowhere"}), ["base_url"]),
    # missing extras, before any record
    "s3 without s3fs": (config({"ledger_uri": "s3://b/x"}), ["pip install 'tap-ashby[s3]'"]),
    "gs without gcsfs": (config({"ledger_uri": "gs://b/x"}), ["pip install 'tap-ashby[gcs]'"]),
    "az without adlfs": (config({"ledger_uri": "az://b/x"}), ["pip install 'tap-ashby[azure]'"]),
    # stream maps
    "map does not parse": (
        valid_key({"stream_maps": {"candidates": {"name": "md5(name"}}}),
        ["stream_maps.candidates.name", "md5(name"],
    ),
    "map names an unknown field": (
        valid_key({"stream_maps": {"candidates": {"name": "md5(nmae)"}}}),
        ["stream_maps.candidates.name", "nmae", "did you mean 'name'"],
    ),
    # the network and the key
    "refused port": (refused(), ["127.0.0.1:", "connection refused", "/candidate.list"]),
    "wrong key": (config({}), ["HTTP 403", "api_key"]),
    "--test, wrong key": (config({}, "--test"), ["HTTP 403"]),
    "--test, refused port": (refused("--test"), ["connection refused"]),
    "--test, denied permission": (denied_key("--test"), ["permission", "--test"]),
    "--test, key as a number": (config({"api_key": DIGIT_SECRET}, "--test"), ["api_key"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_bad_input_is_one_line(tmp_path: Path, emulator: Emulator, case: str) -> None:
    setup, mentions = CASES[case]
    args = setup(tmp_path, emulator)
    emulator.stats.reset()
    extras = case.endswith(("without s3fs", "without gcsfs", "without adlfs"))
    proc = run_cli(args, tmp_path, env=without_extras(tmp_path) if extras else None)
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = own_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-3000:]
    for mention in mentions:
        assert mention in lines[0], lines[0]
    assert_secret_free(proc, FAKE_SECRET, str(DIGIT_SECRET), SECRET_KEY)
    if case in BEFORE_ANY_REQUEST:
        assert emulator.stats.snapshot()["total"] == 0


BEFORE_ANY_REQUEST = {  # settings are refused before the tap calls Ashby
    name for name in CASES if name.startswith(("key ", "page_size", "bad ", "s3 ", "gs ", "az "))
}


def test_a_secret_of_any_type_is_never_echoed() -> None:
    """Validation errors name the setting and the expected type, never a secret's value."""
    schema = {**CONFIG_SCHEMA, "properties": {**CONFIG_SCHEMA["properties"]}}
    for value in (DIGIT_SECRET, [FAKE_SECRET], {"k": FAKE_SECRET}, 1.5, True):
        problems = schema_problems({"api_key": value}, schema)
        assert problems and all("api_key" in p and "must be" in p for p in problems)
        assert not [p for p in problems if FAKE_SECRET in p or str(DIGIT_SECRET) in p]
    shown = schema_problems({"api_key": "k", "page_size": 500}, schema)
    assert shown == [
        "page_size must be at most 100 (got 500): fix page_size in the config "
        "(or TAP_ASHBY_PAGE_SIZE)"
    ]  # an ordinary setting's value is shown: it helps


# -- typos: warnings, and the run goes on -------------------------------------------------------
def test_typos_warn_by_name_and_the_run_goes_on(tmp_path: Path, emulator: Emulator) -> None:
    cfg = tap_config(
        emulator, page_sise=5, stream_maps={"candidatez": {"name": None}, "departments": {}}
    )
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    catalog = json.loads(run_cli(["--config", "config.json", "--discover"], tmp_path).stdout)
    keep = [e for e in catalog["streams"] if e["tap_stream_id"] == "departments"]
    for meta in keep[0]["metadata"]:
        if meta["breadcrumb"] == []:
            meta["metadata"]["selected"] = True
    typo = json.loads(json.dumps(keep[0]))
    typo["tap_stream_id"] = typo["stream"] = "departmnts"
    (tmp_path / "catalog.json").write_text(json.dumps({"streams": [*keep, typo]}))
    proc = run_cli(["--config", "config.json", "--catalog", "catalog.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [line for line in proc.stderr.splitlines() if "| WARNING" in line]
    expected = {
        "'page_sise'": "did you mean 'page_size'?",
        "'candidatez'": "did you mean 'candidates'?",
        "'departmnts'": "did you mean 'departments'?",
    }
    for name, hint in expected.items():
        named = [line for line in warnings if name in line]
        assert len(named) == 1 and hint in named[0], warnings
    assert '"stream":"departments"' in proc.stdout.replace(" ", "")  # the run went on


def test_sdk_settings_are_not_typos(tmp_path: Path, emulator: Emulator) -> None:
    """The SDK's own settings (appended to the tap's schema) are known settings."""
    cfg = tap_config(
        emulator,
        stream_maps={},
        stream_map_config={},
        flattening_enabled=False,
        flattening_max_depth=1,
        faker_config={},
        batch_config=None,
        _comment="keys starting with _ are comments",
    )
    cfg = {k: v for k, v in cfg.items() if v is not None}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    proc = run_cli(["--config", "config.json", "--discover"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "unknown setting" not in proc.stderr


# -- --test -------------------------------------------------------------------------------------
def test_test_mode_against_a_healthy_account_is_clean(tmp_path: Path, emulator: Emulator) -> None:
    (tmp_path / "config.json").write_text(json.dumps(tap_config(emulator)))
    proc = run_cli(["--config", "config.json", "--test"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert own_lines(proc.stderr) == []  # no ERROR (nor WARNING) lines at all
    records = [json.loads(x) for x in proc.stdout.splitlines() if '"RECORD"' in x]
    assert len({r["stream"] for r in records}) > 20  # it did read the streams


# -- connection refused: fast, by the schedule rather than the clock -----------------------------
def test_a_refused_connection_gives_up_within_30_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default settings and the jitter at its maximum, a refused connection is
    tried 1 + CONNECT_RETRIES times and the waits add up to well under 30 s."""
    slept: list[float] = []
    monkeypatch.setattr(RequestBudget, "wait", lambda self, seconds: slept.append(seconds))
    monkeypatch.setattr(client_mod, "random", SimpleNamespace(uniform=lambda a, b: b))
    defaults = {k: v.get("default") for k, v in CONFIG_SCHEMA["properties"].items()}
    cfg = {**defaults, "api_key": FAKE_SECRET, "base_url": f"http://127.0.0.1:{closed_port()}"}
    client = AshbyClient(cfg, RequestBudget(0, 1), logging.getLogger("test"))
    with pytest.raises(requests.ConnectionError) as info:
        client.post(Call("candidate.list"), {}, owner="candidates")
    assert client.requests["candidates"] == 1 + CONNECT_RETRIES
    assert sum(slept) < 30 and len(slept) == CONNECT_RETRIES
    assert client_mod.cannot_connect(info.value)
    line = client_mod.unreachable(info.value, cfg["base_url"], cfg)
    assert cfg["base_url"].split("//")[1] in line and "/candidate.list" in line


def test_the_default_backoff_never_exceeds_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "random", SimpleNamespace(uniform=lambda a, b: b))
    base = CONFIG_SCHEMA["properties"]["retry_base_delay_ms"]["default"] / 1000
    retries = CONFIG_SCHEMA["properties"]["max_retries"]["default"]
    waits = [client_mod.backoff_seconds(n, base, None, False) for n in range(1, retries + 1)]
    assert max(waits) == MAX_BACKOFF_SECONDS  # reached, and the jitter did not push past it


# -- the README's commands, the example config and the paths --------------------------------------
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def bash_lines(text: str) -> list[str]:
    """The commands of the ```bash blocks of ``text``, comments removed."""
    lines, inside = [], False
    for raw in text.splitlines():
        if raw.startswith("```"):
            inside = raw.strip() == "```bash"
            continue
        command = raw.split("  #")[0].strip()
        if inside and command and not command.startswith("#"):
            lines.append(command)
    return lines


SET_UP_ELSEWHERE = {
    "make install",  # what the test session already did
    "source .venv/bin/activate",  # the test puts .venv/bin first on PATH instead
}


def test_using_it_commands_run_as_written(tmp_path: Path, emulator: Emulator) -> None:
    """Every command in "Using it" runs, in order, against the emulator: the example config is
    copied as the README says, and only its api_key and base_url are filled in."""
    commands = bash_lines(section("Using it"))
    run = [c for c in commands if c not in SET_UP_ELSEWHERE]
    assert any(c.startswith("tap-ashby") for c in run) and "make install" in commands
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }
    (tmp_path / "config.example.json").write_bytes((ROOT / "config.example.json").read_bytes())
    for command in run:
        if command.startswith(("meltano ", "export ")):
            continue  # the Meltano project commands: test_meltano_lines_match_the_project
        proc = subprocess.run(
            command,
            check=False,
            shell=True,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-2000:]}"
        if command.startswith("cp config.example.json"):
            example = json.loads((tmp_path / "config.json").read_text())
            example.update(api_key=emulator.key, base_url=emulator.url, requests_per_minute=0)
            (tmp_path / "config.json").write_text(json.dumps(example))
    assert (tmp_path / "catalog.json").exists()


def test_meltano_lines_match_the_project() -> None:
    """The paths the README gives are the ones meltano.yml and the demo use."""
    meltano_yml = (ROOT / "meltano.yml").read_text()
    demo = (ROOT / "scripts" / "demo.py").read_text()
    assert "${MELTANO_PROJECT_ROOT}/output/warehouse.duckdb" in meltano_yml
    assert '"output" / "demo.duckdb"' in demo
    using = section("Using it")
    assert "output/warehouse.duckdb" in using and "output/demo.duckdb" in README
    assert ".venv/bin" in using and "config.example.json" in using
    for command in bash_lines(using):
        if command.startswith("meltano run"):
            plugins = command.split()[2:4]
            assert all(f"- name: {p}\n" in meltano_yml for p in plugins), command


def test_the_example_config_is_valid_and_names_only_real_settings() -> None:
    example = json.loads((ROOT / "config.example.json").read_text())
    assert set(example) <= set(CONFIG_SCHEMA["properties"])
    assert "api_key" in example


def pii_map() -> dict[str, Any]:
    """The stream map the README shows to drop personal data."""
    block = section("Using it").split("```json", 1)[1].split("```", 1)[0]
    return json.loads(block)["stream_maps"]


PERSONAL = (
    "name",
    "primaryEmailAddress",
    "emailAddresses",
    "primaryPhoneNumber",
    "phoneNumbers",
    "socialLinks",
    "profileUrl",
    "resumeFileHandle",
    "fileHandles",
    "customFields",
    "location",
    "position",
    "company",
    "school",
    "creditedToUser",
    "timezone",
)


def test_the_readme_pii_map_really_drops_personal_data(tmp_path: Path, emulator: Emulator) -> None:
    table = emulator.org.tables["candidates"]
    people = [table.get(i) for i in table.live_indices()]
    emails = {e["value"] for p in people for e in p.get("emailAddresses") or []}
    phones = {e["value"] for p in people for e in p.get("phoneNumbers") or []}
    names = {p["name"] for p in people if p.get("name")}
    assert emails and phones and names  # the emulator's candidates do hold personal data
    run = run_tap(tmp_path, tap_config(emulator, stream_maps=pii_map()), select={"candidates"})
    assert run.returncode == 0, run.stderr[-2000:]
    records = run.records["candidates"]
    assert len(records) == len(people) and all(r["id"] for r in records)
    assert not [f for r in records for f in PERSONAL if f in r]
    schema = run.schemas["candidates"]["schema"]["properties"]
    assert not [f for f in PERSONAL if f in schema]
    leaked = [v for v in emails | phones | names if v in run.stdout]
    assert leaked == []
    # Every field that is left was judged not personal: a new schema field fails this test
    # until someone decides whether the README's map must drop it.
    assert set(schema) <= NOT_PERSONAL, sorted(set(schema) - NOT_PERSONAL)


NOT_PERSONAL = {
    "id",
    "createdAt",
    "updatedAt",
    "applicationIds",
    "tags",
    "source",
    "fraudStatus",
    "_sdc_deleted_at",
}


EXTERNAL_MESSAGES = {  # rows about other programs' messages
    "Another '…' pipeline is already running": "Meltano",
    "Beginning sync of 'candidates' in full_table mode": "singer-sdk",
}


def test_every_troubleshooting_row_names_a_message_the_tap_writes() -> None:
    """Each row's message is written by the tap's code (or is Meltano's or the SDK's): the
    longest literal piece of it must be in tap_ashby's source."""
    source = "\n".join(p.read_text() for p in (ROOT / "tap_ashby").glob("*.py"))
    rows = [line for line in section("Troubleshooting").splitlines() if line.startswith("| `")]
    assert len(rows) > 10
    for row in rows:
        for message in row.split("|")[1].split("`")[1::2]:
            if message in EXTERNAL_MESSAGES:
                continue
            pieces = [p for chunk in message.split("…") for p in chunk.split("<setting>")]
            literal = max((p.strip() for p in pieces), key=len)
            literal = literal.replace("host:port", "").replace("/candidate.list", "").strip()
            words = [w for w in literal.split() if w.isalpha() and len(w) > 3][:3]
            assert words and all(w in source for w in words), message


# -- the demo says what it reads and what it changes ---------------------------------------------
def load_demo() -> Any:
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_exported_key_alone_does_not_switch_the_demo(capsys: pytest.CaptureFixture) -> None:
    demo = load_demo()
    assert demo.choose_account({"TAP_ASHBY_API_KEY": FAKE_SECRET}) is False
    said = capsys.readouterr().out
    assert "emulator" in said and "requests_per_minute=0" in said and "ASHBY=real" in said
    assert FAKE_SECRET not in said


def test_the_real_account_needs_an_explicit_opt_in(capsys: pytest.CaptureFixture) -> None:
    demo = load_demo()
    assert demo.choose_account({"ASHBY": "real", "TAP_ASHBY_API_KEY": FAKE_SECRET}) is True
    said = capsys.readouterr().out
    assert "YOUR Ashby account" in said and "api.ashbyhq.com" in said
    with pytest.raises(SystemExit, match="TAP_ASHBY_API_KEY"):
        demo.choose_account({"ASHBY": "real"})
    with pytest.raises(SystemExit, match="ASHBY"):
        demo.choose_account({"ASHBY": "prod"})


# -- packaging: the Hub definition matches --about; the release build works offline -------------
def about() -> dict[str, Any]:
    out = subprocess.run(
        [TAP_BIN, "--about", "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def test_the_hub_definition_matches_about() -> None:
    import yaml  # noqa: PLC0415

    plugin = yaml.safe_load((ROOT / "plugin.yml").read_text())
    info = about()
    assert plugin["name"] == info["name"] == "tap-ashby"
    assert set(plugin["capabilities"]) == set(info["capabilities"])
    hub_required = {
        "about",
        "stream-maps",
        "schema-flattening",
        "state",
        "catalog",
        "discover",
        "structured-logging",
    }
    assert hub_required <= set(plugin["capabilities"])
    assert plugin["supported_python_versions"] == info["supported_python_versions"]
    assert plugin["settings_group_validation"] == [info["settings"]["required"]]
    assert "meltano_sdk" in plugin["keywords"]
    props = info["settings"]["properties"]
    assert [s["name"] for s in plugin["settings"]] == list(props)
    for setting in plugin["settings"]:
        spec = props[setting["name"]]
        assert {"kind", "label", "description", "sensitive"} <= set(setting), setting["name"]
        assert setting["sensitive"] == bool(spec.get("secret")), setting["name"]
        assert setting["description"] == " ".join(str(spec.get("description", "")).split())
    assert [s["name"] for s in plugin["settings"] if s["sensitive"]] == ["api_key"]


def test_the_hub_definition_is_generated() -> None:
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts" / "generate_docs.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.render_plugin() == (ROOT / "plugin.yml").read_text(), "run `make docs`"


def test_the_release_workflow_builds_inspects_and_publishes_on_a_tag() -> None:
    import yaml  # noqa: PLC0415

    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    triggers = flow[True] if True in flow else flow["on"]  # YAML 1.1 reads `on` as true
    assert triggers["push"]["tags"] == ["v*"]
    build_steps = " ".join(str(s.get("run", "")) for s in flow["jobs"]["build"]["steps"])
    assert "python -m build" in build_steps and "twine check" in build_steps
    publish = flow["jobs"]["publish"]
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["needs"] == "build" and "refs/tags/v" in publish["if"]
    uses = [s.get("uses", "") for s in publish["steps"]]
    assert any(u.startswith("pypa/gh-action-pypi-publish@") for u in uses)
    assert not [s for s in publish["steps"] if "password" in s.get("with", {})]  # no token


def test_sdist_and_wheel_build_offline_with_their_contents(tmp_path: Path) -> None:
    """The workflow's build step, offline: hatchling without build isolation."""
    code = (
        "import sys; from hatchling.build import build_sdist, build_wheel; "
        "print(build_sdist(sys.argv[1])); print(build_wheel(sys.argv[1]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    sdist_name, wheel_name = proc.stdout.split()
    with tarfile.open(tmp_path / sdist_name) as sdist:
        members = sdist.getnames()
    top = members[0].split("/")[0]
    for needed in ("README.md", "CHANGELOG.md", "LICENSE", "tap_ashby/tap.py", "schemas"):
        assert any(m == f"{top}/{needed}" or m.startswith(f"{top}/{needed}/") for m in members)
    assert not [m for m in members if m.split("/")[1] in ("tests", "emulator", "bench")]
    wheel = zipfile.ZipFile(tmp_path / wheel_name)
    names = wheel.namelist()
    assert "tap_ashby/schemas/candidates.json" in names and "tap_ashby/validate.py" in names
    meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = wheel.read(meta_name).decode()
    for field in ("Name: tap-ashby", "Requires-Python: >=3.10", "License-Expression: Apache-2.0"):
        assert field in metadata, field
    assert "Description-Content-Type: text/markdown" in metadata  # what twine check reads
    assert "## Using it" in metadata  # the README is the long description
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = wheel.read(entry).decode()
    assert "tap-ashby = tap_ashby.tap:main" in scripts
    assert "tap-ashby-emulator" not in scripts  # the emulator's own package provides it
