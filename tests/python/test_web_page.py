"""The web page at "/", end to end in headless Chromium: live recognition from a (fake)
microphone over the WebSocket, and a file chosen in the page recognised through the v2 infer API.

Chromium's fake capture device plays a WAV file as the microphone (--use-file-for-fake-audio-
capture, looping it); the page resamples the device's audio to 16 kHz itself, so the live transcript
is compared loosely (most of the words), while the file path, which decodes a 16 kHz WAV without
resampling, must give u2recognize's transcript exactly.
"""
import shutil
import struct
import subprocess
import time
import zlib
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO_MODEL, APPS, ROOT, read_wav, room_noise, write_wav

SAMPLES = ROOT / "tests" / "data" / "samples"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 1000)
UTT = "test_000001"  # "using socket after it was closed causes an exception"

# Debian's chromium and chromium-driver come with scripts/setup.sh; without them these tests fail
# (rather than skip) so that a CI machine missing them is noticed.


@pytest.fixture(scope="module")
def expected():
    """u2recognize's transcripts: offline (the file path) and chunk-masked (the live path)."""
    out = {}
    for name, extra in [("offline", []), ("streaming", ["--chunk-size", "16"])]:
        r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--quiet", *extra,
                            str(SAMPLES / f"{UTT}.wav")], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        out[name] = r.stdout.strip().partition(" ")[2]
    return out


@pytest.fixture(scope="module")
def capture_wav(tmp_path_factory):
    """The sample followed by 2 s of silence (so the looping fake microphone leaves a pause the
    endpointer splits at), at 48 kHz, the capture device's native rate."""
    samples, rate = read_wav(SAMPLES / f"{UTT}.wav")
    padded = np.concatenate([room_noise(rate // 2, 1), samples, room_noise(2 * rate, 2)])
    upsampled = np.interp(np.arange(len(padded) * 3) / 3.0, np.arange(len(padded)), padded)
    path = tmp_path_factory.mktemp("capture") / "mic.wav"
    write_wav(path, upsampled, rate=48000)
    return path


def make_driver(capture_wav, downloads):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={capture_wav}",
                "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={downloads}"]:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture
def driver(capture_wav, tmp_path):
    d = make_driver(capture_wav, tmp_path / "profile")
    try:
        yield d
    finally:
        d.quit()


def text_of(driver, element_id):
    """The element's text exactly (Selenium's .text collapses runs of spaces, which transcripts
    of an under-trained model do have)."""
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, element_id).get_attribute("textContent").strip()


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def png_pixels(data):
    """(width, height, RGB(A) array) of a PNG (8-bit RGB or RGBA, as Chromium writes them)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        if kind == b"IDAT":
            idat += body
        else:
            chunks[kind] = body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows = np.zeros((height, stride), np.int32)
    previous = np.zeros(stride, np.int32)
    for y in range(height):
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        kind = raw[y * (stride + 1)]
        if kind == 1:  # Sub
            line = line.copy()
            for x in range(channels, stride):
                line[x] = (line[x] + line[x - channels]) & 255
        elif kind == 2:  # Up
            line = (line + previous) & 255
        elif kind == 3:  # Average
            line = line.copy()
            for x in range(stride):
                left = line[x - channels] if x >= channels else 0
                line[x] = (line[x] + (left + previous[x]) // 2) & 255
        elif kind == 4:  # Paeth
            line = line.copy()
            for x in range(stride):
                a = line[x - channels] if x >= channels else 0
                b = previous[x]
                c = previous[x - channels] if x >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows[y] = line
        previous = line
    return width, height, rows.reshape(height, width, channels)


def check_screenshot(driver, path):
    driver.save_screenshot(str(path))
    width, height, pixels = png_pixels(path.read_bytes())
    viewport = driver.execute_script("return [window.innerWidth, window.innerHeight, window.devicePixelRatio]")
    assert (width, height) == (round(viewport[0] * viewport[2]), round(viewport[1] * viewport[2]))
    assert width >= 800 and height >= 600
    rgb = pixels[:, :, :3].astype(np.float64)
    assert rgb.std() > 20, "blank screenshot"
    # The dark header band and the light page are both there.
    assert rgb[: height // 20].mean() < 100 < rgb[height // 2:].mean()
    return pixels


def region(driver, pixels, element_id):
    """The screenshot's pixels (RGB) inside an element's box."""
    from selenium.webdriver.common.by import By
    r = driver.find_element(By.ID, element_id).rect
    scale = driver.execute_script("return window.devicePixelRatio")
    y0, x0 = round(r["y"] * scale), round(r["x"] * scale)
    y1, x1 = round((r["y"] + r["height"]) * scale), round((r["x"] + r["width"]) * scale)
    assert y1 > y0 and x1 > x0, r
    return pixels[y0:y1, x0:x1, :3].astype(np.float64)


def test_page_loads(demo_server, driver):
    driver.get(f"http://{demo_server.http_url}/")
    assert driver.title.startswith("u2serve")
    assert text_of(driver, "live-status") == "Idle."
    # The model list comes from the server: offline names only.
    from selenium.webdriver.common.by import By
    wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#offline-model option")) > 1, 10,
               "the model list")
    names = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#offline-model option")]
    assert "attention_rescoring" in names and all("streaming" not in n for n in names), names
    logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs


def test_live_recognition_from_the_microphone(demo_server, driver, expected, tmp_path):
    from selenium.webdriver.common.by import By
    driver.get(f"http://{demo_server.http_url}/")
    driver.find_element(By.ID, "start").click()
    wait_until(lambda: "Listening" in text_of(driver, "live-status"), 20, "server_ready")
    reference = expected["streaming"]
    # Partials show up while the audio streams...
    partial = wait_until(lambda: text_of(driver, "partial"), 30, "a partial result")
    assert partial
    # ...and at the pause after the utterance the endpointer gives a final line.
    final = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#finals p.final"), 40, "a final result")
    line = final[0].get_attribute("textContent")
    time_span = final[0].find_element(By.CLASS_NAME, "time").get_attribute("textContent")
    assert line.startswith(time_span) and "–" in time_span, line  # the word times are shown
    sentence = line[len(time_span):]
    similarity = SequenceMatcher(None, sentence, reference).ratio()
    print(f"live final: {sentence!r}\nreference:  {reference!r}\nsimilarity {similarity:.2f}")
    assert similarity > 0.6, (sentence, reference)
    shot = check_screenshot(driver, tmp_path / "live.png")
    # The transcript is visibly drawn: its box holds text pixels, unlike the empty box below it.
    assert region(driver, shot, "finals").std() > 20
    assert region(driver, shot, "file-result").std() < 1
    driver.find_element(By.ID, "stop").click()
    wait_until(lambda: text_of(driver, "live-status") == "Done.", 30, "speech_end")
    assert driver.find_element(By.ID, "start").is_enabled()
    assert text_of(driver, "finals")
    logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs


REAL = ROOT / "data" / "real_speech" / "asterisk_en" / "test"


def cer(ref, hyp):
    sys_path = str(ROOT / "train")
    import sys
    if sys_path not in sys.path:
        sys.path.insert(0, sys_path)
    import common
    errors, n = common.char_errors(ref, hyp)
    return 100.0 * errors / max(1, n)


@pytest.fixture(scope="module")
def real_clip():
    """A real recording of the test half (the one closest to 5 s) and its transcript."""
    if not (REAL / "wav.scp").exists():
        pytest.fail(f"{REAL} is missing: scripts/setup.sh builds it (tools/fetch_real_speech.py)")
    table = lambda name: dict(l.split(" ", 1) for l in (REAL / name).read_text().splitlines() if " " in l)
    durations = {k: float(v) for k, v in table("utt2dur").items()}
    key = min(durations, key=lambda k: (abs(durations[k] - 5.0), k))
    return REAL / table("wav.scp")[key].strip(), table("text")[key].strip()


def test_live_recognition_of_a_real_recording(demo_server, real_clip, tmp_path):
    """A real person's recording through the fake microphone: the live final's CER must be within
    what the model measures on the real test half when streamed (u2recognize, chunk 16), plus a
    margin for one clip and the page's own resampling."""
    from selenium.webdriver.common.by import By
    path, reference = real_clip
    r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--wav-scp", str(REAL / "wav.scp"),
                        "--text", str(REAL / "text"), "--streaming", "--chunk-size", "16"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    measured = float(r.stderr.split("CER ")[-1].split(" %")[0])
    samples, rate = read_wav(path)
    padded = np.concatenate([room_noise(rate // 2, 3), samples, room_noise(2 * rate, 4)])
    upsampled = np.interp(np.arange(len(padded) * 3) / 3.0, np.arange(len(padded)), padded)
    capture = tmp_path / "real_mic.wav"
    write_wav(capture, upsampled, rate=48000)
    driver = make_driver(capture, tmp_path / "profile")
    try:
        driver.get(f"http://{demo_server.http_url}/")
        driver.find_element(By.ID, "start").click()
        wait_until(lambda: "Listening" in text_of(driver, "live-status"), 20, "server_ready")
        final = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#finals p.final"), 60, "a final result")
        line = final[0].get_attribute("textContent")
        time_span = final[0].find_element(By.CLASS_NAME, "time").get_attribute("textContent")
        sentence = line[len(time_span):]
        driver.find_element(By.ID, "stop").click()
    finally:
        driver.quit()
    got = cer(reference, sentence)
    print(f"real clip {path.name}: {sentence!r} vs {reference!r}: CER {got:.1f} % (measured on the set {measured:.1f} %)")
    assert got <= max(measured * 1.5, measured + 20.0), (sentence, reference, got, measured)


def test_file_recognition(demo_server, driver, expected, tmp_path):
    from selenium.webdriver.common.by import By
    driver.get(f"http://{demo_server.http_url}/")
    driver.find_element(By.ID, "file-input").send_keys(str(SAMPLES / f"{UTT}.wav"))
    result = wait_until(lambda: text_of(driver, "file-result"), 60, "the file transcript")
    assert result == expected["offline"]
    assert "attention_rescoring" in text_of(driver, "file-status")
    shot = check_screenshot(driver, tmp_path / "file.png")
    assert region(driver, shot, "file-result").std() > 20
    # A file that is not audio gives an error in the page, not a transcript.
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio" * 100)
    driver.find_element(By.ID, "file-input").send_keys(str(junk))
    wait_until(lambda: "junk.wav:" in text_of(driver, "file-status") and
               "error" in driver.find_element(By.ID, "file-status").get_attribute("class"), 30, "the error")
    assert text_of(driver, "file-result") == ""
