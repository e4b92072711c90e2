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


def test_the_grid_shows_every_stream_and_one_class_box_changes_them_all(browser):
    """Several sources on one page (zsseg camera SRC1 SRC2 ... --preview): a tile per source showing its own frames
    (each at its own size, new frames arriving) with its statistics line, and ONE class box whose classes every
    stream segments from the next step on."""
    from stream_fakes import running_grid_preview

    engine = FakeEngine(["sky", "road"], delay=0.01)
    sizes, names = ((120, 160), (64, 96), (96, 128)), ("front", "back", "dock")
    with running_grid_preview(engine, sizes, names) as (sink, runner):
        browser.get(sink.url)
        tiles = browser.find_elements("css selector", "#grid figure")
        assert [tile.find_element("tag name", "b").text for tile in tiles] == list(names)
        widths = "return [...document.querySelectorAll('#grid img')].map(i => i.naturalWidth)"
        _wait(browser, lambda d: d.execute_script(widths) == [w for _, w in sizes])
        seqs = "return [...document.querySelectorAll('#grid img')].map(i => Number(i.dataset.seq || 0))"
        first = browser.execute_script(seqs)
        _wait(browser, lambda d: all(b > a for a, b in zip(first, d.execute_script(seqs))))  # every tile moves on
        _wait(
            browser,
            lambda d: all(
                "FPS" in e.text and "p50" in e.text for e in d.find_elements("css selector", ".source-state")
            ),
        )
        assert len(browser.find_elements("id", "classes")) == 1  # one vocabulary for all streams

        classes = browser.find_element("id", "classes")
        assert classes.get_attribute("value") == "sky, road"
        calls_before = engine.calls
        classes.clear()
        classes.send_keys("cat, dog, grass\n")
        _wait(browser, lambda d: _status(d)[0] in ("done", "error"))
        assert _status(browser) == ("done", "now segmenting: cat, dog, grass")
        changed = engine.seen_vocab.index(("cat", "dog", "grass"))
        assert changed >= calls_before and set(engine.seen_vocab[changed:]) == {("cat", "dog", "grass")}
        assert max(engine.batches) == 3  # the three streams' frames went through one call per step
        _wait(browser, lambda d: d.execute_script("return document.body.dataset.classes") == "cat,dog,grass")
        snapshot = runner.snapshot()
        assert [s["name"] for s in snapshot["sources"]] == list(names) and snapshot["classes"] == [
            "cat",
            "dog",
            "grass",
        ]
