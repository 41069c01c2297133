"""``facesearch search --html`` looked at in a real browser: Debian's headless chromium
(scripts/install-chromium) takes a screenshot of the page and dumps the DOM as it parsed it,
and the cards it shows are checked one for one against ``search --json``'s answer: the same
face, rank, image, score, decision and label, each with its pictures as data: URIs that
decode, the query image above them; a video match with its times and frame; a source moved
away since it was indexed as a card that says "image not available"; and ``compare --html``'s
names against the lines compare printed."""

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cli_checks import as_json, ok
from report_pages import Card, Compared, Page, decoded, expected_cards, shown_cards

from facesearch.video import format_ms

Cli = Callable[..., subprocess.CompletedProcess[str]]
CHROMIUM_TIMEOUT_S = 60
WIDTH, HEIGHT = 1200, 3000
NOT_AVAILABLE = "image not available"
LABEL = "<b>biden"  # a folder name, so a label: markup the page must show as text


class Browser:
    """Headless chromium with a profile of this test's own."""

    def __init__(self, command: str, profile: Path) -> None:
        self.command = command
        self.profile = profile

    def run(self, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        done = subprocess.run(
            [self.command, *flags, f"--user-data-dir={self.profile}", *args, page.as_uri()],
            capture_output=True,
            text=True,
            timeout=CHROMIUM_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done

    def screenshot(self, page: Path, out: Path) -> np.ndarray:
        self.run(
            page, f"--screenshot={out}", f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars"
        )
        assert out.is_file(), f"chromium wrote no screenshot at {out}"
        image = cv2.imread(str(out), cv2.IMREAD_COLOR)
        assert image is not None, f"{out} is not a PNG that decodes"
        return image

    def dom(self, page: Path) -> Page:
        return Page(self.run(page, "--dump-dom").stdout)


@pytest.fixture(scope="session")
def chromium() -> str:
    command = shutil.which("chromium")
    if command is None:
        # Fail, as test_prometheus.py does: a skip would let CI pass without a browser.
        pytest.fail("chromium is missing: run scripts/setup-dev (it installs Debian's)")
    return command


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Browser:
    return Browser(chromium, tmp_path / "chromium-profile")


@pytest.fixture
def examples(face_data: Path) -> Path:
    return face_data / "face_recognition" / "examples"


@pytest.fixture
def gallery(examples: Path, tmp_path: Path) -> Path:
    """Obama twice and Biden once, labelled by folder (Biden's label has markup in it)."""
    folder = tmp_path / "gallery"
    for label, name in (("obama", "obama.jpg"), ("obama", "obama2.jpg"), (LABEL, "biden.jpg")):
        (folder / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(examples / name, folder / label / name)
    return folder


def check_pictures(card: Card) -> None:
    """A card whose source was read: the face cut out, and the source as a thumbnail."""
    kinds = {image["class"]: decoded(image["src"]) for image in card.images}
    assert sorted(kinds) == ["crop", "source"], (card.attributes, card.text)
    assert kinds["source"].shape[1] <= 240 and kinds["crop"].shape[1] <= 112
    assert NOT_AVAILABLE not in "".join(card.text)


def test_the_page_in_a_browser_shows_what_search_json_answers(
    run_cli: Cli, browser: Browser, gallery: Path, examples: Path, tmp_path: Path
) -> None:
    ok(run_cli("index", "--label-from-dir", gallery))
    query = examples / "two_people.jpg"
    answer = as_json(run_cli("search", "--json", query))
    report = tmp_path / "report.html"

    again = as_json(run_cli("search", "--json", "--html", report, query))

    assert again == answer  # stdout still holds the JSON alone
    screenshot = browser.screenshot(report, tmp_path / "shot.png")
    assert screenshot.shape == (HEIGHT, WIDTH, 3)
    assert len(np.unique(screenshot.reshape(-1, 3), axis=0)) > 1000, "a blank page"
    page = browser.dom(report)
    assert shown_cards(page) == expected_cards(answer)
    assert {"obama", LABEL} <= {card.attributes["data-label"] for card in page.cards}
    assert "b" not in page.tags and "script" not in page.tags  # the label stayed text
    for card in page.cards:
        check_pictures(card)
        assert card.links == [Path(card_match(answer, card)["path"]).as_uri()]
    (picture,) = page.images
    assert picture["class"] == "query"
    assert decoded(picture["src"]).shape[1] <= 800
    header = "".join(page.text)
    assert "two_people.jpg" in header and answer["model"] in header
    assert f"{answer['threshold']:.4g}" in header
    for key in answer.get("decisions", {}):  # the gallery's size, each decision's FPIR
        assert key.replace("_", " ") in header


def card_match(answer: dict[str, Any], card: Card) -> dict[str, Any]:
    face = int(card.attributes["data-face"])
    match: dict[str, Any] = answer["faces"][face]["matches"][int(card.attributes["data-rank"])]
    return match


def test_a_source_moved_away_leaves_a_card_that_says_so(
    run_cli: Cli, browser: Browser, gallery: Path, examples: Path, tmp_path: Path
) -> None:
    ok(run_cli("index", "--label-from-dir", gallery))
    moved = gallery / "obama" / "obama2.jpg"
    moved_id = hashlib.sha256(moved.read_bytes()).hexdigest()
    moved.rename(tmp_path / "elsewhere.jpg")
    report = tmp_path / "report.html"

    result = ok(run_cli("search", "--html", report, examples / "two_people.jpg"))

    assert f"report written to {report}" in result.stderr
    assert "obama2.jpg" in result.stdout  # the text answer is unchanged
    page = browser.dom(report)
    missing = [card for card in page.cards if NOT_AVAILABLE in "".join(card.text)]
    assert missing == [c for c in page.cards if c.attributes["data-image-id"] == moved_id]
    (card,) = missing
    assert card.images == [] and card.links == [moved.as_uri()]
    assert card.attributes["data-label"] == "obama" and float(card.attributes["data-score"]) > 0
    assert "score" in card.text and "obama" in card.text
    for other in page.cards:
        if other is not card:
            check_pictures(other)


def test_a_video_match_shows_its_times_and_its_frame(
    run_cli: Cli, browser: Browser, examples: Path, tmp_path: Path
) -> None:
    ok(run_cli("index", examples / "short_hamilton_clip.mp4"))
    query = examples / "lin-manuel-miranda.png"
    answer = as_json(run_cli("search", "--json", query))
    report = tmp_path / "report.html"

    ok(run_cli("search", "--html", report, query))

    page = browser.dom(report)
    assert shown_cards(page) == expected_cards(answer)
    assert page.cards, "no match in the clip"
    for card in page.cards:
        match = card_match(answer, card)
        assert card.attributes["data-video-id"] == match["video_id"]
        span = f"{format_ms(match['t_start_ms'])}-{format_ms(match['t_end_ms'])}"
        assert f"{span} (best {format_ms(match['best_ms'], 2)})" in card.text
        check_pictures(card)
        frame = decoded(next(i["src"] for i in card.images if i["class"] == "source"))
        assert frame.shape == (135, 240, 3)  # the clip's 640x360 frame, shrunk
        assert card.links == [f"{Path(match['path']).as_uri()}#t={match['best_ms'] / 1000:.2f}"]


def test_the_compare_page_in_a_browser_shows_the_names_compare_prints(
    run_cli: Cli, browser: Browser, examples: Path, tmp_path: Path
) -> None:
    known, unknown = tmp_path / "known", tmp_path / "unknown"
    known.mkdir()
    unknown.mkdir()
    shutil.copy(examples / "obama.jpg", known / "obama.jpg")
    shutil.copy(examples / "biden.jpg", known / "biden.jpg")
    for name in ("two_people.jpg", "obama2.jpg"):
        shutil.copy(examples / name, unknown / name)
    page = tmp_path / "compare.html"

    printed = ok(run_cli("compare", known, unknown, "--html", page)).stdout.splitlines()

    names: dict[str, list[str]] = {}
    for line in printed:
        path, name = line.split(",")
        names.setdefault(path, [])
        if name not in ("unknown_person", "no_persons_found"):
            names[path].append(name)
    shown = Compared(browser.run(page, "--dump-dom").stdout).images
    assert sorted(shown) == sorted(names)
    for path, image in shown.items():
        assert sorted(image["names"]) == sorted(names[path])
        assert image["pictures"] == 1
    assert sorted(shown[str(unknown / "two_people.jpg")]["names"]) == ["biden", "obama"]
    assert shown[str(unknown / "two_people.jpg")]["faces"] == 2
