"""Catalogue updates over HTTP: items added, changed and deleted while serving, on SQLite and PostgreSQL,
by the real app over a tiny bundle with item vectors and an RQ-VAE (the hashing encoder stands in for
MiniLM). Each test gets a fresh copy of the bundle and database: updates write both."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from app.inference import model_loading
from app.main import create_app
from semantic_ids.bundle import read_manifest
from semantic_ids.ids import SemanticId
from semantic_ids.overlay import OVERLAYS_DIR
from tests.helpers.postgres import reset_postgres_schema
from tests.helpers.service import metric_value, prepare_database, service_settings
from tests.helpers.tiny_bundle import TinyBundle, make_tiny_bundle
from tests.helpers.tiny_encoder import HashingEncoder

TOKEN = "s3cret-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NEW_FILM = {
    "title": "Zardoz Returns",
    "fields": {"year": 1999, "genres": ["Sci-Fi"], "director": "Quentin Marlowe", "cast": ["Ada Vance"]},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    return make_tiny_bundle(tmp_path_factory.mktemp("updatable"), rqvae=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalogue.db'}"
    url: str = request.getfixturevalue("postgres_database")
    reset_postgres_schema(url)
    return url


@pytest.fixture
def bundle(built: TinyBundle, tmp_path: Path, database_url: str) -> TinyBundle:
    """A copy of the tiny bundle of this test's own, its catalogue loaded into the test's database."""
    copy = tmp_path / "bundle"
    shutil.copytree(built.bundle_dir, copy)
    own = TinyBundle(copy, built.base_models_dir, built.manifest, built.items)
    prepare_database(database_url, own)
    return own


@pytest.fixture(autouse=True)
def hashing_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_loading, "encoder_for", lambda model, device: HashingEncoder())


def serve(bundle: TinyBundle, url: str, **overrides: Any) -> TestClient:
    settings = service_settings(
        bundle, url, **{"admin_token": TOKEN, "catalogue_check_interval_s": 0, **overrides}
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def client(bundle: TinyBundle, database_url: str) -> Iterator[TestClient]:
    with serve(bundle, database_url) as test_client:
        yield test_client


def put(client: TestClient, item_id: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.put(f"/items/{item_id}", json=body, headers=ADMIN if headers is None else headers)


def found(client: TestClient, query: str, mode: str, k: int = 10) -> list[str]:
    response = client.post("/recommend", json={"query": query, "k": k, "mode": mode})
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def test_updates_need_the_admin_token(client: TestClient, bundle: TinyBundle, database_url: str) -> None:
    assert put(client, "new1", NEW_FILM, headers={}).status_code == 401
    assert put(client, "new1", NEW_FILM, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.delete("/items/tt0000001").status_code == 401
    assert client.post("/items/batch", content=b"{}").status_code == 401
    assert client.get("/items/by-item-id/new1").status_code == 404  # nothing was added
    client.__exit__(None, None, None)
    with serve(bundle, database_url, admin_token=None) as read_only:
        refused = put(read_only, "new1", NEW_FILM)
        assert refused.status_code == 403 and "SEMID_ADMIN_TOKEN" in refused.json()["detail"]
        assert read_only.get("/items/by-item-id/new1").status_code == 404


def test_an_added_item_is_served_at_once_in_every_mode(client: TestClient, bundle: TinyBundle) -> None:
    response = put(client, "new1", NEW_FILM)
    assert response.status_code == 200, response.text
    body = response.json()
    outcome = body["items"][0]
    assert outcome["action"] == "added" and outcome["previous_semantic_id"] is None
    assert body["item_count"] == len(bundle.items) + 1 and body["overlay_version"] == 1
    semantic_id = outcome["semantic_id"]
    taken = {SemanticId.from_codes(item["semantic_id"]).compact for item in bundle.items}
    assert semantic_id not in taken  # unique
    read_manifest(bundle.bundle_dir).semantic_ids.scheme.parse(semantic_id)  # inside the ID space
    item = client.get(f"/items/{semantic_id}").json()
    assert item["item_id"] == "new1" and item["fields"]["director"] == "Quentin Marlowe"
    assert found(client, "Zardoz Returns", "hybrid")[0] == "new1"
    assert found(client, "Zardoz Returns", "lexical")[0] == "new1"
    # The model never saw it, but its ID is in the trie: constrained decoding can reach it.
    assert "new1" in found(client, "Zardoz Returns", "generative", k=len(bundle.items) + 1)
    metrics = client.get("/metrics").text
    assert 'semid_catalogue_changes_total{action="added"} 1.0' in metrics
    assert metric_value(metrics, "semid_overlay_items") == 1
    assert metric_value(metrics, "semid_catalogue_items") == len(bundle.items) + 1
    assert client.get("/readyz").json()["status"] == "ready"  # the database holds what is served


def test_a_restart_serves_the_overlay(client: TestClient, bundle: TinyBundle, database_url: str) -> None:
    semantic_id = put(client, "new1", NEW_FILM).json()["items"][0]["semantic_id"]
    assert client.delete(f"/items/{bundle.items[0]['item_id']}", headers=ADMIN).status_code == 200
    client.__exit__(None, None, None)
    with serve(bundle, database_url) as restarted:
        assert restarted.get("/readyz").json()["status"] == "ready"
        assert restarted.get(f"/items/{semantic_id}").json()["item_id"] == "new1"
        assert found(restarted, "Zardoz Returns", "hybrid")[0] == "new1"
        assert bundle.items[0]["item_id"] not in found(restarted, bundle.items[0]["title"], "hybrid", k=20)


def test_a_deleted_item_is_never_served_and_its_id_never_reused(
    client: TestClient, bundle: TinyBundle
) -> None:
    gone = bundle.items[3]
    gone_id = SemanticId.from_codes(gone["semantic_id"]).compact
    response = client.delete(f"/items/{gone['item_id']}", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["items"][0] == {
        "item_id": gone["item_id"],
        "action": "deleted",
        "semantic_id": None,
        "previous_semantic_id": gone_id,
        "reason": "its ID is retired",
    }
    for mode in ("hybrid", "generative", "lexical"):
        assert gone["item_id"] not in found(client, gone["title"], mode, k=len(bundle.items))
    assert client.get(f"/items/{gone_id}").status_code == 404
    # Fill every free ID of the tiny space (16 prefixes x 3): the retired one is never handed out.
    lines = [json.dumps({"item_id": f"fill{n}", "title": f"Filler film number {n}"}) for n in range(28)]
    filled = client.post("/items/batch", content="\n".join(lines).encode(), headers=ADMIN)
    assert filled.status_code == 200, filled.text
    given = {outcome["semantic_id"] for outcome in filled.json()["items"]}
    assert gone_id not in given and len(given) == 28
    full = put(client, "one-too-many", {"title": "No room"})
    assert full.status_code == 409 and full.json()["error"] == "id_space_full"


def test_a_change_keeps_or_moves_the_id_and_says_why(client: TestClient, bundle: TinyBundle) -> None:
    first = put(client, "new1", NEW_FILM).json()["items"][0]
    assert found(client, "Zardoz Returns", "hybrid")[0] == "new1"  # its row is now held in memory
    same = put(client, "new1", NEW_FILM).json()
    assert same["items"][0]["action"] == "unchanged" and same["overlay_version"] == 1  # nothing written
    retitled = put(client, "new1", {**NEW_FILM, "title": "Zardoz Returns Again"}).json()["items"][0]
    assert retitled["action"] == "updated" and retitled["previous_semantic_id"] == first["semantic_id"]
    if retitled["semantic_id"] == first["semantic_id"]:
        assert "still" in retitled["reason"]
    else:  # moved: the old ID is retired, never served again
        assert "moved" in retitled["reason"]
        assert client.get(f"/items/{first['semantic_id']}").status_code == 404
    response = client.post("/recommend", json={"query": "Zardoz Returns Again", "k": 10, "mode": "hybrid"})
    top = response.json()["items"][0]
    assert (top["item_id"], top["title"]) == ("new1", "Zardoz Returns Again")  # the row as changed


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"fields": {"year": 2001}}, "title"),
        ({"title": "X", "fields": {"year": "two thousand"}}, "fields.year: the catalogue holds number"),
        ({"title": "X", "fields": {"studio": {"name": "Y"}}}, "fields.studio"),
        ({"title": "X", "item_id": "other"}, "is not the path's"),
    ],
)
def test_bad_items_are_refused_and_change_nothing(
    client: TestClient, bundle: TinyBundle, body: Any, message: str
) -> None:
    before = client.get("/readyz").json()
    response = put(client, "new1", body)
    assert response.status_code == 422 and message in response.json()["detail"], response.text
    assert client.get("/items/by-item-id/new1").status_code == 404
    assert not (bundle.bundle_dir / OVERLAYS_DIR).exists()
    assert client.get("/readyz").json() == before


def test_a_bad_batch_changes_nothing(client: TestClient, bundle: TinyBundle) -> None:
    good = json.dumps({"item_id": "a1", "title": "First new film"})
    for body, status in [
        (f"{good}\n{good}".encode(), 422),  # the same item twice
        (f"{good}\n{{not json".encode(), 422),
        (f'{good}\n{{"item_id": "nope", "delete": true}}'.encode(), 404),
        (b"x" * (8 * 1024 * 1024 + 1), 413),
    ]:
        response = client.post("/items/batch", content=body, headers=ADMIN)
        assert response.status_code == status, response.text
    assert client.get("/items/by-item-id/a1").status_code == 404
    assert not (bundle.bundle_dir / OVERLAYS_DIR).exists()


def test_a_failing_database_leaves_the_old_catalogue_serving(client: TestClient, bundle: TinyBundle) -> None:
    put(client, "new1", NEW_FILM)
    overlay = sorted(path.name for path in (bundle.bundle_dir / OVERLAYS_DIR).rglob("*"))
    engine = client.app.state.service.repository.engine  # type: ignore[attr-defined]

    def refuse_inserts(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ITEMS"):
            raise OperationalError(statement, {}, Exception("injected: the disk is full"))

    event.listen(engine, "before_cursor_execute", refuse_inserts)
    try:
        response = put(client, "new2", {"title": "Never Stored"})
    finally:
        event.remove(engine, "before_cursor_execute", refuse_inserts)
    assert response.status_code == 503, response.text
    assert client.get("/items/by-item-id/new2").status_code == 404
    assert "new2" not in found(client, "Never Stored", "lexical", k=30)
    assert sorted(path.name for path in (bundle.bundle_dir / OVERLAYS_DIR).rglob("*")) == overlay
    assert client.get("/readyz").json()["status"] == "ready"
    assert put(client, "new2", {"title": "Stored This Time"}).status_code == 200  # and it recovers


def test_reads_under_concurrent_updates_never_fail(client: TestClient, bundle: TinyBundle) -> None:
    """Readers during a stream of adds and deletes: no 5xx, and every recommended item readable unless
    it was deleted (the trie and the database are swapped together, never half)."""
    from concurrent.futures import ThreadPoolExecutor

    deleted: set[str] = set()

    def write() -> None:
        for n in range(12):
            assert put(client, f"live{n}", {"title": f"Live film {n}"}).status_code == 200
            if n % 3 == 0:
                gone = bundle.items[n]["item_id"]
                deleted.add(gone)
                assert client.delete(f"/items/{gone}", headers=ADMIN).status_code == 200

    def read(n: int) -> list[str]:
        problems = []
        for m in range(10):
            mode = ("hybrid", "lexical", "generative")[(n + m) % 3]
            response = client.post("/recommend", json={"query": f"Live film {m}", "k": 5, "mode": mode})
            if response.status_code != 200:
                problems.append(f"{response.status_code} {response.text}")
                continue
            for item in response.json()["items"]:
                status = client.get(f"/items/{item['semantic_id']}").status_code
                if status != 200 and not (status == 404 and item["item_id"] in deleted):
                    problems.append(f"{item['item_id']}: {status}")
        return problems

    with ThreadPoolExecutor(5) as pool:
        writer = pool.submit(write)
        readers = [pool.submit(read, n) for n in range(4)]
        writer.result()
        assert [p for r in readers for p in r.result()] == []
    assert client.get("/readyz").json()["status"] == "ready"


def test_compaction_folds_the_overlay_into_the_bundle(
    client: TestClient, bundle: TinyBundle, database_url: str
) -> None:
    from app.catalogue_updates import compact_bundle
    from semantic_ids.overlay import read_overlay

    added = put(client, "new1", NEW_FILM).json()["items"][0]["semantic_id"]
    gone = SemanticId.from_codes(bundle.items[5]["semantic_id"]).compact
    client.delete(f"/items/{bundle.items[5]['item_id']}", headers=ADMIN)
    client.__exit__(None, None, None)
    manifest = compact_bundle(bundle.bundle_dir)
    assert manifest.catalogue.item_count == len(bundle.items) and manifest.bundle_id.endswith("+2")
    left = read_overlay(bundle.bundle_dir, manifest)
    assert left is not None and left.upserts == [] and [sid.compact for sid in left.retired] == [gone]
    with serve(bundle, database_url) as compacted:  # the database needed no reload
        assert compacted.get("/readyz").json()["status"] == "ready"
        assert compacted.get(f"/items/{added}").json()["item_id"] == "new1"
        assert found(compacted, "Zardoz Returns", "hybrid")[0] == "new1"
        again = put(compacted, "new2", {"title": "Another"}).json()["items"][0]["semantic_id"]
        assert again != gone


def test_add_items_from_the_command_line(
    bundle: TinyBundle, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: TestClient
) -> None:
    from typer.testing import CliRunner

    from app.cli import app as service_cli
    from semantic_ids import text_encoder

    client.__exit__(None, None, None)  # a stopped service: the command line changes bundle and database
    monkeypatch.setattr(text_encoder, "encoder_for", lambda model, device="cpu": HashingEncoder())
    changes = tmp_path / "changes.jsonl"
    lines = [
        {"item_id": "cli1", "title": "Added From The Shell"},
        {"item_id": bundle.items[1]["item_id"], "delete": True},
    ]
    changes.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    args = ["add-items", str(changes), "--bundle", str(bundle.bundle_dir), "--database-url", database_url]
    result = CliRunner().invoke(service_cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["counts"] == {"added": 1, "updated": 0, "deleted": 1, "unchanged": 0}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_id": "x"}\n')
    refused = CliRunner().invoke(
        service_cli,
        ["add-items", str(bad), "--bundle", str(bundle.bundle_dir), "--database-url", database_url],
    )
    assert refused.exit_code == 2 and "title" in refused.output
    with serve(bundle, database_url) as restarted:
        assert restarted.get("/readyz").json()["status"] == "ready"
        assert found(restarted, "Added From The Shell", "lexical")[0] == "cli1"
