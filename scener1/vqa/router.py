"""Which kind of question is this, about which objects: rules over the benchmarks' phrasing, plus a fallback.

The VSI-Bench templates and the synthetic benchmark's own wording (``scener1.synth.qa``) are matched by regular
expressions; anything else is ``free_form`` (ScanQA / SQA3D style) and goes to the VLM head. Object mentions are
read into a :class:`Mention`: the category (singular, lower case), attribute words (colours, sizes) and any
qualifier after the head noun ("sofa under the whiteboard"). Multiple-choice options are parsed into
(letter, text) pairs whether they come as ``"A. left"`` or as bare texts.

Everything here is pure and never raises on a question's wording: an unmatched question is free-form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..parsing import singular
from ..prompts import MAX_QUERY_CHARS

#: VSI-Bench question types answered by measurement (scored by MRA).
NUMERIC_TYPES = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation")
#: VSI-Bench multiple-choice types (scored by exact match of the option letter).
CHOICE_TYPES = (
    "object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard",
    "route_planning", "obj_appearance_order",
)
FREE_FORM = "free_form"
QUESTION_TYPES = (*NUMERIC_TYPES, *CHOICE_TYPES, FREE_FORM)

MAX_QUESTION_CHARS = MAX_QUERY_CHARS  # the VLM head's prompt takes no longer question
LETTERS = "ABCDEFGH"

COLOURS = frozenset(
    ["red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "grey", "gray", "beige", "tan", "silver", "gold", "golden", "cream", "dark", "light", "navy", "maroon", "teal", "turquoise", "wooden", "metal", "metallic", "glass"]
)
SIZES = frozenset(["small", "large", "big", "little", "tall", "short", "long", "wide", "narrow", "tiny", "huge", "round", "square"])
_ARTICLES = ("the ", "a ", "an ", "this ", "that ", "these ", "those ", "my ")
#: words that end an object's head noun and start a qualifier ("sofa under the whiteboard")
_QUALIFIERS = (
    " under ", " on ", " above ", " below ", " beside ", " behind ", " near ", " next to ", " closer to ",
    " closest to ", " farther from ", " in front of ", " by ", " with ", " that ", " which ", " in ", " at ",
    " against ", " between ", " of the ", " to the ", " is ", " are ",
)


@dataclass(frozen=True)
class Mention:
    """An object named in a question: ``category`` is the singular head noun phrase ("trash can")."""

    text: str  # as written, cleaned
    category: str
    attributes: tuple[str, ...] = ()
    qualifier: str = ""  # what follows the head noun ("under the whiteboard")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "category": self.category}
        if self.attributes:
            out["attributes"] = list(self.attributes)
        if self.qualifier:
            out["qualifier"] = self.qualifier
        return out


@dataclass(frozen=True)
class Option:
    letter: str
    text: str


@dataclass(frozen=True)
class RoutedQuestion:
    """A question read: its type, the objects it names by role, and its options.

    ``roles`` maps a role to its mention(s): ``object`` (size, counting), ``objects`` (abs. distance: two),
    ``reference`` and ``choices`` (rel. distance), ``standing`` / ``facing`` / ``target`` (rel. direction),
    ``start`` / ``facing`` / ``destination`` / ``waypoints`` (route planning), ``categories`` (appearance order).
    """

    question: str
    qtype: str
    roles: dict[str, Any] = field(default_factory=dict)
    options: tuple[Option, ...] = ()
    extreme: str = "closest"  # rel. distance: "closest" or "farthest"
    rule: str = ""  # which rule matched (for the trace)

    @property
    def numeric(self) -> bool:
        return self.qtype in NUMERIC_TYPES

    @property
    def multiple_choice(self) -> bool:
        return bool(self.options) or self.qtype in CHOICE_TYPES

    @property
    def mentions(self) -> list[Mention]:
        """Every mention, in role order, once each."""
        out: list[Mention] = []
        for value in self.roles.values():
            for m in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(m, Mention) and m not in out:
                    out.append(m)
        return out

    def to_dict(self) -> dict[str, Any]:
        roles = {}
        for k, v in self.roles.items():
            if isinstance(v, Mention):
                roles[k] = v.to_dict()
            elif isinstance(v, (list, tuple)):
                roles[k] = [m.to_dict() if isinstance(m, Mention) else m for m in v]
            else:
                roles[k] = v
        out = {"type": self.qtype, "rule": self.rule, "roles": roles,
               "options": [f"{o.letter}. {o.text}" for o in self.options]}
        if self.qtype == "object_rel_distance":
            out["extreme"] = self.extreme
        return out


# ---------------------------------------------------------------------------------------------- text helpers
def clean_question(question: Any) -> str:
    """The question on one line; a question that is not text, empty or too long is a ConfigError."""
    if not isinstance(question, str):
        raise ConfigError(f"the question must be text, got {type(question).__name__}")
    text = " ".join(re.sub(r"<\|[^|<>]{0,40}\|>", " ", question).split())
    if not text:
        raise ConfigError("the question is empty")
    if len(text) > MAX_QUESTION_CHARS:
        raise ConfigError(f"the question is {len(text)} characters long; at most {MAX_QUESTION_CHARS} are accepted")
    return text


def mention(text: str) -> Mention:
    """Read an object phrase ("the two red chairs", "trash bin(s)", "sofa under the whiteboard")."""
    raw = " ".join(str(text).replace("\u2019", "'").split()).strip(" .,;:?!\"'")
    t = " " + raw.lower() + " "
    t = t.replace("(s)", "").replace("(es)", "")
    qualifier = ""
    cut = min((t.find(q, 1) for q in _QUALIFIERS if t.find(q, 1) > 0), default=-1)
    if cut > 0:
        qualifier = t[cut:].strip()
        t = t[:cut] + " "
    t = t.strip()
    changed = True
    while changed:
        changed = False
        for a in _ARTICLES:
            if t.startswith(a):
                t, changed = t[len(a):], True
    words = [w for w in re.split(r"[\s]+", t) if w]
    words = [w for w in words if not re.fullmatch(r"\d+|one|two|three|four|five|six|seven|eight|nine|ten", w)]
    attributes = tuple(w for w in words if w in COLOURS or w in SIZES)
    head = [w for w in words if w not in COLOURS and w not in SIZES] or words
    if head:
        head[-1] = singular(head[-1])
    category = " ".join(head).strip(" -")
    return Mention(raw, category or raw.lower(), attributes, qualifier)


def parse_options(options: Sequence[Any] | None) -> tuple[Option, ...]:
    """``["A. left", "B. right"]`` or ``["left", "right"]`` as (letter, text) pairs (letters A, B, ... when absent)."""
    if options is None:
        return ()
    if isinstance(options, str):
        raise ConfigError("options must be a list of texts, not one string")
    opts = [" ".join(str(o).split()) for o in options]
    if len(opts) > len(LETTERS):
        raise ConfigError(f"at most {len(LETTERS)} options are supported, got {len(opts)}")
    out = []
    for k, o in enumerate(opts):
        if not o:
            raise ConfigError(f"option {k + 1} is empty")
        m = re.match(r"^\(?([A-Ha-h])[.):]\s*(.*)$", o)
        if m and m.group(2):
            out.append(Option(m.group(1).upper(), m.group(2).strip()))
        else:
            out.append(Option(LETTERS[k], o))
    letters = [o.letter for o in out]
    if len(set(letters)) != len(letters):
        raise ConfigError(f"options repeat a letter: {', '.join(letters)}")
    return tuple(out)


def _split_list(text: str) -> list[str]:
    """"a, b, c or d" / "the a, the b and the c" -> items."""
    parts = re.split(r",\s*(?:and\s+|or\s+)?|\s+or\s+|\s+and\s+", text.strip().rstrip("?."))
    return [p.strip() for p in parts if p.strip()]


# ---------------------------------------------------------------------------------------------- the rules
_COUNT = re.compile(
    r"^how many (?P<obj>[\w\s()'\-]+?) (?:are|is) (?:there )?(?:in|inside|within) (?:this|the) "
    r"(?:room|scene|space|house|apartment|video)\b", re.IGNORECASE)
_COUNT_LOOSE = re.compile(r"^how many (?P<obj>[\w\s()'\-]+?) (?:are|is) (?:there|in the video)\s*\??$", re.IGNORECASE)
_ABS_DIST = re.compile(
    r"distance between (?:the\s+)?(?P<a>[\w\s()'\-]+?) and (?:the\s+)?(?P<b>[\w\s()'\-]+?)"
    r"(?=\s*\(|\s+in\s+met|\s*[?,.]|\s+measured|\s*$)", re.IGNORECASE)
_HOW_FAR = re.compile(r"how far (?:away )?is (?:the\s+)?(?P<a>[\w\s'\-]+?) from (?:the\s+)?(?P<b>[\w\s'\-]+?)\s*(?:\(|\?|,|$|in met)",
                      re.IGNORECASE)
_SIZE = re.compile(
    r"(?:longest (?:dimension|side|edge)|length of the longest)[^?]*? of (?:the\s+)?(?P<obj>[\w\s'\-]+?)"
    r"(?=\s*\(|\s*,|\s*\?|\s+measured|\s+in\s+cent|\s*$)", re.IGNORECASE)
_SIZE_HOW = re.compile(r"how (?:tall|long|wide|high|big|large) is (?:the\s+)?(?P<obj>[\w\s'\-]+?)\s*(?:\(|,|\?|in cent|$)",
                       re.IGNORECASE)
_ROOM = re.compile(r"^(?:what is |what's |estimate )?(?:the )?(?:(?:floor )?(?:size|area) of (?:this|the) (?:room|space)|"
                   r"floor area)|^how (?:big|large) is (?:this|the) room|\bin square met", re.IGNORECASE)
_REL_DIST = re.compile(
    r"which of (?:these|the following) objects(?: \((?P<list>[^)]*)\))? is (?:the )?(?P<ext>closest|nearest|farthest|"
    r"furthest) to (?:the\s+)?(?P<ref>[\w\s'\-]+?)(?=\s*[?,.:]|\s+measured|\s*$)(?:[^:?]*:\s*(?P<tail>[^?]*))?", re.IGNORECASE)
_STANDING = re.compile(
    r"standing (?:by|at|next to|beside) (?:the\s+)?(?P<a>[\w\s'\-]+?),? and facing (?:the\s+)?(?P<b>[\w\s'\-]+?)\s*[,.]"
    r"\s*(?:is|where is) (?:the\s+)?(?P<c>[\w\s'\-]+?) (?:to|on|in|behind)\b", re.IGNORECASE)
_ROUTE = re.compile(
    r"beginning (?:at|by|near|next to) (?:the\s+)?(?P<a>[^,.]+?)(?:,?\s*(?:and\s+)?(?:facing (?:the\s+)?(?P<b>[^,.]+?)|"
    r"with your back to (?:the\s+)?(?P<away>[^,.]+?)))?\s*[,.].*?navigate to (?:the\s+)?(?P<c>[^.]+?)\s*\.", re.IGNORECASE)
_ROUTE_STEP = re.compile(r"(?:^|\s)(?P<n>\d+)\.\s*(?P<step>.*?)(?=\s+\d+\.\s|\s+you have reached|$)", re.IGNORECASE)
_APPEAR = re.compile(r"(?:first[- ]time appearance order|order do these categories first appear|order of first appearance)"
                     r"[^:]*:\s*(?P<list>[^?]+)", re.IGNORECASE)


def _direction_level(question: str, options: Sequence[Option]) -> str:
    texts = " ".join([question.lower(), *(o.text.lower() for o in options)])
    if "front-left" in texts or "back-right" in texts or "quadrant" in texts:
        return "hard"
    if options:
        if any(o.text.strip().lower() in ("back", "behind", "behind me") for o in options):
            return "medium"
        return "easy"
    return "medium" if re.search(r"\bback\b|\bbehind\b", question.lower()) else "easy"


def route(question: str, options: Sequence[Any] | None = None) -> RoutedQuestion:
    """Classify ``question`` (VSI-Bench types or ``free_form``) and extract the objects it names.

    Bad arguments (not text, empty, malformed options) raise :class:`ConfigError`; any wording is accepted.
    """
    q = clean_question(question)
    opts = parse_options(options)

    m = _APPEAR.search(q)
    if m:
        cats = [mention(c) for c in _split_list(m.group("list"))]
        if len(cats) >= 2:
            return RoutedQuestion(q, "obj_appearance_order", {"categories": cats}, opts, rule="appearance_order")
    m = _ROUTE.search(q)
    if m:
        steps = [(int(s.group("n")), s.group("step").strip()) for s in _ROUTE_STEP.finditer(q[m.end():])]
        waypoints = []
        for _, step in steps:
            g = re.match(r"go forward until (?:you reach |reaching )?(?:past )?(?:the\s+)?(?P<w>.+)$", step, re.IGNORECASE)
            if g:
                waypoints.append(mention(g.group("w")))
            elif "fill in" in step.lower():
                waypoints.append("turn")
        roles = {"start": mention(m.group("a")), "destination": mention(m.group("c")), "steps": waypoints}
        if m.group("b"):
            roles["facing"] = mention(m.group("b"))
        elif m.group("away"):
            roles["facing_away"] = mention(m.group("away"))
        return RoutedQuestion(q, "route_planning", roles, opts, rule="route")
    m = _STANDING.search(q)
    if m:
        level = _direction_level(q, opts)
        roles = {"standing": mention(m.group("a")), "facing": mention(m.group("b")), "target": mention(m.group("c"))}
        return RoutedQuestion(q, f"object_rel_direction_{level}", roles, opts, rule=f"direction_{level}")
    m = _REL_DIST.search(q)
    if m:
        if opts:
            choices = [mention(o.text) for o in opts]
        else:
            listed = m.group("list") or m.group("tail") or ""
            choices = [mention(c) for c in _split_list(listed)]
        ext = "farthest" if m.group("ext").lower() in ("farthest", "furthest") else "closest"
        roles = {"reference": mention(m.group("ref")), "choices": choices}
        return RoutedQuestion(q, "object_rel_distance", roles, opts, extreme=ext, rule="rel_distance")
    m = _ABS_DIST.search(q) or _HOW_FAR.search(q)
    if m and not opts:
        return RoutedQuestion(q, "object_abs_distance", {"objects": [mention(m.group("a")), mention(m.group("b"))]},
                              opts, rule="abs_distance")
    m = _SIZE.search(q)
    if m and not opts:
        return RoutedQuestion(q, "object_size_estimation", {"object": mention(m.group("obj"))}, opts, rule="size")
    m = _SIZE_HOW.search(q)
    if m and not opts and re.search(r"cent|\bcm\b", q, re.IGNORECASE):
        return RoutedQuestion(q, "object_size_estimation", {"object": mention(m.group("obj"))}, opts, rule="size_how")
    if _ROOM.search(q) and not opts:
        return RoutedQuestion(q, "room_size_estimation", {}, opts, rule="room_size")
    m = _COUNT.search(q) or _COUNT_LOOSE.search(q)
    if m and not opts:
        return RoutedQuestion(q, "object_counting", {"object": mention(m.group("obj"))}, opts, rule="counting")
    return RoutedQuestion(q, FREE_FORM, {}, opts, rule="fallback")
