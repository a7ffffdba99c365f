"""Scene graph and ScanRefer-style referring expressions, with the logic each expression rests on.

Relations are view-independent and computed from the objects' 3D boxes alone (never from how they were
placed), so anyone holding ``gt/objects.json`` can check them. Definitions (metres; "centre" and
"footprint" are those of the axis-aligned box, "footprint" its xy rectangle):

- ``on(a, b)``: a's centre lies over b's footprint and a's bottom is above b's bottom by more than
  ``ON_MIN_LIFT`` but not above b's top by more than ``ON_TOL``.
- ``under(a, b)``: b is a table or desk, a's centre lies within b's footprint, a stands on the floor
  (bottom below ``FLOOR_TOL``) and its top is at least ``UNDER_CLEARANCE`` below b's top.
- ``next_to(a, b)``: the footprints are at most ``NEXT_TO_GAP`` apart, the boxes overlap in height and
  neither is on or under the other.
- ``between(a, b, c)``: b and c are ``BETWEEN_MIN``..``BETWEEN_MAX`` apart (xy centres); a's centre
  projects onto the segment b-c within its middle 60 % and lies at most ``min(0.5, 0.3 * |bc|)`` from it.
- ``near(a, door|window)``: a's footprint comes within ``NEAR_OPENING`` of the opening's centre.
- ``closest / farthest`` (to an object or the door/window): among a's category, a has the smallest /
  largest xy centre distance to the anchor, ahead of the runner-up by at least ``SUPERLATIVE_MARGIN``.
- ``largest / smallest``: among a's category, a's oriented box volume beats the runner-up's by a factor
  of at least ``SIZE_RATIO``.

An expression is ``unique`` when its target is the only object of its category in the scene (ScanRefer's
definition) and ``multiple`` otherwise, with the other objects of the category as distractors; in both
cases the expression's logic picks out exactly one object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .objects import plural

ON_TOL = 0.03
ON_MIN_LIFT = 0.05
FLOOR_TOL = 0.05
UNDER_CLEARANCE = 0.05
NEXT_TO_GAP = 0.30
BETWEEN_MIN, BETWEEN_MAX = 0.5, 4.0
NEAR_OPENING = 1.0
SUPERLATIVE_MARGIN = 0.3
SIZE_RATIO = 1.25
UNDER_SUPPORTS = ("table", "desk")


@dataclass(frozen=True, eq=False)
class Node:
    """What the scene graph knows about one object (all from its boxes)."""

    object_id: int
    category: str
    color: str
    lo: np.ndarray  # (3,) axis-aligned box min
    hi: np.ndarray  # (3,) axis-aligned box max
    obb_size: np.ndarray  # (3,) oriented box extents

    @property
    def center(self) -> np.ndarray:
        return (self.lo + self.hi) / 2

    @property
    def volume(self) -> float:
        return float(np.prod(self.obb_size))


@dataclass(frozen=True, eq=False)
class Landmark:
    """The door or the window: a point on a wall."""

    name: str  # "door" | "window"
    center: np.ndarray  # (3,)


def nodes_from_objects(objects) -> list[Node]:
    """Scene-graph nodes from placed objects (:class:`~scener1.synth.layout.SceneObject`)."""
    out = []
    for o in objects:
        lo, hi = o.aabb
        out.append(Node(o.object_id, o.category, o.color_name, lo, hi, np.asarray(o.obb[1], dtype=np.float64)))
    return out


# ----------------------------------------------------------------------------------------- relations
def _in_footprint(p: np.ndarray, b: Node) -> bool:
    return bool(b.lo[0] <= p[0] <= b.hi[0] and b.lo[1] <= p[1] <= b.hi[1])


def _footprint_gap(a: Node, b: Node) -> float:
    d = np.maximum(0.0, np.maximum(a.lo[:2] - b.hi[:2], b.lo[:2] - a.hi[:2]))
    return float(np.linalg.norm(d))


def on(a: Node, b: Node) -> bool:
    return a is not b and _in_footprint(a.center, b) and b.lo[2] + ON_MIN_LIFT < a.lo[2] <= b.hi[2] + ON_TOL


def under(a: Node, b: Node) -> bool:
    return (a is not b and b.category in UNDER_SUPPORTS and _in_footprint(a.center, b)
            and a.lo[2] < FLOOR_TOL and a.hi[2] <= b.hi[2] - UNDER_CLEARANCE)


def next_to(a: Node, b: Node) -> bool:
    if a is b or _footprint_gap(a, b) > NEXT_TO_GAP:
        return False
    if min(a.hi[2], b.hi[2]) - max(a.lo[2], b.lo[2]) <= 0:
        return False
    return not (on(a, b) or on(b, a) or under(a, b) or under(b, a))


def between(a: Node, b: Node, c: Node) -> bool:
    if len({a.object_id, b.object_id, c.object_id}) < 3:
        return False
    pb, pc, pa = b.center[:2], c.center[:2], a.center[:2]
    L = float(np.linalg.norm(pc - pb))
    if not BETWEEN_MIN <= L <= BETWEEN_MAX:
        return False
    t = float((pa - pb) @ (pc - pb)) / L**2
    perp = abs(float(np.cross(pc - pb, pa - pb))) / L
    return 0.2 <= t <= 0.8 and perp <= min(0.5, 0.3 * L)


def near(a: Node, lm: Landmark) -> bool:
    q = np.clip(lm.center[:2], a.lo[:2], a.hi[:2])
    return float(np.linalg.norm(q - lm.center[:2])) <= NEAR_OPENING


def anchor_distance(a: Node, anchor: Node | Landmark) -> float:
    return float(np.linalg.norm(a.center[:2] - anchor.center[:2]))


def superlative(cands: list[Node], key) -> Node | None:
    """The candidate with the smallest ``key``, if it wins by SUPERLATIVE_MARGIN (None otherwise)."""
    if len(cands) < 2:
        return None
    vals = sorted((key(c), i) for i, c in enumerate(cands))
    if vals[1][0] - vals[0][0] < SUPERLATIVE_MARGIN:
        return None
    return cands[vals[0][1]]


def size_extreme(cands: list[Node], largest: bool) -> Node | None:
    if len(cands) < 2:
        return None
    ordered = sorted(cands, key=lambda c: c.volume, reverse=largest)
    a, b = ordered[0].volume, ordered[1].volume
    ratio = a / max(b, 1e-9) if largest else b / max(a, 1e-9)
    return ordered[0] if ratio >= SIZE_RATIO else None


# ----------------------------------------------------------------------------------------- scene graph
@dataclass(frozen=True, eq=False)
class SceneGraph:
    nodes: list[Node]
    door: Landmark | None  # None for a scan whose door and window are not annotated (scener1.data.annotations)
    window: Landmark | None
    edges: dict = field(default_factory=dict)  # (relation, a, b) -> True for every pairwise relation that holds

    @classmethod
    def build(cls, nodes: list[Node], door_center: np.ndarray | None, window_center: np.ndarray | None) -> "SceneGraph":
        edges = {}
        for a in nodes:
            for b in nodes:
                for name, fn in (("on", on), ("under", under), ("next_to", next_to)):
                    if fn(a, b):
                        edges[(name, a.object_id, b.object_id)] = True
        door = None if door_center is None else Landmark("door", np.asarray(door_center))
        window = None if window_center is None else Landmark("window", np.asarray(window_center))
        return cls(nodes, door, window, edges)

    def node(self, object_id: int) -> Node:
        return self.nodes[object_id]

    def same_category(self, n: Node) -> list[Node]:
        return [m for m in self.nodes if m.category == n.category]

    def related(self, relation: str, object_id: int) -> list[int]:
        """Objects b with relation(object_id, b)."""
        return [b for (r, a, b) in self.edges if r == relation and a == object_id]

    def inverse(self, relation: str, object_id: int) -> list[int]:
        """Objects a with relation(a, object_id)."""
        return [a for (r, a, b) in self.edges if r == relation and b == object_id]

    def anchor_phrase(self, n: Node) -> str | None:
        """How to name ``n`` as an anchor so that it denotes only itself (None when it cannot be)."""
        same = self.same_category(n)
        if len(same) == 1:
            return f"the {n.category}"
        if sum(m.color == n.color for m in same) == 1:
            return f"the {n.color} {n.category}"
        return None

    def to_dict(self) -> dict:
        return {
            "nodes": [{"object_id": n.object_id, "category": n.category, "color": n.color} for n in self.nodes],
            "edges": [{"relation": r, "subject": a, "object": b} for (r, a, b) in sorted(self.edges)],
        }


# ----------------------------------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Logic:
    """What an expression asserts: its target's category (and colour), one relation and its anchors."""

    relation: str  # attribute | on | under | next_to | between | near | closest | farthest | largest | smallest
    anchors: tuple = ()  # object ids, or "door"/"window"
    color: str | None = None  # the target's colour when the expression uses it to tell objects apart

    def to_dict(self) -> dict:
        return {"type": self.relation, "anchors": list(self.anchors), "color": self.color}


def holds(graph: SceneGraph, logic: Logic, n: Node) -> bool:
    """Whether object ``n`` satisfies ``logic`` (category aside)."""
    if logic.color is not None and n.color != logic.color:
        return False
    r = logic.relation
    anchors = [graph.door if a == "door" else graph.window if a == "window" else graph.node(a) for a in logic.anchors]
    if r == "attribute":
        return True
    if r in ("on", "under", "next_to"):
        return {"on": on, "under": under, "next_to": next_to}[r](n, anchors[0])
    if r == "between":
        return between(n, anchors[0], anchors[1])
    if r == "near":
        return near(n, anchors[0])
    cands = [m for m in graph.same_category(n) if logic.color is None or m.color == logic.color]
    if r in ("closest", "farthest"):
        sign = 1.0 if r == "closest" else -1.0
        win = superlative(cands, lambda m: sign * anchor_distance(m, anchors[0]))
        return win is n
    if r in ("largest", "smallest"):
        return size_extreme(cands, r == "largest") is n
    raise ValueError(f"unknown relation {r}")


def matches(graph: SceneGraph, logic: Logic, category: str) -> list[int]:
    """Objects of ``category`` that satisfy ``logic``: a correct expression matches exactly its target."""
    return [m.object_id for m in graph.nodes if m.category == category and holds(graph, logic, m)]


@dataclass(frozen=True)
class Expression:
    target: int
    category: str
    description: str
    logic: Logic
    eval_type: str  # "unique" | "multiple"
    distractors: tuple[int, ...]


def tokenize(text: str) -> list[str]:
    """Lower-case words and punctuation, as ScanRefer's ``token`` lists."""
    return re.findall(r"[a-z0-9']+|[.,!?;]", text.lower())


def relation_phrase(graph: SceneGraph, logic: Logic, rng: np.random.Generator) -> str | None:
    """English for the relation part of ``logic`` (None if an anchor cannot be named)."""
    names = []
    for a in logic.anchors:
        if a in ("door", "window"):
            names.append(f"the {a}")
        else:
            ph = graph.anchor_phrase(graph.node(a))
            if ph is None:
                return None
            names.append(ph)
    choose = lambda opts: opts[int(rng.integers(len(opts)))]  # noqa: E731
    r = logic.relation
    if r == "on":
        return choose(["on {0}", "on top of {0}", "placed on {0}", "sitting on {0}"]).format(*names)
    if r == "under":
        return choose(["under {0}", "underneath {0}", "below {0}"]).format(*names)
    if r == "next_to":
        return choose(["next to {0}", "beside {0}", "right next to {0}"]).format(*names)
    if r == "between":
        return choose(["between {0} and {1}", "in between {0} and {1}"]).format(*names)
    if r == "near":
        return choose(["near {0}", "close to {0}", "by {0}"]).format(*names)
    if r == "closest":
        return choose(["closest to {0}", "nearest to {0}"]).format(*names)
    if r == "farthest":
        return choose(["farthest from {0}", "furthest away from {0}"]).format(*names)
    return ""


def _describe(graph: SceneGraph, target: Node, logic: Logic, rng: np.random.Generator) -> str | None:
    rel = relation_phrase(graph, logic, rng)
    if rel is None:
        return None
    cat = target.category
    col = target.color
    show_color = logic.color is not None or (rng.random() < 0.5 and cat != "plant")
    adj = f"{col} " if show_color else ""
    r = logic.relation
    if r == "attribute":
        templates = [f"the {col} {cat}.", f"this is the {col} {cat}.", f"there is a {col} {cat} in the room."]
        if len(graph.same_category(target)) == 1:
            templates += [f"the {cat} in the room.", f"this is a {cat}. it is {col}."]
    elif r in ("largest", "smallest"):
        word = {"largest": ["largest", "biggest"], "smallest": ["smallest"]}[r]
        w = word[int(rng.integers(len(word)))]
        templates = [f"the {w} {adj}{cat}.", f"this is the {w} {adj}{cat} in the room.",
                     f"among the {adj}{plural(cat)}, pick the {w} one."]
    elif r in ("closest", "farthest"):
        templates = [f"the {adj}{cat} {rel}.", f"this is the {adj}{cat} that is {rel}.",
                     f"find the {adj}{cat} {rel}. it is {col}." if not show_color else f"find the {adj}{cat} {rel}."]
    else:
        templates = [f"the {adj}{cat} {rel}.", f"this is a {adj}{cat}. it is {rel}.", f"a {adj}{cat} that is {rel}.",
                     f"there is a {cat} {rel}. it is {col}.", f"the {cat} is {rel}. it is {col}."]
    return templates[int(rng.integers(len(templates)))]


def candidate_logics(graph: SceneGraph, target: Node) -> list[Logic]:
    """Every logic (with or without the target's colour) that singles out ``target`` among its category."""
    out: list[Logic] = []
    tid = target.object_id
    base = [Logic("attribute")]
    for rel in ("on", "under", "next_to"):
        for b in graph.related(rel, tid):
            if graph.anchor_phrase(graph.node(b)) and graph.node(b).category != target.category:
                base.append(Logic(rel, (b,)))
    for lm in ("door", "window"):
        if near(target, graph.door if lm == "door" else graph.window):
            base.append(Logic("near", (lm,)))
    nameable = [m for m in graph.nodes if m.category != target.category and graph.anchor_phrase(m)]
    for i, b in enumerate(nameable):
        for c in nameable[i + 1:]:
            if between(target, b, c):
                base.append(Logic("between", (b.object_id, c.object_id)))
    for anchor in [*[m.object_id for m in nameable], "door", "window"]:
        for rel in ("closest", "farthest"):
            base.append(Logic(rel, (anchor,)))
    base += [Logic("largest"), Logic("smallest")]
    for lg in base:
        for color in (None, target.color):
            cand = Logic(lg.relation, lg.anchors, color)
            if lg.relation == "attribute" and color is None and len(graph.same_category(target)) > 1:
                continue
            if holds(graph, cand, target) and matches(graph, cand, target.category) == [tid]:
                out.append(cand)
                break  # prefer the version without the colour
    return out


_TYPE_WEIGHT = {"attribute": 0.5, "closest": 0.6, "farthest": 0.4, "largest": 0.5, "smallest": 0.5, "between": 1.2}


def referring_expressions(graph: SceneGraph, rng: np.random.Generator, per_object: int = 3) -> list[Expression]:
    """Up to ``per_object`` expressions per object, each resting on a different relation."""
    out = []
    for target in graph.nodes:
        same = graph.same_category(target)
        eval_type = "unique" if len(same) == 1 else "multiple"
        distractors = tuple(m.object_id for m in same if m.object_id != target.object_id)
        by_type: dict[str, list[Logic]] = {}
        for lg in candidate_logics(graph, target):
            by_type.setdefault(lg.relation, []).append(lg)
        if not by_type:
            continue
        # pick relation types first (so the many closest/farthest anchors do not crowd out the rest),
        # favouring spatial relations over bare attributes and superlatives
        types = sorted(by_type)
        weight = np.array([_TYPE_WEIGHT.get(t, 1.0) for t in types])
        order = rng.choice(len(types), size=len(types), replace=False, p=weight / weight.sum())
        made = 0
        for i in order:
            options = by_type[types[int(i)]]
            lg = options[int(rng.integers(len(options)))]
            text = _describe(graph, target, lg, rng)
            if text is None:
                continue
            out.append(Expression(target.object_id, target.category, text, lg, eval_type, distractors))
            made += 1
            if made >= per_object:
                break
    return out
