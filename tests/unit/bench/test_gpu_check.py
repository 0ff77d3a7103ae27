"""The GPU check's carrying: wheels packed into pieces come back whole, and what is missing is named."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench import gpu_check
from bench.gpu_check import MANIFEST, PART, CheckError, arrived, main, pack, unpack


def _files(folder: Path) -> list[Path]:
    folder.mkdir()
    sizes = {"a-1.0-py3-none-any.whl": 5000, "b-2.0-cp312-cp312-manylinux_2_17_x86_64.whl": 12345}
    files = []
    for number, (name, size) in enumerate(sizes.items()):
        path = folder / name
        path.write_bytes(bytes((number * 7 + i) % 251 for i in range(size)))
        files.append(path)
    return files


def test_pieces_are_at_most_the_bound_and_unpack_to_the_same_files(tmp_path: Path) -> None:
    files = _files(tmp_path / "wheels")
    folders = pack(files, tmp_path / "check", piece_bytes=4096)
    assert len(folders) > 4
    assert all((f / PART).stat().st_size <= 4096 for f in folders)
    unpacked = unpack(tmp_path / "check", tmp_path / "out")
    assert [p.name for p in unpacked] == [f.name for f in files]
    assert all(p.read_bytes() == f.read_bytes() for p, f in zip(unpacked, files, strict=True))


def test_a_missing_piece_is_named_and_nothing_is_unpacked(tmp_path: Path) -> None:
    folders = pack(_files(tmp_path / "wheels"), tmp_path / "check", piece_bytes=4096)
    (folders[2] / PART).unlink()
    assert arrived(tmp_path / "check")[1] == [3]
    with pytest.raises(CheckError, match=r"piece-3"):
        unpack(tmp_path / "check", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_damaged_piece_or_pieces_of_two_runs_are_refused(tmp_path: Path) -> None:
    check = tmp_path / "check"
    folders = pack(_files(tmp_path / "wheels"), check, piece_bytes=4096)
    part = folders[1] / PART
    good = part.read_bytes()
    part.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(CheckError, match="piece 2 is damaged"):
        unpack(check, tmp_path / "out")
    part.write_bytes(good)
    manifest = json.loads((folders[0] / MANIFEST).read_text())
    manifest["sha256"] = "0" * 64  # as if piece 1 came from another `prepare`
    (folders[0] / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckError, match="different `prepare` runs"):
        unpack(check, tmp_path / "out")


def test_the_pieces_step_without_any_piece_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["pieces"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("gpu_check: no piece under .gpu_check/") and "\n" not in error


def test_a_failing_step_exits_1_naming_its_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    def offline(*args: object) -> list[Path]:  # pip download with no registry in reach
        raise subprocess.CalledProcessError(1, ["python", "-m", "pip", "download", "--quiet", "fastapi"])

    monkeypatch.setattr(gpu_check, "download", offline)
    with pytest.raises(SystemExit) as stopped:
        main(["prepare"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "gpu_check: `python -m pip download --quiet ...` exited 1; its output is above"
    )
