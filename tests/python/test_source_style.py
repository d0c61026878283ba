"""The C++ sources follow the repository's .clang-format (Debian 12's clang-format 14), so a
reformat never hides a change inside a diff."""
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ["src", "apps", "tests", "bench"]
SUFFIXES = {".cc", ".h", ".cu", ".cuh"}


def cpp_sources():
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*")
                  if p.suffix in SUFFIXES and p.is_file())


def test_there_are_sources_to_check():
    names = {p.relative_to(ROOT).as_posix() for p in cpp_sources()}
    assert "src/u2/engine/recognizer.cc" in names and "apps/u2serve.cc" in names


def test_cpp_sources_are_clang_formatted():
    exe = shutil.which("clang-format")
    assert exe, "clang-format is missing: run ./scripts/setup.sh"
    proc = subprocess.run([exe, "--dry-run", "--Werror", *map(str, cpp_sources())],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    unformatted = sorted({line.split(":")[0] for line in proc.stderr.splitlines()
                          if ": error:" in line})
    assert proc.returncode == 0, ("not clang-formatted (run clang-format -i on them): "
                                  + ", ".join(unformatted))
