"""The secondary replica (BACKUP_SECONDARY_*, docs/second-replica.md): the Campfire guide's primary and
secondary buckets, with the real litestream 0.3.13 and two real SeaweedFS servers on loopback that do not
share credentials; the settings' errors; its lock; its continuity check; and 0.5.17's refusal.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from backupctl.errors import ExitCode
from tests.conftest import (
    ROOT,
    S3_KEY,
    S3_SECRET,
    S3Server,
    count_rows,
    free_port_base,
    insert_rows,
    launch_s3_server,
    make_db,
    run_cli,
    wait_for,
)

SECOND_KEY, SECOND_SECRET = "secondkey", "secondsecret-Do-Not-Leak-99"

# The Campfire guide's "Multiple Replicas" section, as it is written there.
GUIDE_YAML = """
dbs:
  - path: storage/db/production.sqlite3
    replicas:
      - type: s3
        bucket: primary-backup-bucket
        path: campfire-db
        region: us-east-1

      - type: s3
        bucket: secondary-backup-bucket
        path: campfire-db
        region: us-west-2
"""


# --------------------------------------------------------------------------- helpers


class OtherKeysServer(S3Server):
    """A SeaweedFS that knows only the secondary's access key: the primary's is refused there."""

    def client(self, key: str = SECOND_KEY, secret: str = SECOND_SECRET):  # noqa: ANN201 - boto3's client
        return super().client(key, secret)


def launch_other_keys_server(root: Path) -> OtherKeysServer:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    identities = {"identities": [{"name": "second", "credentials": [{"accessKey": SECOND_KEY, "secretKey": SECOND_SECRET}],
                                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}  # fmt: skip
    config = root / "s3.json"
    config.write_text(json.dumps(identities))
    for attempt in range(3):
        base = free_port_base()
        server = OtherKeysServer(f"http://127.0.0.1:{base}", base, root / "data", None, base, config)
        try:
            server.start()
            return server
        except RuntimeError:
            server.stop()
            if attempt == 2:
                raise
        except BaseException:
            server.stop()
            raise
    raise AssertionError("unreachable")


def write_env(folder: Path, **values: str) -> None:
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def status_doc(app: Path, *args: str) -> tuple[int, dict]:
    result = run_cli("status", "--json", *args, cwd=app)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def replica_verdicts(doc: dict) -> dict[str, str]:
    return {r["name"]: r["verdict"] for r in doc["databases"][0].get("replicas") or []}


def ids_are_whole(db: Path, expected: int) -> None:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        ids = [row[0] for row in con.execute("SELECT id FROM items ORDER BY id")]
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    assert ids == list(range(1, expected + 1)), f"{len(ids)} rows restored, {expected} committed"


def campfire_readme_env() -> str:
    """The README's `.env` for the Campfire guide's two buckets (the block under its heading)."""
    text = (ROOT / "README.md").read_text("utf-8")
    after = text.split("\n### Two buckets in two regions", 1)[1]
    block: list[str] = []
    for line in after.splitlines()[1:]:
        if line.startswith("    "):
            block.append(line[4:])
        elif block and line.strip():
            break
    return "\n".join(block) + "\n"


def replicas_of(config_text: str) -> list[dict]:
    return yaml.safe_load(config_text)["dbs"][0]["replicas"]


# --------------------------------------------------------------------------- settings and config


def test_the_readme_env_renders_the_campfire_guides_two_buckets(tmp_path: Path) -> None:
    app = tmp_path / "campfire"
    make_db(app / "storage" / "db" / "production.sqlite3")
    (app / ".env").write_text(campfire_readme_env())
    result = run_cli("setup", "--print", cwd=app)
    assert result.returncode == 0, result.stderr
    ours, guide = replicas_of(result.stdout), replicas_of(GUIDE_YAML)
    keys = ("type", "bucket", "path", "region")
    assert [{k: r[k] for k in keys} for r in ours] == [{k: r[k] for k in keys} for r in guide]
    assert [r["name"] for r in ours] == ["s3", "secondary"]  # the guide's, unnamed, would both be "s3"
    assert "endpoint" not in ours[1]  # AWS, as in the guide: nothing of the primary's but credentials
    # Its credentials (the primary's, inherited) only as references litestream expands from its environment.
    assert ours[1]["access-key-id"] == "${BACKUPCTL_SECONDARY_ACCESS_KEY_ID}"
    assert "access-key-id" not in ours[0]


def test_litestream_0313_reads_the_rendered_secondary(tmp_path: Path, litestream_bins) -> None:
    app = tmp_path / "campfire"
    make_db(app / "storage" / "db" / "production.sqlite3")
    (app / ".env").write_text(campfire_readme_env())
    # loopback endpoints, and no fast checks: litestream reads the config, nothing reaches the network
    loopback = {"BACKUP_ENDPOINT": "http://127.0.0.1:9", "BACKUP_SECONDARY_ENDPOINT": "http://127.0.0.1:9"}
    result = run_cli("setup", "--check", "--skip-checks", cwd=app, env=loopback)
    assert result.returncode == 0, result.stderr
    assert "secondary-backup-bucket/campfire-db" in result.stderr


def test_litestream_0517_refuses_a_second_replica_and_names_the_alternative(tmp_path: Path) -> None:
    app = tmp_path / "campfire"
    make_db(app / "storage" / "db" / "production.sqlite3")
    (app / ".env").write_text(campfire_readme_env().replace("LITESTREAM_VERSION=0.3.13", "LITESTREAM_VERSION=0.5.17"))
    (app / "litestream.yml").write_text("# the user's existing config\n")
    for argv in (["setup"], ["env", "--json"], ["start", "--background"]):
        result = run_cli(*argv, cwd=app)
        assert result.returncode == ExitCode.CONFIG, (argv, result.stderr)
        said = result.stdout + result.stderr
        for words in ("BACKUP_SECONDARY_REPLICA", "allows one per database", "bucket replication",
                      "S3 Cross-Region Replication", "status --replica-only", "docs/second-replica.md"):  # fmt: skip
            assert words in said, (argv, words, said)
        assert "Traceback" not in said
    assert (app / "litestream.yml").read_text() == "# the user's existing config\n"
    doc = (ROOT / "docs" / "second-replica.md").read_text()
    for words in ("Cross-Region Replication", "status --replica-only", "BACKUP_SECONDARY_REPLICA", "0.5"):
        assert words in doc, words
    # BACKUP_REPLICA's list, refused on 0.5 as before, names the same way out.
    (app / ".env").write_text("LITESTREAM_VERSION=0.5.17\nBACKUP_DATABASES=storage/db/production.sqlite3\n"
                              "BACKUP_REPLICA=s3,file\nBACKUP_BUCKET=b\n")  # fmt: skip
    listed = run_cli("setup", cwd=app)
    assert listed.returncode == ExitCode.CONFIG and "bucket replication" in listed.stderr, listed.stderr


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"BACKUP_SECONDARY_BUCKET": "b2"}, "BACKUP_SECONDARY_REPLICA: BACKUP_SECONDARY_BUCKET is set, but not the secondary"),
        ({"BACKUP_SECONDARY_REPLICA": "tape"}, "BACKUP_SECONDARY_REPLICA: 'tape' is not a replica type"),
        ({"BACKUP_SECONDARY_REPLICA": "s3,file"}, "BACKUP_SECONDARY_REPLICA: names one replica type, not a list"),
        ({"BACKUP_SECONDARY_REPLICA": "s3"}, "BACKUP_SECONDARY_BUCKET: a secondary s3 replica needs a bucket"),
        ({"BACKUP_SECONDARY_REPLICA": "s3", "BACKUP_SECONDARY_BUCKET": "b"}, "the same place as the primary"),
        ({"BACKUP_SECONDARY_REPLICA": "s3", "BACKUP_SECONDARY_BUCKET": "b", "BACKUP_SECONDARY_REGION": "us-west-2"},
         "the same place as the primary"),  # AWS bucket names are global: another region is the same bucket
        ({"BACKUP_SECONDARY_REPLICA": "r2", "BACKUP_SECONDARY_BUCKET": "b2"},
         "BACKUP_SECONDARY_R2_ACCOUNT_ID: R2 needs the Cloudflare account id to build its endpoint; set "
         "BACKUP_SECONDARY_R2_ACCOUNT_ID (shown in the R2 dashboard), or BACKUP_SECONDARY_ENDPOINT"),
        ({"BACKUP_SECONDARY_REPLICA": "s3", "BACKUP_SECONDARY_BUCKET": "b2", "BACKUP_SECONDARY_ENDPOINT": "ftp://x"},
         "BACKUP_SECONDARY_ENDPOINT: 'ftp://x' is not an http(s) URL"),
        ({"BACKUP_SECONDARY_REPLICA": "s3", "BACKUP_SECONDARY_BUCKET": "b2", "BACKUP_SECONDARY_PATH": "/abs"},
         "BACKUP_SECONDARY_PATH: '/abs' is an absolute path"),
        ({"BACKUP_SECONDARY_REPLICA": "s3", "BACKUP_SECONDARY_BUCKET": "b2", "BACKUP_SECONDARY_FORCE_PATH_STYLE": "maybe"},
         "BACKUP_SECONDARY_FORCE_PATH_STYLE: 'maybe' is not true or false"),
        ({"BACKUP_SECONDARY_REPLICA": "s3", "BACKUP_SECONDARY_BUCKET": "b2", "BACKUP_SECONDARY_SECRET_ACCESS_KEY": "it's"},
         "BACKUP_SECONDARY_SECRET_ACCESS_KEY: contains a quote or control character"),
        ({"BACKUP_SECONDARY_REPLICA": "sftp"}, "BACKUP_SECONDARY_SFTP_HOST: an sftp replica needs a host"),
        ({"BACKUP_SECONDARY_REPLICA": "file"}, "BACKUP_SECONDARY_LOCAL_DIR: the secondary replica is the same place"),
        ({"BACKUP_REPLICA": "s3,file", "BACKUP_SECONDARY_REPLICA": "file", "BACKUP_SECONDARY_LOCAL_DIR": "/tmp/x"},
         "a secondary replica cannot be added to BACKUP_REPLICA's list (s3,file)"),
    ],
)  # fmt: skip
def test_bad_secondary_settings_name_the_variable(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    app = tmp_path / "app"
    make_db(app / "db" / "app.db")
    primary = {"BACKUP_BUCKET": "b"} if env.get("BACKUP_SECONDARY_REPLICA") != "file" else {"BACKUP_LOCAL_DIR": "/tmp/x"}
    write_env(app, LITESTREAM_VERSION="0.3.13", BACKUP_DATABASES="db/app.db", **primary)
    result = run_cli("setup", "--print", cwd=app, env=env)
    assert result.returncode == ExitCode.CONFIG, result.stdout + result.stderr
    assert needle in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr and "it's" not in result.stderr


def test_secondary_secrets_stay_out_of_the_file_env_json_and_errors(tmp_path: Path) -> None:
    app = tmp_path / "app"
    make_db(app / "db" / "app.db")
    secret, key_id = "Secondary-Secret-Value-0451", "AKIDSECONDARY77"
    write_env(app, LITESTREAM_VERSION="0.3.13", BACKUP_DATABASES="db/app.db", BACKUP_BUCKET="first",
              BACKUP_ENDPOINT="http://127.0.0.1:9", BACKUP_ACCESS_KEY_ID="AKIDPRIMARY1",
              BACKUP_SECRET_ACCESS_KEY="Primary-Secret-Value-3141",
              BACKUP_SECONDARY_REPLICA="s3", BACKUP_SECONDARY_BUCKET="second",
              BACKUP_SECONDARY_ENDPOINT="http://127.0.0.1:9", BACKUP_SECONDARY_ACCESS_KEY_ID=key_id,
              BACKUP_SECONDARY_SECRET_ACCESS_KEY=secret)  # fmt: skip
    printed = run_cli("setup", "--print", cwd=app)
    assert printed.returncode == 0, printed.stderr
    assert "'${BACKUPCTL_SECONDARY_SECRET_ACCESS_KEY}'" in printed.stdout
    human, machine = run_cli("env", cwd=app), run_cli("env", "--json", cwd=app)
    rows = {r["setting"]: r for r in json.loads(machine.stdout)["settings"]}
    assert rows["secondary_secret_access_key"]["value"] == "****0451"
    assert rows["secondary_access_key_id"]["variable"] == "BACKUP_SECONDARY_ACCESS_KEY_ID"
    assert rows["secondary_bucket"]["value"] == "second"
    # the doctor probes the secondary's (closed) endpoint with its credentials: they are not shown either
    doctor = run_cli("doctor", "--json", cwd=app, timeout=120)
    doc = json.loads(doctor.stdout)
    checks = [c for c in doc["checks"] if c["name"] == "replica access"]
    assert [c["subject"].endswith("(secondary)") for c in checks] == [False, True], checks
    assert "BACKUP_ENDPOINT" in checks[0]["fix"] and "BACKUP_SECONDARY_ENDPOINT" in checks[1]["fix"], checks
    for result in (printed, human, machine, doctor):
        said = result.stdout + result.stderr
        assert secret not in said and key_id not in said and "Primary-Secret-Value-3141" not in said
    # a single-replica .env's `env --json` names no secondary setting at all (its output is as before)
    write_env(app, BACKUP_DATABASES="db/app.db", BACKUP_BUCKET="first")
    plain = json.loads(run_cli("env", "--json", cwd=app).stdout)
    assert not [r for r in plain["settings"] if r["setting"].startswith("secondary")]


def test_templates_ejected_before_the_secondary_are_refused_not_misrendered(tmp_path: Path) -> None:
    """Old templates name every replica by its type and write no credentials of its own: litestream would
    refuse two replicas named s3, or the secondary would write with the primary's keys."""
    app = tmp_path / "app"
    make_db(app / "db" / "app.db")
    write_env(app, LITESTREAM_VERSION="0.3.13", BACKUP_DATABASES="db/app.db", BACKUP_BUCKET="first",
              BACKUP_SECONDARY_REPLICA="s3", BACKUP_SECONDARY_BUCKET="second",
              BACKUP_SECONDARY_SECRET_ACCESS_KEY="s3cr3t-0ld")  # fmt: skip
    assert run_cli("templates", "eject", cwd=app).returncode == 0
    main = app / "backupctl-templates" / "litestream-0.3.yml.j2"
    main.write_text(main.read_text().replace("{{ r.name }}", "{{ r.kind }}"))
    result = run_cli("setup", "--print", cwd=app)
    assert result.returncode == ExitCode.CONFIG and "templates eject --force" in result.stderr, result.stderr
    assert "s3cr3t-0ld" not in result.stdout + result.stderr


def test_replica_option_names_what_there_is(tmp_path: Path) -> None:
    app = tmp_path / "app"
    make_db(app / "db" / "app.db")
    write_env(app, LITESTREAM_VERSION="0.3.13", BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(tmp_path / "r"))
    for argv in (["restore", "--replica", "secondary", "-o", str(tmp_path / "x.db")], ["drill", "--replica", "backup"],
                 ["verify", "--replica", "secondary"], ["status", "--replica-only", "--replica", "secondary"]):  # fmt: skip
        result = run_cli(*argv, cwd=app)
        assert result.returncode == ExitCode.NOT_FOUND, (argv, result.stderr)
        assert "in the configuration (configured: file)" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert "BACKUP_SECONDARY_REPLICA" in run_cli("verify", "--replica", "secondary", cwd=app).stderr
    usage = run_cli("status", "--replica", "primary", cwd=app)
    assert usage.returncode == ExitCode.USAGE and "--replica goes with --replica-only" in usage.stderr, usage.stderr


# --------------------------------------------------------------------------- two replicas for real


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.timeout(600)
def test_two_buckets_on_two_servers_with_their_own_credentials(tmp_path: Path, litestream_bins, nothing_left_running) -> None:
    """Both replicas receive the database; stopping one server makes `status` say so for that replica
    alone; with the primary's bucket deleted, `restore --replica secondary` is whole."""
    first = launch_s3_server(tmp_path / "s3-primary")
    second = launch_other_keys_server(tmp_path / "s3-secondary")
    app = tmp_path / "campfire"
    db = make_db(app / "storage" / "db" / "production.sqlite3")
    try:
        first.create_bucket("primary-backup-bucket")
        second.create_bucket("secondary-backup-bucket")
        write_env(
            app, LITESTREAM_VERSION="0.3.13", BACKUP_DATABASES="storage/db/production.sqlite3", BACKUP_SYNC_INTERVAL="1s",
            BACKUP_STALE_AFTER="10s", BACKUP_BUCKET="primary-backup-bucket", BACKUP_PATH="campfire-db",
            BACKUP_REGION="us-east-1", BACKUP_ENDPOINT=first.endpoint, BACKUP_ACCESS_KEY_ID=S3_KEY,
            BACKUP_SECRET_ACCESS_KEY=S3_SECRET, BACKUP_SECONDARY_REPLICA="s3",
            BACKUP_SECONDARY_BUCKET="secondary-backup-bucket", BACKUP_SECONDARY_PATH="campfire-db",
            BACKUP_SECONDARY_REGION="us-west-2", BACKUP_SECONDARY_ENDPOINT=second.endpoint,
            BACKUP_SECONDARY_ACCESS_KEY_ID=SECOND_KEY, BACKUP_SECONDARY_SECRET_ACCESS_KEY=SECOND_SECRET,
        )  # fmt: skip

        # doctor probes both, each with its own credentials (the primary's are refused by the second server)
        doctor = run_cli("doctor", "--json", cwd=app, timeout=120)
        checks = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "replica access"]
        assert [c["status"] for c in checks] == ["ok", "ok"], checks
        assert checks[1]["subject"] == f"s3://secondary-backup-bucket/campfire-db at {second.endpoint} (secondary)", checks

        started = run_cli("start", "--background", cwd=app, timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
        insert_rows(db, 200)

        # both replicas receive the database: each restores every row on its own
        def both_hold(rows: int) -> bool:
            code, doc = status_doc(app)
            return code == 0 and replica_verdicts(doc) == {"primary": "ok", "secondary": "ok"} and all(
                restored_rows(app, tmp_path, name) == rows for name in ("primary", "secondary")
            )

        wait_for(lambda: both_hold(200), 90, 1.0, "both replicas to hold the 200 rows")
        for client, bucket in ((first.client(), "primary-backup-bucket"), (second.client(), "secondary-backup-bucket")):
            assert client.list_objects_v2(Bucket=bucket, Prefix="campfire-db/").get("KeyCount", 0) > 0, bucket

        # one server stops: that replica alone is stale or in error, and the database with it
        second.stop()

        def secondary_down() -> tuple[int, dict] | None:
            code, doc = status_doc(app)
            verdicts = replica_verdicts(doc)
            return (code, doc) if verdicts.get("secondary") in ("stale", "error") else None

        code, doc = wait_for(secondary_down, 90, 1.0, "status to say the secondary replica is not ok")
        entry = doc["databases"][0]
        assert replica_verdicts(doc)["primary"] == "ok", doc
        assert entry["verdict"] == replica_verdicts(doc)["secondary"] and code in (ExitCode.STATUS_STALE, ExitCode.STATUS_ERROR)
        assert "secondary" in entry["reason"] and "secondary-backup-bucket" in entry["reason"], entry["reason"]
        piped = run_cli("status", cwd=app)  # piped: a row for each replica under its database's
        assert piped.returncode == code
        rows = {line.split("\t")[0]: line.split("\t")[1] for line in piped.stdout.splitlines()[1:]}
        assert rows["production.sqlite3 (primary)"] == "ok" and rows["production.sqlite3 (secondary)"] != "ok", piped.stdout

        # litestream dies during the outage: the one started in its place is confirmed by the primary alone,
        # and goes on writing it
        killed = doc["supervisor"]["litestream_pid"]
        os.kill(killed, signal.SIGKILL)
        insert_rows(db, 50)

        def replaced() -> bool:
            supervisor = status_doc(app)[1]["supervisor"]
            return supervisor["state"] == "running" and supervisor["litestream_pid"] not in (None, killed)

        wait_for(replaced, 120, 1.0, "a new litestream, confirmed while the secondary is down")
        wait_for(lambda: restored_rows(app, tmp_path, "primary") == 250, 90, 1.0, "the primary to take the 50 rows")

        # it comes back and catches up; then the primary's bucket is lost
        second.start()
        insert_rows(db, 100)
        wait_for(lambda: both_hold(350), 120, 1.0, "both replicas to hold the 350 rows after the outage")
        stopped = run_cli("stop", cwd=app, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        client = first.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="primary-backup-bucket"):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket="primary-backup-bucket", Key=obj["Key"])
        client.delete_bucket(Bucket="primary-backup-bucket")

        out = tmp_path / "from-secondary.db"
        restored = run_cli("restore", "--replica", "secondary", "-o", str(out), cwd=app, timeout=180)
        assert restored.returncode == 0, restored.stderr
        assert "secondary-backup-bucket" in restored.stderr
        ids_are_whole(out, 350)
        # litestream's own spelling reads the same replica
        spelled = run_cli("restore", "-replica", "secondary", "-o", str(tmp_path / "spelled.db"), cwd=app, timeout=180)
        assert spelled.returncode == 0, spelled.stderr
        ids_are_whole(tmp_path / "spelled.db", 350)
        gone = run_cli("restore", "--replica", "primary", "-o", str(tmp_path / "from-primary.db"), cwd=app, timeout=180)
        assert gone.returncode != 0 and not (tmp_path / "from-primary.db").exists()
        # a plain restore reads both (litestream 0.3 does): it fails on the lost one, and says how to go on
        plain = run_cli("restore", "-o", str(tmp_path / "plain.db"), cwd=app, timeout=180)
        assert plain.returncode != 0 and "--replica secondary" in plain.stderr, plain.stderr

        # from the replicas alone: the primary's is gone, the secondary holds it; --replica reads one
        code, doc = status_doc(app, "--replica-only")
        assert replica_verdicts(doc) == {"primary": doc["databases"][0]["replicas"][0]["verdict"], "secondary": "ok"}
        assert replica_verdicts(doc)["primary"] != "ok" and code != 0, doc
        code, doc = status_doc(app, "--replica-only", "--replica", "secondary")
        assert code == 0 and doc["databases"][0]["verdict"] == "ok" and "replicas" not in doc["databases"][0], doc
        assert doc["databases"][0]["destinations"] == [f"s3://secondary-backup-bucket/campfire-db at {second.endpoint}"]
        for result in (doctor, started, restored, piped):
            assert SECOND_SECRET not in result.stdout + result.stderr and S3_SECRET not in result.stdout + result.stderr
    finally:
        run_cli("stop", cwd=app, timeout=120)
        first.stop()
        second.stop()


def restored_rows(app: Path, tmp_path: Path, replica: str) -> int | None:
    """Rows in a restore of one replica (None when it does not restore now)."""
    out = tmp_path / f"probe-{replica}-{time.monotonic_ns()}.db"
    result = run_cli("restore", "--replica", replica, "-o", str(out), cwd=app, timeout=120)
    if result.returncode != 0:
        return None
    try:
        return count_rows(out)
    finally:
        out.unlink(missing_ok=True)


# --------------------------------------------------------------------------- continuity and locks


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_hole_in_the_secondary_alone_is_found_and_healed(tmp_path: Path, litestream_bins, nothing_left_running) -> None:
    """The continuity check covers each replica: a WAL segment taken out of the secondary's current
    generation fails verify, naming the secondary (the primary proven whole), and the supervisor's fresh
    snapshot heals it until a restore of the secondary alone holds every row."""
    app = tmp_path / "app"
    db = make_db(app / "db" / "app.db")
    primary, secondary = tmp_path / "primary", tmp_path / "secondary"
    write_env(app, LITESTREAM_VERSION="0.3.13", BACKUP_DATABASES="db/app.db", BACKUP_SYNC_INTERVAL="1s",
              BACKUP_LOCAL_DIR=str(primary), BACKUP_SECONDARY_REPLICA="file",
              BACKUP_SECONDARY_LOCAL_DIR=str(secondary))  # fmt: skip
    try:
        started = run_cli("start", "--background", cwd=app, timeout=120)
        assert started.returncode == 0, started.stderr
        # the supervisor's own check after the start comes first (its next one is an hour away): the hole is
        # planted after it, so that verify is what finds it
        wait_for(lambda: "continuity of app.db: " in run_cli("logs", cwd=app).stdout, 60, 0.5, "the check after start")
        for _ in range(4):  # a WAL segment each, in both replicas
            before = (len(segments(primary)), len(segments(secondary)))
            insert_wide_rows(db, 300)
            wait_for(lambda b=before: len(segments(primary)) > b[0] and len(segments(secondary)) > b[1], 60, 0.2,
                     "both replicas to take the rows")  # fmt: skip
        segments(secondary)[2].unlink()  # new pages of their own (wide rows): no later segment writes them again
        insert_wide_rows(db, 300)

        verified = run_cli("verify", cwd=app, timeout=180)
        said = verified.stdout + verified.stderr
        assert verified.returncode == ExitCode.VERIFY_FAILED, said
        assert "secondary broken" in said and "primary whole" in said, said

        def healed() -> bool:
            code, doc = status_doc(app)
            return code == 0 and restored_rows(app, tmp_path, "secondary") == 1500

        wait_for(healed, 120, 1.0, "the supervisor to heal the secondary with a fresh snapshot")
        records = json.loads((app / ".backupctl" / "continuity.json").read_text())
        assert records[f"{db}#secondary"]["verdict"] == "whole" and records[str(db)]["verdict"] == "whole", records
    finally:
        run_cli("stop", cwd=app, timeout=120)


def insert_wide_rows(db: Path, n: int) -> None:
    """n rows of 200 bytes in one transaction: each batch fills pages of its own (about 60 KB)."""
    con = sqlite3.connect(db, timeout=10)
    with con:
        con.executemany("INSERT INTO items (body) VALUES (?)", [("x" * 200,) for _ in range(n)])
    con.close()


def segments(replica_dir: Path) -> list[Path]:
    """The WAL segments of the newest generation of app.db's 0.3 replica in a folder, oldest first."""
    generations = sorted((replica_dir / "app.db" / "generations").glob("*"), key=lambda p: p.stat().st_mtime)
    return sorted((generations[-1] / "wal").glob("*.wal.lz4")) if generations else []


@pytest.mark.slow
def test_status_gives_a_broken_secondary_its_own_verdict(tmp_path: Path, litestream_bins, nothing_left_running) -> None:
    """A continuity verdict kept for one replica is that replica's in `status`, and the database's."""
    from backupctl.checks import continuity

    app = tmp_path / "app"
    db = make_db(app / "db" / "app.db", rows=10)
    write_env(app, LITESTREAM_VERSION="0.3.13", BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(tmp_path / "a"),
              BACKUP_SECONDARY_REPLICA="file", BACKUP_SECONDARY_LOCAL_DIR=str(tmp_path / "b"))  # fmt: skip
    for step in ("start", "stop"):  # replicated once, so each replica has a position to judge
        done = run_cli(*([step, "--background"] if step == "start" else [step]), cwd=app, timeout=120)
        assert done.returncode == 0, done.stderr
    now = time.time()
    proof = continuity.Proof(str(db), "app.db", continuity.BROKEN, "secondary broken: pages differ", now)
    proof.replicas = {
        "primary": continuity.Proof(str(db), "app.db", continuity.WHOLE, "equal", now).to_json(),
        "secondary": continuity.Proof(str(db), "app.db", continuity.BROKEN, "3 page(s) differ", now).to_json(),
    }
    continuity.record(app / ".backupctl", proof)
    code, doc = status_doc(app)
    replicas = {r["name"]: r for r in doc["databases"][0]["replicas"]}
    assert replicas["secondary"]["verdict"] == "broken" and "3 page(s) differ" in replicas["secondary"]["reason"]
    assert replicas["primary"]["verdict"] == "down"  # not replicating; whole, so not broken
    assert code == ExitCode.STATUS_BROKEN and doc["databases"][0]["verdict"] == "broken"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_secondary_has_its_own_lock(tmp_path: Path, litestream_bins, nothing_left_running) -> None:
    """No other project can replicate into this project's secondary while it runs."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    make_db(ours / "db" / "app.db")
    make_db(theirs / "db" / "app.db")
    shared = tmp_path / "shared"
    write_env(ours, LITESTREAM_VERSION="0.3.13", BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(tmp_path / "mine"),
              BACKUP_SECONDARY_REPLICA="file", BACKUP_SECONDARY_LOCAL_DIR=str(shared))  # fmt: skip
    write_env(theirs, LITESTREAM_VERSION="0.3.13", BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(shared))
    try:
        started = run_cli("start", "--background", cwd=ours, timeout=120)
        assert started.returncode == 0, started.stderr
        refused = run_cli("start", "--background", cwd=theirs, timeout=120)
        assert refused.returncode == ExitCode.CONFLICT, refused.stdout + refused.stderr
        assert str(shared / "app.db") in refused.stderr, refused.stderr
    finally:
        for folder in (theirs, ours):
            run_cli("stop", cwd=folder, timeout=120)
