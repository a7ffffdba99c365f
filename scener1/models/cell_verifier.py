"""Does a box show what the query asks for? The image stage's check of its candidates against the cell heads.

The image stage asks the model for a box on a dozen frames and lets the frames vote (:func:`decide`). With
Scene-R1-tiny most of those boxes lie on an object of another category, and the model's own answer probability
does not tell which (docs/training.md). The model's cell heads (:mod:`scener1.models.cell_heads`) read, for
each merged vision token, the probability of every category and colour; a box's score is the mean over the
cells it covers of P(the query's category) x P(the query's colour) (the colour factor only when the query
names one). Each candidate's vote is then weighed by its score (``ImageSettings.verify_weight``); the frames the
model is asked on can be those where the best cell looks most like the target (``seek_frames``), and with
``replace_below`` a box the heads doubt gives way to their own (the boxes their strongest cells predict).

The query's target is read by rule, in the English of ScanRefer-style descriptions: the first category the
heads know ("this is a blue chair. it is next to the desk." -> chair), its colour the word just before it or a
colour said of it alone ("the desk near the door. it is beige." -> beige), never the colour of another object
("the chair next to the red table" has no colour for the chair). A query naming no category the heads know is
not checked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..parsing import singular
from .cell_heads import CellHeads, load_cell_heads, tower_cells

_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class QueryTarget:
    """What the query asks for, in the heads' class names (None: not named, or not a class the heads know)."""

    category: str | None
    colour: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "colour": self.colour}


def query_target(query: str, categories: Sequence[str], colours: Sequence[str]) -> QueryTarget:
    """The first known category in ``query`` and the colour said of it (see the module's docstring)."""
    words = [singular(w) for w in _WORD.findall(query.lower())]
    names = {c.lower() for c in categories if c != "none"}
    colour_names = {c.lower() for c in colours if c != "none"}
    longest = max((len(c.split()) for c in names), default=1)

    def category_at(i: int) -> tuple[str, int] | None:  # (category, words it takes) starting at word i
        for n in range(longest, 0, -1):
            name = " ".join(words[i : i + n])
            if len(words[i : i + n]) == n and name in names:
                return name, n
        return None

    for i in range(len(words)):
        found = category_at(i)
        if found is None:
            continue
        colour = words[i - 1] if i > 0 and words[i - 1] in colour_names else None
        if colour is None:  # a colour said of no other object: "... it is beige."
            colour = next((w for j, w in enumerate(words) if w in colour_names and category_at(j + 1) is None), None)
        return QueryTarget(found[0], colour)
    return QueryTarget(None, None)


def cells_in_box(box: Sequence[float], image_size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """(rows, cols) bool: the cells whose centre lies inside ``box`` (x1, y1, x2, y2 in pixels of an image
    ``image_size`` = (width, height)), and always the cell under the box's centre."""
    rows, cols = grid
    width, height = image_size
    x1, y1, x2, y2 = (float(v) for v in box)
    ys = (np.arange(rows) + 0.5) * height / rows
    xs = (np.arange(cols) + 0.5) * width / cols
    inside = ((ys >= y1) & (ys < y2))[:, None] & ((xs >= x1) & (xs < x2))[None, :]
    cy = min(max(int(0.5 * (y1 + y2) / height * rows), 0), rows - 1)
    cx = min(max(int(0.5 * (x1 + x2) / width * cols), 0), cols - 1)
    inside[cy, cx] = True
    return inside


def box_score(match: np.ndarray, box: Sequence[float], image_size: tuple[int, int]) -> float:
    """Mean of ``match`` (rows, cols: each cell's probability of showing the target) over the box's cells."""
    return float(match[cells_in_box(box, image_size, match.shape)].mean())


def target_match(category_probs: np.ndarray, colour_probs: np.ndarray, heads: CellHeads,
                 target: QueryTarget) -> np.ndarray | None:
    """(rows, cols) probability that each cell shows the target; None when the target names no category."""
    if target.category is None:
        return None
    match = category_probs[..., heads.categories.index(target.category)]
    if target.colour is not None:
        match = match * colour_probs[..., heads.colours.index(target.colour)]
    return match


class CellVerifier:
    """Scores boxes on frames against a query with a model's cell heads; frames are read once per instance."""

    def __init__(self, vlm: Any, heads: CellHeads):
        self.vlm = vlm
        self.heads = heads
        self._maps: dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}  # category, colour, boxes

    @classmethod
    def for_model(cls, vlm: Any) -> "CellVerifier | None":
        """The verifier of ``vlm``'s model directory, or None when the model ships no cell heads."""
        heads = load_cell_heads(getattr(vlm, "path", None))
        return None if heads is None else cls(vlm, heads)

    def target(self, query: str) -> QueryTarget:
        return query_target(query, self.heads.categories, self.heads.colours)

    def forget(self) -> None:
        """Drop the frames read so far (call between scenes: keys are frame indices)."""
        self._maps.clear()

    def read(self, frames: Sequence[tuple[Any, np.ndarray]]) -> None:
        """Run the tower over the frames not read yet, in one batch (``frames``: (key, image) pairs)."""
        todo = {key: image for key, image in frames if key not in self._maps}  # each new frame once
        if todo:
            for key, cells in zip(todo, tower_cells(self.vlm, list(todo.values())), strict=True):
                self._maps[key] = (*self.heads.probabilities(cells), self.heads.boxes(cells))

    def score(self, target: QueryTarget, frames: Sequence[tuple[Any, np.ndarray]],
              boxes: Sequence[Sequence[float] | None]) -> list[float | None]:
        """Each box's score on its frame (``frames``: (key, image) pairs; a key names a frame for the cache);
        None for a missing box or a target without a category."""
        if target.category is None:
            return [None] * len(boxes)
        self.read(frames)
        scores: list[float | None] = []
        for (key, image), box in zip(frames, boxes, strict=True):
            if box is None:
                scores.append(None)
                continue
            match = target_match(*self._maps[key][:2], self.heads, target)
            height, width = image.shape[:2]
            scores.append(box_score(match, box, (width, height)))
        return scores

    def presence(self, target: QueryTarget, frames: Sequence[tuple[Any, np.ndarray]]) -> list[float | None]:
        """How surely each frame shows the target anywhere: its best cell's probability (None without a
        category). The image stage asks the model on the frames where this is highest (``seek_frames``)."""
        if target.category is None:
            return [None] * len(frames)
        self.read(frames)
        return [float(target_match(*self._maps[key][:2], self.heads, target).max()) for key, _ in frames]

    def heads_box(self, target: QueryTarget, frame: tuple[Any, np.ndarray]) -> tuple[float, float, float, float] | None:
        """The heads' own box for the target on a frame, in its pixels: the boxes the cells predict for their
        object, averaged over the cells at half the best cell's match or more, weighted by it. None without a
        box map or a category."""
        if target.category is None:
            return None
        key, image = frame
        self.read([frame])
        category, colour, boxes = self._maps[key]
        if boxes is None:
            return None
        match = target_match(category, colour, self.heads, target)
        weight = np.where(match >= 0.5 * match.max(), match, 0.0)
        if not weight.sum() > 0:
            return None
        share = (boxes * weight[..., None]).sum(axis=(0, 1)) / weight.sum()
        height, width = image.shape[:2]
        x1, x2 = sorted((float(share[0]) * width, float(share[2]) * width))
        y1, y2 = sorted((float(share[1]) * height, float(share[3]) * height))
        return x1, y1, x2, y2

    def replacement(self, target: QueryTarget, frame: tuple[Any, np.ndarray], box: Sequence[float],
                    below: float, min_size: float = 1.0) -> tuple[dict[str, Any] | None, tuple[float, ...]]:
        """(record, box): the heads' own box (:meth:`heads_box`) when ``box`` scores under ``below`` of the
        frame's best cell, with a record of the model's box and score; else (None, ``box``) as it was."""
        score = self.score(target, [frame], [box])[0]
        presence = self.presence(target, [frame])[0]
        if score is None or presence is None or score >= below * presence:
            return None, tuple(box)
        own = self.heads_box(target, frame)
        if own is None or own[2] - own[0] < min_size or own[3] - own[1] < min_size:
            return None, tuple(box)
        record = {"model_box": [round(float(v), 2) for v in box], "model_score": round(score, 6)}
        return record, tuple(round(v, 2) for v in own)
