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
