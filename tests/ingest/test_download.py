"""Downloads end to end against a real HTTP server on 127.0.0.1: caching, verification, retries, mirrors, API keys.

Nothing here reaches the internet: every registry used in a test points at a ThreadingHTTPServer started by the
test (port 0), and requests carry a short timeout so nothing can hang.
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import threading
import types
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pooch.core
import pytest
import sqlalchemy as sa

from matlake import db
from matlake.errors import ConfigError, InputError
from matlake.ingest import download, sources
from matlake.ingest.download import DownloadError, Release, RemoteFile, fetch_release
from matlake.ingest.framework import ingest

from . import toy_source

TIMEOUT_S = 5.0
CSV = b"id,formula,energy\nd-1,Fe2O3,-1.5\nd-2,NaCl,-2.1\nd-3,Xx2O,-1.0\n"
KEY = "s3cr3t-key-do-not-log"


class Server:
    """Serves ``routes`` (path -> list of behaviours, one per request; the last repeats) and records every request.

    Behaviours: ``("ok", body)``, ``("drop", body)`` (announces len(body) bytes, sends half, closes),
    ``("status", code)``, ``("redirect", url)``.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, list[tuple[str, object]]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path
                server.requests.append((path, dict(self.headers)))
                plan = server.routes.get(path, [("status", 404)])
                kind, arg = plan[min(server.count(path) - 1, len(plan) - 1)]
                if kind == "status":
                    self.send_error(arg)
                elif kind == "redirect":
                    self.send_response(302)
                    self.send_header("Location", arg)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(arg)))
                    self.end_headers()
                    self.wfile.write(arg if kind == "ok" else arg[: len(arg) // 2])
                    self.wfile.flush()
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.host = host
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.httpd.server_address[1]}"

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Loopback only, no proxies, no mirror or registry from the environment, and pooch's retry pauses skipped."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                download.MIRROR_ENV, download.REGISTRY_ENV, "MATLAKE_TEST_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(pooch.core, "time", types.SimpleNamespace(sleep=lambda s: None), raising=False)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def release_for(server: Server, *files: tuple[str, bytes], tag: str = "r1", **kwargs) -> Release:
    """A test release of source ``toy`` whose files are served at ``/files/<name>`` with the given content."""
    remotes = []
    for name, content in files:
        server.routes.setdefault(f"/files/{name}", [("ok", content)])
        remotes.append(RemoteFile(name, f"{server.base}/files/{name}", sha256=sha(content), size=len(content)))
    return Release("toy", tag, tuple(remotes), **kwargs)


def fetch(release: Release, tmp_path: Path, **kwargs) -> list[Path]:
    kwargs.setdefault("retries", 2)
    return fetch_release(release, cache_dir=tmp_path / "cache", timeout_s=TIMEOUT_S, progress=False, **kwargs)


def cache_folder(tmp_path: Path, release: Release) -> Path:
    return tmp_path / "cache" / release.source / release.tag


# ---- caching and verification -----------------------------------------------------------------------------------


def test_good_file_downloads_verifies_and_then_comes_from_the_cache(server, tmp_path):
    release = release_for(server, ("toy.csv", CSV))
    [path] = fetch(release, tmp_path)
    assert path == cache_folder(tmp_path, release) / "toy.csv"
    assert path.read_bytes() == CSV
    assert server.count("/files/toy.csv") == 1
    [again] = fetch(release, tmp_path)
    assert again == path and server.count("/files/toy.csv") == 1  # no request: verified cached copy


def test_default_cache_is_the_configured_download_folder(server, tmp_path):
    from matlake.config import get_settings

    release = release_for(server, ("toy.csv", CSV))
    [path] = fetch_release(release, timeout_s=TIMEOUT_S, progress=False)
    assert path == get_settings().resolved_cache_dir / "toy" / "r1" / "toy.csv"


def test_tampered_cached_copy_is_downloaded_again(server, tmp_path):
    release = release_for(server, ("toy.csv", CSV))
    [path] = fetch(release, tmp_path)
    path.write_bytes(CSV.replace(b"-1.5", b"-9.9"))
    [path] = fetch(release, tmp_path)
    assert path.read_bytes() == CSV and server.count("/files/toy.csv") == 2


def test_checksum_mismatch_is_refused_and_nothing_is_cached(server, tmp_path):
    release = release_for(server, ("toy.csv", CSV))
    corrupted = CSV.replace(b"NaCl", b"NaBr")  # same size, different bytes
    server.routes["/files/toy.csv"] = [("ok", corrupted)]
    with pytest.raises(DownloadError) as err:
        fetch(release, tmp_path)
    message = str(err.value)
    assert isinstance(err.value, InputError)
    assert "toy.csv" in message and "checksum mismatch" in message
    assert f"expected sha256 {sha(CSV)}" in message and f"got sha256 {sha(corrupted)}" in message
    assert server.count("/files/toy.csv") == 3  # 1 + 2 retries: corruption in transit may be transient
    assert list(cache_folder(tmp_path, release).iterdir()) == []  # no file, no temporary left behind


def test_size_mismatch_is_refused_naming_both_sizes(server, tmp_path):
    short = CSV[:-10]
    server.routes["/files/toy.csv"] = [("ok", short)]
    release = Release("toy", "r1", (RemoteFile("toy.csv", f"{server.base}/files/toy.csv",
                                               md5=hashlib.md5(CSV).hexdigest(), size=len(CSV)),))
    with pytest.raises(DownloadError, match=rf"toy.csv: size mismatch: expected {len(CSV)} bytes, got "
                                            rf"{len(short)} bytes"):
        fetch(release, tmp_path, retries=0)
    assert list(cache_folder(tmp_path, release).iterdir()) == []


def test_md5_only_entries_are_verified_with_md5(server, tmp_path):
    server.routes["/files/toy.csv"] = [("ok", CSV)]
    good = Release("toy", "r1", (RemoteFile("toy.csv", f"{server.base}/files/toy.csv",
                                            md5=hashlib.md5(CSV).hexdigest()),))
    [path] = fetch(good, tmp_path)
    assert path.read_bytes() == CSV
    bad = Release("toy", "r2", (replace(good.files[0], md5="0" * 32),))
    with pytest.raises(DownloadError, match=rf"expected md5 0{{32}}, got md5 {hashlib.md5(CSV).hexdigest()} "
                                            rf"\(sha256 {sha(CSV)}\)"):
        fetch(bad, tmp_path, retries=0)


# ---- network failures -------------------------------------------------------------------------------------------


def test_connection_dropped_every_time_is_retried_then_fails_cleanly(server, tmp_path):
    release = release_for(server, ("toy.csv", CSV))
    server.routes["/files/toy.csv"] = [("drop", CSV)]
    with pytest.raises(DownloadError, match=r"toy.csv: download from http://127\.0\.0\.1:\d+/files/toy.csv failed "
                                            r"after 3 attempt\(s\)"):
        fetch(release, tmp_path)
    assert server.count("/files/toy.csv") == 3
    assert list(cache_folder(tmp_path, release).iterdir()) == []


def test_connection_dropped_once_succeeds_on_the_retry(server, tmp_path):
    release = release_for(server, ("toy.csv", CSV))
    server.routes["/files/toy.csv"] = [("drop", CSV), ("ok", CSV)]
    [path] = fetch(release, tmp_path)
    assert path.read_bytes() == CSV and server.count("/files/toy.csv") == 2


def test_not_found_is_a_clear_error_without_retries(server, tmp_path):
    release = release_for(server, ("toy.csv", CSV))
    server.routes["/files/toy.csv"] = [("status", 404)]
    with pytest.raises(DownloadError, match=r"toy.csv: http://127\.0\.0\.1:\d+/files/toy.csv answered HTTP 404 "
                                            r"Not Found: the file is not at that address"):
        fetch(release, tmp_path)
    assert server.count("/files/toy.csv") == 1


def test_server_errors_are_retried(server, tmp_path):
    release = release_for(server, ("toy.csv", CSV))
    server.routes["/files/toy.csv"] = [("status", 503), ("ok", CSV)]
    [path] = fetch(release, tmp_path)
    assert path.read_bytes() == CSV and server.count("/files/toy.csv") == 2


def test_unreachable_host_fails_within_the_timeout(tmp_path):
    s = Server()
    base = s.base
    s.stop()  # nothing listens on that port any more
    release = Release("toy", "r1", (RemoteFile("toy.csv", f"{base}/files/toy.csv", sha256=sha(CSV)),))
    with pytest.raises(DownloadError, match=r"failed after 2 attempt\(s\): ConnectionError"):
        fetch(release, tmp_path, retries=1)


# ---- mirrors ----------------------------------------------------------------------------------------------------


def test_mirror_url_is_used_instead_of_the_original_host(server, tmp_path):
    release = release_for(server, ("toy.csv", CSV))
    mirror = Server()
    try:
        mirror.routes["/m/toy/r1/toy.csv"] = [("ok", CSV)]
        [path] = fetch(release, tmp_path, mirror=f"{mirror.base}/m/")
        assert path.read_bytes() == CSV
        assert mirror.count("/m/toy/r1/toy.csv") == 1 and server.requests == []
    finally:
        mirror.stop()


def test_mirror_from_the_environment_and_its_copies_are_verified_too(server, tmp_path, monkeypatch):
    release = release_for(server, ("toy.csv", CSV))
    mirror = Server()
    try:
        mirror.routes["/toy/r1/toy.csv"] = [("ok", CSV.replace(b"Fe2O3", b"Fe3O4"))]
        monkeypatch.setenv(download.MIRROR_ENV, mirror.base)
        with pytest.raises(DownloadError, match="checksum mismatch"):
            fetch(release, tmp_path, retries=0)
        assert mirror.count("/toy/r1/toy.csv") == 1 and server.requests == []
    finally:
        mirror.stop()


def test_mirror_folder_in_cache_layout_by_source_or_flat(server, tmp_path):
    contents = {"toy.csv": CSV, "other.csv": CSV + b"d-4,MgO,-3.0\n", "third.csv": CSV + b"d-5,CaO,-3.1\n"}
    release = release_for(server, *contents.items())
    folder = tmp_path / "mirror"
    (folder / "toy" / "r1").mkdir(parents=True)
    (folder / "toy" / "r1" / "toy.csv").write_bytes(contents["toy.csv"])
    (folder / "toy" / "other.csv").write_bytes(contents["other.csv"])
    (folder / "third.csv").write_bytes(contents["third.csv"])
    paths = fetch(release, tmp_path, mirror=folder)
    assert [p.read_bytes() for p in paths] == list(contents.values()) and server.requests == []
    assert all(p.parent == cache_folder(tmp_path, release) for p in paths)
    mask = os.umask(0o022)
    os.umask(mask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in paths)  # as any new file, not pooch's private 0600


def test_file_missing_from_the_mirror_folder_is_a_clear_error(server, tmp_path):
    release = release_for(server, ("toy.csv", CSV))
    (tmp_path / "mirror").mkdir()
    with pytest.raises(DownloadError, match=r"toy.csv: not in the mirror folder \(looked for .*mirror/toy/r1/toy.csv, "
                                            r".*mirror/toy/toy.csv, .*mirror/toy.csv\)"):
        fetch(release, tmp_path, mirror=f"file://{tmp_path / 'mirror'}")
    assert server.requests == []


# ---- API keys ---------------------------------------------------------------------------------------------------


def test_api_key_goes_to_the_registered_host_only_and_is_never_logged(server, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MATLAKE_TEST_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    release = release_for(server, ("toy.csv", CSV), api_key_env="MATLAKE_TEST_KEY", api_key_header="X-API-KEY")
    [path] = fetch(release, tmp_path)
    [(_, headers)] = server.requests
    assert headers.get("X-API-KEY") == KEY

    other = Server(host="localhost")  # another host name: a redirect there must not carry the key
    mirror = Server()
    try:
        other.routes["/elsewhere/toy2.csv"] = [("ok", CSV)]
        server.routes["/files/toy2.csv"] = [("redirect", f"{other.base}/elsewhere/toy2.csv")]
        redirected = Release("toy", "r2", (RemoteFile("toy2.csv", f"{server.base}/files/toy2.csv", sha256=sha(CSV)),),
                             api_key_env="MATLAKE_TEST_KEY")
        fetch(redirected, tmp_path)
        assert server.requests[-1][1].get("X-API-KEY") == KEY
        [(_, foreign)] = other.requests
        assert "X-API-KEY" not in foreign

        mirror.routes["/toy/r1/toy.csv"] = [("ok", CSV)]
        fetch(release, tmp_path / "fresh", mirror=mirror.base)
        [(_, mirrored)] = mirror.requests
        assert "X-API-KEY" not in mirrored
    finally:
        other.stop()
        mirror.stop()

    assert KEY not in caplog.text
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert KEY.encode() not in stored
    assert KEY not in repr(release) and KEY not in repr(download._http(release, "u", "u", 1.0, False).kwargs)


# ---- the registry -----------------------------------------------------------------------------------------------


def test_builtin_registry_covers_the_sources_with_verifiable_files():
    reg = download.builtin_registry()
    assert set(reg.releases) == {"mp", "oqmd", "experimental", "wbm", "taata", "supercon", "synthesis"}
    assert set(reg.releases) <= set(sources.SOURCE_MODULES)
    assert reg.get("mp").tag == "aviary-2021" and reg.get("wbm").tag == "2022.10.28"
    assert len(reg.get("taata").files) == 74 and all(f.name.endswith(".poscar") for f in reg.get("taata").files)
    assert {f.name for f in reg.get("mp", "aviary-2021").files} == {
        "aviary_mp-formation.csv", "aviary_mp-non-metals.csv", "aviary_cgcnn-example.csv"}
    for by_tag in reg.releases.values():
        assert sum(r.default for r in by_tag.values()) == 1
        for release in by_tag.values():
            for f in release.files:
                assert urlsplit(f.url).scheme == "https"
                assert urlsplit(f.url).hostname in ("raw.githubusercontent.com", "figshare.com")
                assert f.sha256 or f.md5


def test_unknown_release_and_source_list_what_is_known():
    with pytest.raises(InputError, match=r"unknown release 'nope' of source 'mp': registered releases are "
                                         r"aviary-2021, matbench-v0.1"):
        download.get_release("mp", "nope")
    with pytest.raises(InputError, match=r"no downloadable releases are registered for source 'icsd'"):
        download.get_release("icsd")


@pytest.mark.shared_data
def test_builtin_checksums_match_the_shared_copies_of_the_same_files():
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.exists():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    checked = 0
    for by_tag in download.builtin_registry().releases.values():
        for release in by_tag.values():
            for f in release.files:
                for copy in SHARED_DATA.rglob(f.name):
                    digest = download._digest(copy)
                    assert digest[f.algorithm] == f.expected_hash, f.name
                    assert f.size is None or digest["size"] == f.size, f.name
                    checked += 1
    assert checked == 98  # every built-in file except the four large figshare ones (md5 only)


def test_registry_file_adds_releases_and_bad_entries_are_config_errors(tmp_path, monkeypatch):
    good = tmp_path / "reg.toml"
    good.write_text(f'[toy."r9"]\ndefault = true\n[[toy."r9".files]]\nname = "toy.csv"\n'
                    f'url = "https://example.org/toy.csv"\nsha256 = "{sha(CSV)}"\nsize = {len(CSV)}\n')
    monkeypatch.setenv(download.REGISTRY_ENV, str(good))
    assert download.get_release("toy").files[0].size == len(CSV)
    assert download.get_release("mp").tag == "aviary-2021"  # built-ins stay
    for body, fragment in (
        ('[toy."r9"]\n[[toy."r9".files]]\nname = "toy.csv"\nurl = "https://example.org/x"\n', "no checksum"),
        (f'[toy."r9"]\n[[toy."r9".files]]\nname = "../x"\nurl = "https://e.org/x"\nsha256 = "{sha(CSV)}"\n',
         "one plain file name"),
        (f'[toy."r9"]\n[[toy."r9".files]]\nname = "x"\nurl = "ftp://e.org/x"\nsha256 = "{sha(CSV)}"\n',
         r"must be http\(s\)"),
        ('[toy."r9"]\n[[toy."r9".files]]\nname = "x"\nurl = "https://e.org/x"\nsha256 = "abc"\n', "hex digest"),
        ('[toy."r9"]\nfiles = []\n', "non-empty list"),
        ("[toy\n", "cannot read"),
    ):
        good.write_text(body)
        with pytest.raises(ConfigError, match=fragment):
            download.get_release("toy")


# ---- download, then ingest --------------------------------------------------------------------------------------


def test_downloaded_file_ingests_through_the_framework(server, tmp_path, duckdb_url):
    release = release_for(server, ("toy.csv", CSV))
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    [summary] = ingest(toy_source, fetch(release, tmp_path), engine=engine, release=release.tag)
    assert (summary.n_read, summary.n_inserted, summary.n_rejected) == (3, 2, 1)
    assert summary.release == "r1"


def test_cli_ingest_download_fetches_verifies_and_ingests(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from matlake.cli import app
    from matlake.config import get_settings

    monkeypatch.setitem(sources.SOURCE_MODULES, "toy", "tests.ingest.toy_source")
    monkeypatch.setenv("MATLAKE_TEST_KEY", KEY)
    server.routes["/files/toy.csv"] = [("ok", CSV)]
    registry_file = tmp_path / "registry.toml"
    registry_file.write_text(
        f'[toy."2024.01"]\ndefault = true\napi_key_env = "MATLAKE_TEST_KEY"\n[[toy."2024.01".files]]\n'
        f'name = "toy.csv"\nurl = "{server.base}/files/toy.csv"\nsha256 = "{sha(CSV)}"\nsize = {len(CSV)}\n')
    monkeypatch.setenv(download.REGISTRY_ENV, str(registry_file))
    runner = CliRunner()

    result = runner.invoke(app, ["ingest", "toy", "--download"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert (get_settings().resolved_cache_dir / "toy" / "2024.01" / "toy.csv").read_bytes() == CSV
    again = runner.invoke(app, ["ingest", "toy", "--download", "--release", "2024.01"])
    assert again.exit_code == 0, again.output
    assert server.count("/files/toy.csv") == 1  # the second run used the cache

    engine = sa.create_engine(get_settings().resolved_database_url)
    with engine.connect() as conn:
        tags = conn.execute(sa.text("SELECT tag FROM source_release")).scalars().all()
        runs = conn.execute(sa.text("SELECT n_read, n_inserted, n_unchanged, n_rejected, CAST(parameters AS VARCHAR) "
                                    "FROM ingest_run ORDER BY id")).all()
    engine.dispose()
    assert tags == ["2024.01"]
    assert [tuple(r[:4]) for r in runs] == [(3, 2, 0, 1), (3, 0, 2, 1)]
    assert all(KEY not in r[4] for r in runs)
    assert KEY not in result.output + again.output

    both = runner.invoke(app, ["ingest", "toy", "x.csv", "--download"])
    assert isinstance(both.exception, InputError) and "not both" in str(both.exception)
    unknown = runner.invoke(app, ["ingest", "toy", "--download", "--release", "nope"])
    assert isinstance(unknown.exception, InputError) and "registered releases are 2024.01" in str(unknown.exception)
