"""Regenerate ``generated/`` from ``protos/``.

Usage::

    python scripts/gen_protos.py           # rewrite generated/ from protos/
    python scripts/gen_protos.py --check   # exit 1 (with a summary) if generated/ has drifted

Compiles every ``.proto`` under ``protos/renove/`` with ``grpc_tools.protoc`` into
``*_pb2.py``, ``*_pb2_grpc.py`` and their mypy-protobuf stubs (``*.pyi``). The vendored
``protos/third_party`` (google/api, google/rpc) is only an include path: its Python modules
come from the ``googleapis-common-protos`` package at runtime.

``generated/`` is an import root: put it on ``sys.path`` and
``from renove.conexoes.v1 import whatsapp_service_pb2`` works.

The output depends only on the protos and the tool versions (grpcio-tools, mypy-protobuf),
so the same inputs always give the same bytes.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
THIRD_PARTY = PROTO_ROOT / "third_party"
OUR_PROTOS = PROTO_ROOT / "renove"
GENERATED = ROOT / "generated"

_INIT_TEXT = '"""Generated from protos/ by scripts/gen_protos.py. Do not edit."""\n'
_IGNORED = {"__pycache__"}


def _proto_files() -> list[str]:
    """Our .proto files, relative to protos/, in a stable order."""
    return sorted(p.relative_to(PROTO_ROOT).as_posix() for p in OUR_PROTOS.rglob("*.proto"))


def _plugin(name: str) -> str:
    """Path of a protoc plugin installed beside the running interpreter (or on PATH)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found; install the dev extras (mypy-protobuf)")
    return found


def generate(out_dir: Path) -> None:
    """Compile our protos into out_dir (which must exist and be empty)."""
    files = _proto_files()
    if not files:
        raise SystemExit("no .proto files under protos/renove")
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={THIRD_PARTY}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *files,
    ]
    result = subprocess.run(cmd, cwd=PROTO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"protoc failed with exit code {result.returncode}")
    # Package markers so `renove.conexoes.v1` imports as regular packages.
    for pkg in sorted({p.parent for p in out_dir.rglob("*.py")}):
        current = pkg
        while current != out_dir:
            init = current / "__init__.py"
            if not init.exists():
                init.write_text(_INIT_TEXT)
            current = current.parent
    (out_dir / "renove" / "py.typed").write_text("")


def _tree(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not (_IGNORED & set(p.relative_to(root).parts))
    }


def diff(expected: Path, actual: Path) -> list[str]:
    """Human-readable differences between a fresh generation and generated/."""
    want, have = _tree(expected), _tree(actual)
    problems = [f"missing: generated/{name}" for name in sorted(want - have)]
    problems += [f"unexpected: generated/{name}" for name in sorted(have - want)]
    problems += [
        f"differs: generated/{name}"
        for name in sorted(want & have)
        if not filecmp.cmp(expected / name, actual / name, shallow=False)
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if generated/ differs from a fresh generation",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gen_protos_") as tmp:
        fresh = Path(tmp)
        generate(fresh)
        if args.check:
            problems = diff(fresh, GENERATED) if GENERATED.exists() else ["generated/ is missing"]
            if problems:
                print("generated/ is out of date with protos/:", file=sys.stderr)
                for line in problems:
                    print(f"  {line}", file=sys.stderr)
                print("run: python scripts/gen_protos.py", file=sys.stderr)
                return 1
            print(f"generated/ is up to date ({len(_tree(fresh))} files)")
            return 0
        if GENERATED.exists():
            shutil.rmtree(GENERATED)
        shutil.copytree(fresh, GENERATED)
        print(f"wrote {len(_tree(GENERATED))} files to {GENERATED.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
