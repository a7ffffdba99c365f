"""ScanQA-style and VSI-Bench-style questions, answered from the ground truth.

Every question carries a small ``program`` (what was asked about which objects) from which its answer can
be recomputed. VSI-Bench conventions used here: distances between two objects are the gap between their
axis-aligned 3D boxes (0 when they touch); object size is the longest side of the oriented box in
centimetres; room size is the floor area in square metres; "standing by A facing B" puts the viewer at
A's box centre looking at B's (floor plan); a category's first appearance is the first frame in which
any object of it covers at least the visibility threshold of pixels. Multiple-choice answers are option
letters, as in VSI-Bench.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations, permutations

import numpy as np

from .language import Logic, Node, SceneGraph, relation_phrase, candidate_logics
from .language import near as near_fn
from .objects import CATEGORIES, plural

LETTERS = "ABCD"
DIRECTION_MARGIN_DEG = 12.0
REL_DISTANCE_MARGIN = 0.15
APPEARANCE_MIN_GAP_FRAMES = 2


@dataclass(frozen=True)
class Question:
    kind: str  # ScanQA: color|what_on|what_under|count_next_to|where|count|what_color_object; VSI: question_type
    question: str
    answers: tuple[str, ...]  # ScanQA: accepted answers; VSI: (ground_truth,)
    object_ids: tuple[int, ...]
    options: tuple[str, ...] = ()
    program: dict = field(default_factory=dict)


def box_distance(a: Node, b: Node) -> float:
    """Gap between two axis-aligned boxes in 3D (0 when they touch or overlap)."""
    d = np.maximum(0.0, np.maximum(a.lo - b.hi, b.lo - a.hi))
    return float(np.linalg.norm(d))


def direction_angle(a: Node, b: Node, c: Node) -> float:
    """Degrees from the facing direction (a towards b) to c, positive to the left (counter-clockwise)."""
    f = b.center[:2] - a.center[:2]
    v = c.center[:2] - a.center[:2]
    return float(np.degrees(np.arctan2(f[0] * v[1] - f[1] * v[0], f @ v)))


def _choice(rng: np.random.Generator, items: list, k: int) -> list:
    if len(items) <= k:
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), size=k, replace=False))]


# ----------------------------------------------------------------------------------------- ScanQA
def scanqa_questions(graph: SceneGraph, rng: np.random.Generator, limit: int = 24) -> list[Question]:
    out: list[Question] = []
    nodes = graph.nodes
    counts: dict[str, list[int]] = {}
    for n in nodes:
        counts.setdefault(n.category, []).append(n.object_id)

    # colour of an object identified by a relation
    for n in nodes:
        if len(CATEGORIES[n.category].colors) < 2:
            continue  # plants are always green: nothing to ask
        logics = [lg for lg in candidate_logics(graph, n) if lg.color is None]
        logics = [lg for lg in logics if lg.relation != "attribute"] or logics
        if not logics:
            continue
        types = sorted({lg.relation for lg in logics})  # a relation type first, then one of its logics
        kind = types[int(rng.integers(len(types)))]
        same_kind = [lg for lg in logics if lg.relation == kind]
        lg = same_kind[int(rng.integers(len(same_kind)))]
        rel = "" if lg.relation == "attribute" else _relation_text(graph, lg, n, rng)
        if rel is None:
            continue
        out.append(Question("color", f"What color is the {n.category}{rel}?", (n.color,), (n.object_id,),
                            program={"target": n.object_id, "logic": lg.to_dict()}))

    # what stands on / under a nameable object
    for rel, verbs in (("on", ["What is on {0}?", "What is placed on top of {0}?"]), ("under", ["What is under {0}?", "What is below {0}?"])):
        for b in nodes:
            items = graph.inverse(rel, b.object_id)
            name = graph.anchor_phrase(b)
            cats = {graph.node(i).category for i in items}
            if not items or name is None or len(cats) != 1:
                continue
            cat = cats.pop()
            answers = (cat,) if len(items) == 1 else (plural(cat), f"{len(items)} {plural(cat)}", cat)
            q = verbs[int(rng.integers(len(verbs)))].format(name)
            out.append(Question(f"what_{rel}", q[0].upper() + q[1:], answers, tuple(items),
                                program={"relation": rel, "anchor": b.object_id, "category": cat}))

    # how many of a kind are next to a nameable object (chairs around a table ...)
    for b in nodes:
        name = graph.anchor_phrase(b)
        if name is None:
            continue
        near = [graph.node(i) for i in graph.inverse("next_to", b.object_id)]
        for cat in sorted({m.category for m in near}):
            ids = [m.object_id for m in near if m.category == cat]
            if len(ids) >= 2:
                word = "around" if b.category == "table" else "next to"
                out.append(Question("count_next_to", f"How many {plural(cat)} are {word} {name}?", (str(len(ids)),), tuple(ids),
                                    program={"relation": "next_to", "anchor": b.object_id, "category": cat}))

    # where is a one-of-a-kind object
    for n in nodes:
        if len(counts[n.category]) != 1:
            continue
        answers = []
        for rel in ("on", "under", "next_to"):
            for b in graph.related(rel, n.object_id):
                name = graph.anchor_phrase(graph.node(b))
                if name:
                    answers.append(f"{rel.replace('_', ' ')} {name}")
        for lm, landmark in (("door", graph.door), ("window", graph.window)):
            if near_fn(n, landmark):
                answers.append(f"near the {lm}")
        if answers:
            out.append(Question("where", f"Where is the {n.category} located?", tuple(answers), (n.object_id,),
                                program={"target": n.object_id}))

    # counting
    for cat, ids in sorted(counts.items()):
        out.append(Question("count", f"How many {plural(cat)} are there in the room?", (str(len(ids)),), tuple(ids),
                            program={"category": cat}))

    # what is the <colour> thing <relation> <anchor>
    for rel in ("on", "next_to", "under"):
        for b in nodes:
            name = graph.anchor_phrase(b)
            if name is None:
                continue
            subjects = [graph.node(i) for i in graph.inverse(rel, b.object_id)]
            for color in sorted({m.color for m in subjects}):
                hits = [m for m in subjects if m.color == color]
                if len(hits) == 1 and hits[0].category != b.category:
                    word = rel.replace("_", " ")
                    out.append(Question("what_color_object", f"What is the {color} object {word} {name}?",
                                        (hits[0].category,), (hits[0].object_id,),
                                        program={"relation": rel, "anchor": b.object_id, "color": color}))
    return _choice(rng, out, limit)


def _relation_text(graph: SceneGraph, lg: Logic, n: Node, rng) -> str | None:
    if lg.relation in ("largest", "smallest"):
        return None
    ph = relation_phrase(graph, lg, rng)
    if ph is None:
        return None
    return f" that is {ph}" if lg.relation in ("closest", "farthest") else f" {ph}"


# ----------------------------------------------------------------------------------------- VSI-Bench
def vsi_questions(
    graph: SceneGraph,
    room_area: float,
    first_frame: dict[int, int],
    rng: np.random.Generator,
) -> list[Question]:
    """Questions of every VSI-Bench type (route planning excepted) with ground-truth answers."""
    out: list[Question] = []
    nodes = graph.nodes
    by_cat: dict[str, list[Node]] = {}
    for n in nodes:
        by_cat.setdefault(n.category, []).append(n)
    singles = [v[0] for v in by_cat.values() if len(v) == 1]

    # object counting: prefer categories with several objects
    cats = sorted(by_cat, key=lambda c: (-len(by_cat[c]), c))
    for cat in cats[:3]:
        out.append(Question("object_counting", f"How many {plural(cat)} are in this room?", (str(len(by_cat[cat])),),
                            tuple(n.object_id for n in by_cat[cat]), program={"category": cat}))

    # absolute distance between two one-of-a-kind objects
    pairs = [(a, b) for a, b in combinations(singles, 2) if box_distance(a, b) >= 0.1]
    for a, b in _choice(rng, pairs, 3):
        d = box_distance(a, b)
        out.append(Question("object_abs_distance",
                            f"What is the distance between the {a.category} and the {b.category} in metres, measured between the closest points of the two objects?",
                            (f"{d:.2f}",), (a.object_id, b.object_id), program={"objects": [a.object_id, b.object_id]}))

    # object size
    for a in _choice(rng, singles, 3):
        cm = int(round(_longest_side(a) * 100))
        out.append(Question("object_size_estimation",
                            f"How long is the longest side of the {a.category} (its length, width or height, whichever is greatest), in centimetres?",
                            (str(cm),), (a.object_id,), program={"object": a.object_id}))

    out.append(Question("room_size_estimation", "What is the floor area of this room in square metres?",
                        (f"{room_area:.1f}",), (), program={}))

    # relative distance: which of four is nearest to a reference
    for ref in _choice(rng, singles, 4):
        others = [m for m in singles if m is not ref]
        if len(others) < 4:
            break
        chosen = _choice(rng, others, 4)
        d = sorted((box_distance(ref, m), m.object_id) for m in chosen)
        if d[1][0] - d[0][0] < REL_DISTANCE_MARGIN:
            continue
        order = rng.permutation(4)
        opts = [chosen[i] for i in order]
        letter = LETTERS[[m.object_id for m in opts].index(d[0][1])]
        q = (f"Which of these objects is nearest to the {ref.category}, measured between closest points: "
             + ", ".join(f"the {m.category}" for m in opts[:3]) + f" or the {opts[3].category}?")
        out.append(Question("object_rel_distance", q, (letter,), (ref.object_id, *[m.object_id for m in opts]),
                            tuple(f"{LETTERS[i]}. {m.category}" for i, m in enumerate(opts)),
                            program={"reference": ref.object_id, "choices": [m.object_id for m in opts]}))
        if sum(q.kind == "object_rel_distance" for q in out) >= 2:
            break

    # relative direction, three difficulties
    triples = [(a, b, c) for a, b, c in permutations(singles, 3)
               if np.linalg.norm(a.center[:2] - b.center[:2]) >= 0.8 and np.linalg.norm(a.center[:2] - c.center[:2]) >= 0.8]
    order = rng.permutation(len(triples)) if triples else []
    made = {"easy": 0, "medium": 0, "hard": 0}
    for i in order:
        a, b, c = triples[int(i)]
        ang = direction_angle(a, b, c)
        for level in ("easy", "medium", "hard"):
            if made[level] >= 2:
                continue
            answer = direction_label(ang, level)
            if answer is None:
                continue
            opts = {"easy": ["left", "right"], "medium": ["left", "right", "back"],
                    "hard": ["front-left", "front-right", "back-left", "back-right"]}[level]
            opts = [opts[j] for j in rng.permutation(len(opts))]
            stem = f"Suppose I am standing by the {a.category} and facing the {b.category}. "
            tail = {"easy": f"Is the {c.category} to my left or to my right?",
                    "medium": f"Is the {c.category} to my left, to my right, or behind me?",
                    "hard": f"Is the {c.category} to my front-left, front-right, back-left or back-right?"}[level]
            out.append(Question(f"object_rel_direction_{level}", stem + tail, (LETTERS[opts.index(answer)],),
                                (a.object_id, b.object_id, c.object_id), tuple(f"{LETTERS[j]}. {o}" for j, o in enumerate(opts)),
                                program={"standing": a.object_id, "facing": b.object_id, "target": c.object_id, "level": level}))
            made[level] += 1
            break
        if all(v >= 2 for v in made.values()):
            break

    # appearance order of four categories
    first_cat: dict[str, int] = {}
    for n in nodes:
        f = first_frame.get(n.object_id)
        if f is not None:
            first_cat[n.category] = min(first_cat.get(n.category, f), f)
    cats = sorted(first_cat)
    made_orders: list[list[str]] = []
    for _ in range(40):  # random sets of four whose first appearances are clearly apart
        if len(cats) < 4 or len(made_orders) >= 2:
            break
        pick = _choice(rng, cats, 4)
        times = sorted((first_cat[c], c) for c in pick)
        if min(b[0] - a[0] for a, b in zip(times, times[1:])) < APPEARANCE_MIN_GAP_FRAMES:
            continue
        truth = [c for _, c in times]
        if truth in made_orders:
            continue
        made_orders.append(truth)
        perms = [truth]
        while len(perms) < 4:
            p = [pick[j] for j in rng.permutation(4)]
            if p not in perms:
                perms.append(p)
        perms = [perms[j] for j in rng.permutation(4)]
        shown = [pick[j] for j in rng.permutation(4)]
        out.append(Question("obj_appearance_order",
                            "In which order do these categories first appear in the video: " + ", ".join(shown) + "?",
                            (LETTERS[perms.index(truth)],), (),
                            tuple(f"{LETTERS[j]}. {', '.join(p)}" for j, p in enumerate(perms)),
                            program={"categories": pick}))
    return out


def _longest_side(n: Node) -> float:
    return float(n.obb_size.max())


def direction_label(angle: float, level: str) -> str | None:
    """The answer for a direction ``angle`` (degrees, left positive), or None when too close to a boundary."""
    m = DIRECTION_MARGIN_DEG
    a = abs(angle)
    side = "left" if angle > 0 else "right"
    if level == "easy":
        return side if m <= a <= 180 - m else None
    if level == "medium":
        if a >= 135 + m:
            return "back"
        if 45 + m <= a <= 135 - m:
            return side
        return None
    if min(a, abs(a - 90), 180 - a) < m:
        return None
    return ("front-" if a < 90 else "back-") + side
