"""The camera preview's page (``zsseg camera --preview``) in a real headless browser: the MJPEG stream shows, the
live stats line names the classes, and typing new classes in the box changes what the stream segments (NanoOWL's
prompt box over a live stream); a refused vocabulary is reported on the page and the old one kept."""

from __future__ import annotations

from stream_fakes import FakeEngine, running_preview


def _wait(driver, condition, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _status(driver):
    element = driver.find_element("id", "status")
    return element.get_attribute("data-state"), element.text


def test_the_class_box_changes_the_stream_vocabulary(browser):
    engine = FakeEngine(["sky", "road"], delay=0.02)
    with running_preview(engine, frame_size=(120, 160)) as sink:
        browser.get(sink.url)
        _wait(browser, lambda d: d.execute_script("return document.body.dataset.classes") == "sky,road")
        _wait(browser, lambda d: d.execute_script("return document.querySelector('img').naturalWidth") == 160)

        classes = browser.find_element("id", "classes")
        classes.send_keys("cat, dog, grass\n")  # Enter submits the form
        _wait(browser, lambda d: _status(d)[0] in ("done", "error"))
        assert _status(browser) == ("done", "now segmenting: cat, dog, grass")
        assert engine.class_names == ["cat", "dog", "grass"]
        _wait(browser, lambda d: d.execute_script("return document.body.dataset.classes") == "cat,dog,grass")
        assert "classes: cat, dog, grass" in browser.find_element("id", "stats").text

        classes.clear()
        classes.send_keys("tree, tree\n")  # refused at once by the server, with the reason
        _wait(browser, lambda d: _status(d)[0] == "error")
        assert "duplicate class name 'tree'" in _status(browser)[1]
        assert engine.class_names == ["cat", "dog", "grass"]
