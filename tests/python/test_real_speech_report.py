"""docs/real-speech.md, the record of what was tried for real human speech: the page must be what
the committed records give, the records must follow the selection rule, and the checks script
must measure what it says (its sox control changes nothing; a damaging change shows up)."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "train"))
import real_speech_checks  # noqa: E402
import real_speech_report as report  # noqa: E402

REAL_DEV = ROOT / "data" / "real_speech" / "asterisk_en" / "dev"
U2RECOGNIZE = ROOT / "build" / "apps" / "u2recognize"


@pytest.fixture()
def record():
    return report.load(report.RECORD)


def test_page_is_what_the_records_give():
    proc = subprocess.run([sys.executable, str(ROOT / "train" / "real_speech_report.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_page_answers_the_issue(record):
    page = (ROOT / "docs" / "real-speech.md").read_text()
    for heading in ("## Round by round", "## What moved real-speech CER, and by how much", "## Dev-set curves",
                    "## Where the errors are not", "## What would be needed next"):
        assert heading in page
    # Every run's curve and every comparison's axis is on the page.
    for rnd in record["rounds"]:
        for run in rnd["runs"]:
            assert f"| {rnd['id']} | {run} |" in page
    for axis in ("data source", "model size", "data mix", "starting point", "blending"):
        assert f"| {axis}" in page
    assert (ROOT / "docs" / "real-speech.png").stat().st_size > 10000


def test_shipped_flags_follow_the_rule(record):
    report.validate(record)
    bound = record["rule"]["synthetic_dev_max"]
    picks = {r["id"]: report.rule_pick(r, bound) for r in record["rounds"]}
    assert picks["exp17"] is None and picks["exp23"] is None  # over the synthetic bound
    assert picks["exp19"]["name"] == "exp19 blended, W = 0.65"

    # Claiming a candidate the rule does not pick is refused, as is shipping two.
    wrong = copy.deepcopy(record)
    exp23 = next(r for r in wrong["rounds"] if r["id"] == "exp23")
    min(exp23["candidates"], key=lambda c: c["real_dev"])["shipped"] = True
    with pytest.raises(report.RecordError, match="exp23: the record ships .* the rule picks none"):
        report.validate(wrong)
    wrong = copy.deepcopy(record)
    next(r for r in wrong["rounds"] if r["id"] == "exp20")["candidates"][0]["shipped"] = True
    with pytest.raises(report.RecordError, match="exp20"):
        report.validate(wrong)


def test_malformed_records_get_clear_errors(record, tmp_path):
    cases = [
        (lambda r: r["rounds"][0].update(axes=["luck"]), "unknown axis 'luck'"),
        (lambda r: r["rounds"][0]["candidates"][0].update(real_dev="low"), "real_dev must be a CER"),
        (lambda r: r["rounds"][1].update(id=r["rounds"][0]["id"]), "unique id"),
        (lambda r: r["comparisons"][0]["b"].update(candidate="nope"), "no candidate 'nope'"),
        (lambda r: r.pop("rule"), "no 'rule'"),
    ]
    for damage, message in cases:
        bad = copy.deepcopy(record)
        damage(bad)
        with pytest.raises(report.RecordError, match=message):
            report.validate(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    proc = subprocess.run([sys.executable, str(ROOT / "train" / "real_speech_report.py"), "--record", str(broken),
                           "--out", str(tmp_path / "page.md")], capture_output=True, text=True)
    assert proc.returncode != 0 and "cannot read" in proc.stderr
    assert not (tmp_path / "page.md").exists()


def test_comparisons_are_computed_from_the_candidates(record):
    text = report.render(record, None)
    # exp20's wide model against the narrow one at W = 1: 45.67 -> 46.95.
    assert "45.67 % -> 46.95 % (**+1.28**)" in text
    changed = copy.deepcopy(record)
    next(r for r in changed["rounds"] if r["id"] == "exp20")["candidates"][8]["real_dev"] = 44.67
    assert "45.67 % -> 44.67 % (**-1.00**)" in report.render(changed, None)


def test_import_curve_reads_a_train_log(record, tmp_path):
    log = tmp_path / "train.log"
    log.write_text("eval step 0: dev greedy CER 4.00 % WER 20 % (100 utts, 4 s)\n"
                   "eval step 0: real_dev greedy CER 44.00 % WER 90 % (287 utts, 12 s)\n"
                   "step 100 epoch 0 batch 100 | loss 30 | 0.50 h seen, 10x real time\n"
                   "final step 120: dev greedy CER 3.50 % WER 18 % (100 utts, 4 s)\n"
                   "final step 120: real_dev greedy CER 43.00 % WER 88 % (287 utts, 12 s)\n")
    run = report.import_curve(record, "exp23", f"exp23c={log}")
    assert run["curve"] == {"dev": [[0, 0.0, 4.0], [120, 0.5, 3.5]], "real_dev": [[0, 0.0, 44.0], [120, 0.5, 43.0]]}
    assert run["steps"] == 120
    with pytest.raises(report.RecordError, match="no round"):
        report.import_curve(record, "exp99", f"x={log}")
    (tmp_path / "empty.log").write_text("nothing\n")
    with pytest.raises(report.RecordError, match="no evaluation lines"):
        report.import_curve(record, "exp23", f"x={tmp_path / 'empty.log'}")


def test_plot_draws_every_round(record, tmp_path):
    out = tmp_path / "plot.png"
    report.plot(record, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10000


def test_checks_script_control_changes_nothing_and_a_lowpass_hurts(tmp_path):
    if not (REAL_DEV / "text").exists():
        pytest.fail(f"{REAL_DEV} is missing: scripts/setup.sh builds it (tools/fetch_real_speech.py)")
    if not U2RECOGNIZE.exists():
        pytest.fail(f"{U2RECOGNIZE} is missing: scripts/build.sh builds it")
    out = tmp_path / "checks.json"
    real_speech_checks.main(["--limit", "12", "--skip-decoding", "--json", str(out)])
    got = json.loads(out.read_text())
    assert got["utterances"] == 12 and got["decoding"] == []
    rows = {r["check"]: r for r in got["audio"]}
    assert set(rows) == {name for name, _, _ in real_speech_checks.AUDIO_CHECKS}
    # sox without an effect and without dither gives the same samples, so the same text.
    assert rows["sox copy"]["delta"] == 0 and rows["sox copy"]["cer"] == got["baseline"]["cer"]
    assert rows["sox copy"]["better"] == rows["sox copy"]["worse"] == 0
    # Cutting the band to 3.8 kHz removes what the model hears (+4 points on all 287 utterances).
    assert rows["lowpass 3.8 kHz"]["cer"] > got["baseline"]["cer"]
