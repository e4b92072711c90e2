"""The web page of ``zsseg serve`` in a real headless browser (Debian's Chromium driven by its chromedriver through
Selenium; tools/setup_env.sh installs both): upload a photo, type classes, wait for the overlay, then check the
screenshot pixel by pixel against the photo blended with the server's labels and class colours, the legend against
the answer's areas, and a second vocabulary without a restart."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # on the shared Ray cluster (see test_serve.py)


def _wait_for_answer(driver, previous=None, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(d):
        state = d.find_element("id", "status").get_attribute("data-state")
        if state == "error":
            raise AssertionError("the page reports: " + d.find_element("id", "status").text)
        answer = d.execute_script("return window.lastAnswer || null")
        return answer if state == "done" and answer is not None and answer != previous else False

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(settled)


def _canvas_pixels(driver):
    """The canvas as it is on screen: ``[H, W, 3]`` RGB cut from a screenshot at its bounding box."""
    box = driver.execute_script(
        "const r = document.getElementById('canvas').getBoundingClientRect();return [r.left, r.top, r.width, r.height];"
    )
    shot = cv2.imdecode(np.frombuffer(driver.get_screenshot_as_png(), np.uint8), cv2.IMREAD_COLOR)
    x, y, w, h = (int(round(v)) for v in box)
    return shot[y : y + h, x : x + w, ::-1], (w, h)


def test_page_segments_an_upload_and_draws_the_overlay(server, browser, photos, tmp_path):
    from zsseg_rt.scale.serve import decode_labels

    data, image = photos[0]
    photo_path = tmp_path / "photo.png"
    photo_path.write_bytes(data)  # PNG: the browser decodes the same pixels as OpenCV
    browser.get(server + "/")
    assert browser.title == "zsseg serve"
    classes = browser.find_element("id", "classes")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(lambda d: classes.get_attribute("value"))  # /info filled in the defaults
    classes.clear()
    classes.send_keys("person, cat, dog, sofa, chair, table, plant")
    browser.find_element("id", "file").send_keys(str(photo_path))  # the upload starts the request
    answer = _wait_for_answer(browser)
    assert answer["classes"] == ["person", "cat", "dog", "sofa", "chair", "table", "plant"]
    assert (answer["height"], answer["width"]) == image.shape[:2]

    screen, size = _canvas_pixels(browser)
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert size == (image.shape[1], image.shape[0]), "the canvas is not shown at 1:1"
    labels = decode_labels(answer).astype(np.int64)
    colors = np.asarray(answer["colors"], np.float64)
    rgb = image[:, :, ::-1].astype(np.float64)
    expected = np.floor(0.5 * rgb + 0.5 * colors[labels] + 0.5)  # the page's Math.round((1-a)p + a c), a = 0.5
    difference = np.abs(screen.astype(np.float64) - expected)
    assert difference.max() <= 1.0, f"overlay differs from photo + label colours by up to {difference.max()}"
    plain = np.abs(screen.astype(np.float64) - rgb).mean()
    assert plain > 10.0, "the canvas shows the plain photo, not an overlay"
    assert len(np.unique(labels)) >= 2  # several classes drawn: a comparison that can fail

    items = browser.find_elements("css selector", "#legend li")
    shown = [item.get_attribute("data-class") for item in items]
    assert sorted(shown) == sorted(answer["areas"])  # (WebDriver does not keep a JS object's key order)
    assert [answer["areas"][name] for name in shown] == sorted(answer["areas"].values(), reverse=True)
    for item in items:
        name = item.get_attribute("data-class")
        share = float(item.find_element("class name", "area").text.replace("%", ""))
        assert abs(share - 100 * answer["areas"][name]) < 0.06, (name, share)
        swatch = item.find_element("class name", "swatch").value_of_css_property("background-color")
        r, g, b = answer["colors"][answer["classes"].index(name)]
        assert swatch in (f"rgb({r}, {g}, {b})", f"rgba({r}, {g}, {b}, 1)"), (name, swatch)

    # another vocabulary, same page, no restart: a new answer with the new names, drawn the same way
    classes.clear()
    classes.send_keys("sky, grass, road")
    browser.find_element("id", "segment").click()
    second = _wait_for_answer(browser, previous=answer)
    assert second["classes"] == ["sky", "grass", "road"]
    screen, _ = _canvas_pixels(browser)
    labels = decode_labels(second).astype(np.int64)
    expected = np.floor(0.5 * rgb + 0.5 * np.asarray(second["colors"], np.float64)[labels] + 0.5)
    assert np.abs(screen.astype(np.float64) - expected).max() <= 1.0
    shown = [i.get_attribute("data-class") for i in browser.find_elements("css selector", "#legend li")]
    assert sorted(shown) == sorted(second["areas"])
    note = browser.find_element("id", "camera-note").text
    assert "no camera" in note and "zsseg camera" in note  # this server has no camera, and the page says so


def test_page_segments_the_browser_camera(server, browser):
    """ "Use this browser's camera": frames from getUserMedia (Chromium's fake test-pattern camera here) are sent one
    at a time and each answer has the frame's size and the typed classes; "Stop the camera" ends the loop."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/")
    classes = browser.find_element("id", "classes")
    WebDriverWait(browser, 30).until(lambda d: classes.get_attribute("value"))
    classes.clear()
    classes.send_keys("sky, grass, road")
    camera = browser.find_element("id", "camera")
    camera.click()
    WebDriverWait(browser, 120, poll_frequency=0.2).until(
        lambda d: (
            (d.execute_script("return window.cameraFrames || 0") >= 3)
            or d.find_element("id", "status").get_attribute("data-state") == "error"
        )
    )
    status = browser.find_element("id", "status")
    assert status.get_attribute("data-state") != "error", status.text
    answer = browser.execute_script("return window.lastAnswer")
    width, height = browser.execute_script(
        "const v = document.getElementById('video'); return [v.videoWidth, v.videoHeight];"
    )
    assert width > 0 and (answer["width"], answer["height"]) == (width, height)
    assert answer["classes"] == ["sky", "grass", "road"]
    canvas = browser.execute_script("const c = document.getElementById('canvas'); return [c.width, c.height];")
    assert canvas == [width, height]
    assert camera.text == "Stop the camera"
    camera.click()
    WebDriverWait(browser, 30).until(lambda d: camera.text == "Use this browser's camera")
    frames = browser.execute_script("return window.cameraFrames")
    time.sleep(1.0)
    assert browser.execute_script("return window.cameraFrames") <= frames + 1  # the loop ended (one may finish)


def _wait_for_error(driver, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    def failed(d):
        status = d.find_element("id", "status")
        return status.text if status.get_attribute("data-state") == "error" else False

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(failed)


_PAGE_STATE = """
const view = document.getElementById('view'), canvas = document.getElementById('canvas');
const controls = document.getElementById('controls').getBoundingClientRect();
const box = canvas.getBoundingClientRect(), root = document.documentElement;
return {answer: window.lastAnswer || null, legend: document.querySelectorAll('#legend li').length,
        shown: !view.hidden && box.width > 0 && box.height > 0,
        box: [box.left, box.top, box.right, box.bottom], controls: [controls.left, controls.top, controls.right,
        controls.bottom], size: [canvas.width, canvas.height], viewport: [window.innerWidth, window.innerHeight],
        overflow: [root.scrollWidth - root.clientWidth, root.scrollHeight - root.clientHeight]};
"""


def _page_state(driver):
    return driver.execute_script(_PAGE_STATE)


def _upload(driver, path, classes=None):
    """Type ``classes`` (when given), choose the file ``path`` (a new name each time: the same name again would not
    be a change of the file input), and wait until the page took it (its status leaves an earlier error)."""
    from selenium.webdriver.support.ui import WebDriverWait

    if classes is not None:
        box = driver.find_element("id", "classes")
        box.clear()
        box.send_keys(classes)
    driver.find_element("id", "file").send_keys(str(path))
    WebDriverWait(driver, 30, poll_frequency=0.05).until(
        lambda d: (
            d.find_element("id", "status").get_attribute("data-state") != "error"
            or path.name in d.find_element("id", "status").text
        )
    )


def _png_with_padding(path, image, padding: int) -> None:
    """A valid PNG of ``image`` with an ancillary chunk of ``padding`` bytes before its end (browsers skip it)."""
    import struct
    import zlib

    ok, data = cv2.imencode(".png", image)
    assert ok
    data = data.tobytes()
    body = b"zsSg" + b"\0" * padding  # a private ancillary chunk type (lower-case first letter)
    chunk = struct.pack(">I", padding) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    end = data.rindex(b"IEND") - 4
    path.write_bytes(data[:end] + chunk + data[end:])


def test_page_errors_leave_no_stale_result_and_large_images_fit(server, browser, photos, tmp_path):
    """(issue 37) After a result, each error clears the overlay and the legend (a refused vocabulary, a file that is
    not an image, a decompression bomb, a body over the server's byte limit): no result is left on screen to be taken
    for the new one, and the bomb breaks no layout. The 413 texts tell a web user what to do, not server flags.
    A 1280x866 photo is drawn fitted beside the controls (it was drawn 1:1, below them); on a phone-sized window a
    portrait photo fits the width (no sideways scrolling). The class box explains `;` and named vocabularies, and
    `voc21` segments with the official VOC classes."""
    from selenium.webdriver.support.ui import WebDriverWait
    from support import write_bilevel_png

    data, image = photos[0]
    browser.get(server + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element("id", "classes").get_attribute("value"))
    hint = browser.find_element("id", "classes-hint").text
    assert ";" in hint and "voc21" in hint and "context59" in hint, hint
    answers = []

    def fresh_result(name):
        path = tmp_path / f"{name}.png"
        path.write_bytes(data)
        _upload(browser, path, "person, cat, dog, sofa")
        answers.append(_wait_for_answer(browser, previous=answers[-1] if answers else None))
        state = _page_state(browser)
        assert state["shown"] and state["legend"] >= 1 and state["answer"] is not None, state

    def assert_cleared(what):
        state = _page_state(browser)
        assert state["answer"] is None, f"{what}: the previous answer is still the page's answer"
        assert state["legend"] == 0, f"{what}: the previous legend is still shown"
        assert not state["shown"], f"{what}: the previous overlay is still shown"
        assert state["overflow"][0] <= 0, f"{what}: the page scrolls sideways ({state})"

    fresh_result("first")  # duplicate classes: refused by the server (400)
    box = browser.find_element("id", "classes")
    box.clear()
    box.send_keys("cat, cat")
    browser.find_element("id", "segment").click()
    assert "HTTP 400" in _wait_for_error(browser)
    assert_cleared("duplicate classes")

    fresh_result("second")  # not an image
    (tmp_path / "garbage.png").write_bytes(b"definitely not a picture")
    _upload(browser, tmp_path / "garbage.png")
    assert "not an image" in _wait_for_error(browser)
    assert_cleared("not an image")

    fresh_result("third")  # a 110 KB PNG declaring 30000x30000
    write_bilevel_png(tmp_path / "bomb.png", 30000, 30000)
    _upload(browser, tmp_path / "bomb.png")
    message = _wait_for_error(browser)
    assert "bomb.png" in message and "--max-pixels" not in message and "ZSSEG" not in message, message
    assert_cleared("decompression bomb")

    fresh_result("fourth")  # a valid small PNG carrying 8 MB: over the server's byte limit (413 from the server)
    _png_with_padding(tmp_path / "padded.png", image, 8 << 20)
    _upload(browser, tmp_path / "padded.png")
    message = _wait_for_error(browser)
    assert "HTTP 413" in message and "send a smaller image" in message, message
    assert "--max-pixels" not in message and "ZSSEG" not in message, message
    assert_cleared("body over the byte limit")

    # a 1280x866 photo (the 1200x900 window): fitted beside the controls, within the window
    large = cv2.resize(image, (1280, 866), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(tmp_path / "large.png"), large)
    _upload(browser, tmp_path / "large.png", "person, cat, dog, sofa")
    answer = _wait_for_answer(browser, previous=answers[-1])
    assert (answer["width"], answer["height"]) == (1280, 866)
    state = _page_state(browser)
    left, top, right, bottom = state["box"]
    assert state["size"] == [1280, 866] and state["shown"], state  # drawn at full resolution, shown scaled
    assert left >= state["controls"][2] and top < state["controls"][3], f"not beside the controls: {state}"
    assert right <= state["viewport"][0] and bottom <= state["viewport"][1], f"not within the window: {state}"
    assert abs((right - left) / (bottom - top) - 1280 / 866) < 0.02, f"aspect ratio changed: {state}"
    assert state["overflow"][0] <= 0, state

    # a named vocabulary from the class box
    _upload(browser, tmp_path / "first.png", "voc21")
    named = _wait_for_answer(browser, previous=answer)
    assert len(named["classes"]) == 21 and named["classes"][0] == "background", named["classes"]

    size = browser.get_window_size()
    try:  # a phone: a portrait photo fits the width
        browser.set_window_size(390, 844)
        browser.get(server + "/")
        WebDriverWait(browser, 30).until(lambda d: d.find_element("id", "classes").get_attribute("value"))
        portrait = cv2.resize(image, (1200, 1600), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(tmp_path / "portrait.png"), portrait)
        _upload(browser, tmp_path / "portrait.png", "person, cat")
        _wait_for_answer(browser)
        state = _page_state(browser)
        assert state["shown"] and state["size"] == [1200, 1600], state
        assert state["box"][2] <= state["viewport"][0] and state["overflow"][0] <= 0, f"scrolls sideways: {state}"
        assert state["box"][3] - state["box"][1] <= state["viewport"][1], f"taller than the window: {state}"
    finally:
        browser.set_window_size(size["width"], size["height"])
