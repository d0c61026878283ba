"""The 2-minute soak test (bench/soak.py --minutes 2): one u2serve under mixed traffic (offline
gRPC and HTTP, Triton sequences, WebSocket streams that finish, abort and vanish, ~10 %
malformed requests, bursts above capacity) with every answer checked against u2recognize. It
must pass: no crash and a clean exit, no wrong, lost, duplicated or unexpected answer, every
kind of good request answered, flat memory and file descriptors after warm-up. Takes about
2.5 minutes."""
import json
import subprocess
import sys

from conftest import BUILD_DIR, ROOT

GOOD_KINDS = ["grpc_offline", "http_offline", "http_openai", "sequence_unary", "sequence_stream",
              "sequence_abandoned", "ws_finish", "ws_abort", "ws_vanish", "burst_grpc", "burst_http", "burst_ws"]
MALFORMED_KINDS = ["bad_grpc", "bad_http", "bad_sequence", "bad_ws"]


def test_two_minute_soak(tmp_path):
    out = tmp_path / "soak"
    cmd = [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "2", "--build", str(BUILD_DIR),
           "--out", str(out), "--work", str(tmp_path / "work")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=360)
    report = out.with_suffix(".md").read_text() if out.with_suffix(".md").exists() else ""
    assert r.returncode == 0, f"{r.stderr[-6000:]}\n{report}"
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["verdict"] == "PASS"
    assert result["server"]["exit_code"] == 0 and result["server"]["crashed_at_s"] is None
    totals = result["totals"]
    for outcome in ("wrong", "unexpected_error", "lost", "duplicated"):
        assert totals[outcome] == 0, (outcome, result["failures"][:5])
    counts = result["counts"]
    for kind in GOOD_KINDS:
        assert counts.get(kind, {}).get("ok", 0) > 0, (kind, counts.get(kind))
    for kind in MALFORMED_KINDS:
        assert counts.get(kind, {}).get("expected_error", 0) > 0, (kind, counts.get(kind))
    # Bursts went above capacity: some requests were refused, and the server counted each one.
    assert totals["refused"] > 0 and result["refused_server"] == totals["refused"]
    assert 0.05 < result["malformed_fraction"] < 0.2
    assert result["rss"]["growth_pct"] < result["rss"]["bound_pct"]
    assert result["fds"]["last_median"] - result["fds"]["first_median"] <= 10
