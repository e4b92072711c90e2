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
        assert classes.get_attribute("value") == "sky, road"  # the box starts with the current classes
        classes.clear()
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


def _luminance(css_color: str) -> float:
    """WCAG relative luminance of a computed CSS colour ("rgb(r, g, b)" / "rgba(r, g, b, a)")."""
    channels = [int(float(v)) / 255.0 for v in css_color[css_color.index("(") + 1 : -1].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_the_class_box_starts_with_the_classes_and_the_links_are_readable(browser):
    """The box showed nothing until the user typed (the current classes were only in the stats line), and the
    "snapshot · stats" links were the browser's default dark blue on the page's near-black (contrast 2.2:1)."""
    engine = FakeEngine(["person", "floor", "wall"])
    with running_preview(engine) as sink:
        browser.get(sink.url)
        background = _luminance(browser.execute_script("return getComputedStyle(document.body).backgroundColor"))
        links = browser.find_elements("css selector", "a")
        assert [link.text for link in links] == ["snapshot", "stats (JSON)"]
        for link in links:
            color = _luminance(link.value_of_css_property("color"))
            contrast = (max(color, background) + 0.05) / (min(color, background) + 0.05)
            assert contrast >= 4.5, (link.text, link.value_of_css_property("color"), contrast)  # WCAG AA, body text
        assert browser.find_element("id", "classes").get_attribute("value") == "person, floor, wall"
