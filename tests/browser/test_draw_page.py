"""The drawing page (GET /) end to end: Debian's Chromium driven by Playwright with real mouse
events, against the real server (gunicorn, both small models). Screenshots go to test-output/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent.parent
ARTEFACTS = ROOT / "test-output"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
MODELS = ["mnist-cnn", "mnist-dense"]

# Strokes in canvas fractions (0-1 across, 0-1 down), as a person would draw them.
ONE = [[(0.52, 0.18), (0.50, 0.50), (0.48, 0.84)]]
SEVEN = [[(0.26, 0.22), (0.74, 0.22), (0.58, 0.52), (0.44, 0.84)]]
# The book's page was fooled by digits drawn small near an edge; the server's normalisation
# (crop to the ink, scale, centre) is not.
SEVEN_IN_A_CORNER = [[(0.04 + x * 0.3, 0.04 + y * 0.3) for x, y in SEVEN[0]]]


@pytest.fixture(scope="module")
def browser() -> Browser:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's (apt-get install chromium) or set CHROMIUM")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server) -> Page:
    """The page loaded from the server, failing the test on a console error or a request that
    leaves the server (the page must work offline)."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    opened = context.new_page()
    problems = []
    opened.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    # A blob: URL is the page's own copy of a chosen file, not a request that leaves the browser.
    opened.on("request", lambda request: request.url.startswith((server.url, f"blob:{server.url}"))
              or problems.append(f"request outside the server: {request.url}"))
    opened.goto(f"{server.url}/")
    expect(opened.locator("section.model")).to_have_count(len(MODELS))
    yield opened
    context.close()
    # A 422 for a blank drawing would be logged by Chromium as a failed resource load; the page
    # sends none, so any console error is a fault.
    assert problems == []


def draw(page: Page, strokes) -> None:
    """Trace the strokes on the canvas with real mouse events (press, move in small steps, release)."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=12)
        page.mouse.up()


def predictions(page: Page) -> dict[str, str]:
    """Each model's shown digit, once every panel has its answer."""
    for name in MODELS:
        expect(page.locator(f'section.model[data-model="{name}"]')).to_have_attribute("data-state", "done")
    return {name: page.locator(f'section.model[data-model="{name}"] .digit').inner_text().strip() for name in MODELS}


def assert_shows_what_the_model_saw(panel) -> None:
    """The panel shows the 28x28 image its model was given, as the answer's PNG."""
    seen = panel.locator(".seen img")
    expect(seen).to_be_visible()
    assert seen.evaluate("img => img.complete && [img.naturalWidth, img.naturalHeight]") == [28, 28]


def assert_outlines_the_strokes(page: Page, frame: str, strokes) -> None:
    """The outline on ``frame`` is where the strokes were drawn (in its fractions, within the pen's width)."""
    outline, area = page.locator(f"{frame} .found"), page.locator(frame).bounding_box()
    expect(outline).to_be_visible()
    box = outline.bounding_box()
    xs, ys = [x for stroke in strokes for x, _ in stroke], [y for stroke in strokes for _, y in stroke]
    pen = 0.06  # PEN_WIDTH (20 px) over the 280 px canvas, and a little more
    left, top = (box["x"] - area["x"]) / area["width"], (box["y"] - area["y"]) / area["height"]
    right, bottom = left + box["width"] / area["width"], top + box["height"] / area["height"]
    assert min(xs) - pen < left < min(xs) and max(xs) < right < max(xs) + pen, (left, right, xs)
    assert min(ys) - pen < top < min(ys) and max(ys) < bottom < max(ys) + pen, (top, bottom, ys)


def screenshot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTEFACTS / name, full_page=True, animations="disabled")


def test_the_page_is_served_at_the_root_and_lists_every_model(page):
    assert page.title() == "Draw a digit – MNIST digit service"
    assert [panel.get_attribute("data-model") for panel in page.locator("section.model").all()] == MODELS
    states = page.locator("section.model").evaluate_all("s => s.map(e => e.dataset.state)")
    assert all(state == "idle" for state in states)
    assert page.locator('a[href="/ui/"]').count() == 1


def test_each_model_links_to_its_training_report(page):
    for name in MODELS:
        link = page.locator(f'section.model[data-model="{name}"] a.report')
        expect(link).to_have_text("training report")
        link.click()
        expect(page).to_have_title(f"{name}: training report")
        expect(page.locator("img")).to_have_count(3)
        page.go_back()
        expect(page.locator("section.model")).to_have_count(len(MODELS))


@pytest.mark.parametrize("digit, strokes, drawing", [(1, ONE, "one"), (7, SEVEN, "seven"),
                                                    (7, SEVEN_IN_A_CORNER, "seven-in-a-corner")])
def test_drawing_a_digit_shows_both_models_guesses_and_clear_resets(page, digit, strokes, drawing):
    draw(page, strokes)
    shown = predictions(page)
    assert shown["mnist-cnn"] == str(digit), shown
    assert shown["mnist-dense"] in [str(d) for d in range(10)], shown
    for name in MODELS:
        panel = page.locator(f'section.model[data-model="{name}"]')
        expect(panel.locator(".bar")).to_have_count(10)
        expect(panel).to_contain_text("%")
        assert_shows_what_the_model_saw(panel)
    assert_outlines_the_strokes(page, "#pad-frame", strokes)
    screenshot(page, f"draw-page-{drawing}.png")

    page.locator("#clear").click()
    for name in MODELS:
        panel = page.locator(f'section.model[data-model="{name}"]')
        expect(panel).to_have_attribute("data-state", "idle")
        expect(panel.locator(".digit")).to_have_text("")
        expect(panel.locator(".seen")).to_be_hidden()
    expect(page.locator("#pad-frame .found")).to_be_hidden()
    blank = page.evaluate("""() => {
        const pad = document.getElementById('pad');
        const pixels = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
        return pixels.every(value => value === 255);
    }""")
    assert blank, "the canvas is not white again after Clear"


def test_on_a_phone_width_the_page_fits_and_drawing_still_works(browser, server):
    context = browser.new_context(viewport={"width": 360, "height": 740}, has_touch=True, is_mobile=True)
    phone = context.new_page()
    phone.goto(f"{server.url}/")
    expect(phone.locator("section.model")).to_have_count(len(MODELS))
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360, "the page scrolls sideways"
    draw(phone, SEVEN)  # the canvas is shown smaller than its 280 px: pointer positions are scaled
    assert predictions(phone)["mnist-cnn"] == "7"
    screenshot(phone, "draw-page-phone.png")
    context.close()


def test_without_a_pointer_a_chosen_file_is_classified_and_controls_are_keyboard_reachable(page, samples):
    page.locator("#file").set_input_files(samples[3])
    assert predictions(page)["mnist-cnn"] == "3"
    expect(page.locator("#upload img")).to_be_visible()
    expect(page.locator("#upload .found")).to_be_visible()
    assert_shows_what_the_model_saw(page.locator('section.model[data-model="mnist-cnn"]'))
    reached = set()
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id || document.activeElement.getAttribute('href')"))
    assert {"clear", "file", "/ui/"} <= reached, reached
