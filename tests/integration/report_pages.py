"""The pages ``search --html`` and ``compare --html`` write, read back as a browser (or any
HTML parser) sees them: the cards of a search page with their data-* attributes and pictures,
the images of a compare page with the names shown. Shared by test_report.py (the DOM headless
chromium dumped) and test_gateway.py (a page written through the gateway)."""

import base64
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import cv2
import numpy as np


@dataclass
class Card:
    attributes: dict[str, str]
    images: list[dict[str, str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)


class Page(HTMLParser):
    """The cards of a page as the browser left its DOM, the images outside them, and every
    tag's name (markup that came from a label would show up here)."""

    def __init__(self, dom: str) -> None:
        super().__init__(convert_charrefs=True)
        self.cards: list[Card] = []
        self.images: list[dict[str, str]] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.card: Card | None = None
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.tags.append(tag)
        if tag == "article" and "card" in attributes.get("class", "").split():
            self.card = Card(attributes)
            self.cards.append(self.card)
        elif tag == "img":
            (self.card.images if self.card else self.images).append(attributes)
        elif tag == "a" and self.card:
            self.card.links.append(attributes.get("href", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self.card = None

    def handle_data(self, data: str) -> None:
        (self.card.text if self.card else self.text).append(data)


def decoded(uri: str) -> np.ndarray:
    """The picture of a JPEG data: URI (the page's only kind)."""
    assert uri.startswith("data:image/jpeg;base64,"), uri[:40]
    data = np.frombuffer(base64.b64decode(uri.split(",", 1)[1], validate=True), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert image is not None, "a data: URI that does not decode"
    return image


def expected_cards(answer: dict[str, Any]) -> list[tuple[str, ...]]:
    return [
        (
            str(face["index"]),
            str(rank),
            m["image_id"],
            f"{m['score']:.4f}",
            m["decision"],
            m["label"],
        )
        for face in answer["faces"]
        for rank, m in enumerate(face["matches"])
    ]


def shown_cards(page: Page) -> list[tuple[str, ...]]:
    keys = ("data-face", "data-rank", "data-image-id", "data-score", "data-decision", "data-label")
    return [tuple(card.attributes[k] for k in keys) for card in page.cards]


class Compared(HTMLParser):
    """Per unknown image of a compare page: its path, its number of faces, the names shown and
    whether its picture is there."""

    def __init__(self, dom: str) -> None:
        super().__init__(convert_charrefs=True)
        self.images: dict[str, dict[str, Any]] = {}
        self.current: dict[str, Any] | None = None
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "article" and "image" in attributes.get("class", "").split():
            self.current = {"faces": int(attributes["data-faces"]), "names": [], "pictures": 0}
            self.images[attributes["data-path"]] = self.current
        elif self.current is not None and tag == "span" and attributes.get("class") == "name":
            self.current["names"].append(attributes["data-name"])
        elif self.current is not None and tag == "img":
            decoded(attributes["src"])
            self.current["pictures"] += 1
