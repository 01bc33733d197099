"""The procedural scene world the embedded text-to-image model is trained on.

A scene is a :class:`Scene`: nine categorical attributes. :func:`render` draws it as a 64x64 RGB
image with numpy (randomised details: sizes, spacing, the sun's place, decorations), and
:func:`caption` writes one of many natural-language captions for it. A caption mentions only
some attributes; the attributes it leaves out are free, so the same prompt has renditions that
differ in look (bright and busy versus calm, warm versus cold) - which is what personas disagree
about.

Held out from training, never rendered for it: every (time, ground, object, colour) combination
that :func:`is_held_out_combo` marks (about 10%), and the caption frames in ``TEST_FRAMES``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

SIZE = 64

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "time": ("day", "sunset", "night"),
    "weather": ("clear", "rain", "snow"),
    "ground": ("grass", "sand", "snow", "water", "street"),
    "object": ("house", "tree", "mountain", "boat", "car", "person"),
    "colour": ("red", "orange", "yellow", "green", "blue", "purple"),
    "count": ("one", "two", "three"),
    "position": ("left", "centre", "right"),
    "warmth": ("neutral", "warm", "cold"),
    "detail": ("normal", "calm", "busy"),
}
ATTRIBUTE_NAMES = tuple(ATTRIBUTES)


@dataclass(frozen=True)
class Scene:
    time: str
    weather: str
    ground: str
    object: str
    colour: str
    count: str
    position: str
    warmth: str
    detail: str

    def labels(self) -> dict[str, int]:
        return {k: ATTRIBUTES[k].index(v) for k, v in asdict(self).items()}


def is_held_out_combo(scene: Scene) -> bool:
    key = f"{scene.time}|{scene.ground}|{scene.object}|{scene.colour}".encode()
    return hashlib.sha1(key).digest()[0] < 26  # 26/256 ~ 10%


def random_scene(rng: np.random.Generator, split: str = "train") -> Scene:
    """A uniformly random scene from the train or the held-out ("test") part of the world."""
    while True:
        s = Scene(**{k: v[rng.integers(len(v))] for k, v in ATTRIBUTES.items()})
        if is_held_out_combo(s) == (split == "test"):
            return s


# ----------------------------------------------------------------------------- rendering

COLOURS = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.98, 0.55, 0.08),
    "yellow": (0.97, 0.90, 0.15),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.12, 0.30, 0.92),
    "purple": (0.58, 0.18, 0.78),
}
SKY = {  # top colour, horizon colour
    "day": ((0.35, 0.60, 0.95), (0.72, 0.86, 1.00)),
    "sunset": ((0.45, 0.25, 0.55), (1.00, 0.62, 0.30)),
    "night": ((0.02, 0.03, 0.12), (0.10, 0.12, 0.30)),
}
GROUND = {
    "grass": (0.30, 0.62, 0.22),
    "sand": (0.90, 0.80, 0.55),
    "snow": (0.94, 0.96, 1.00),
    "water": (0.15, 0.42, 0.72),
    "street": (0.32, 0.32, 0.35),
}
LIGHT = {"day": 1.0, "sunset": 0.88, "night": 0.68}
TINT = {"neutral": (1.0, 1.0, 1.0), "warm": (1.12, 0.98, 0.78), "cold": (0.80, 0.95, 1.15)}
CENTRE_X = {"left": 15.0, "centre": 32.0, "right": 49.0}
COUNT = {"one": 1, "two": 2, "three": 3}

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def _paint(img: np.ndarray, mask: np.ndarray, colour) -> None:
    img[mask] = colour


def _rect(x0, y0, x1, y1) -> np.ndarray:
    return (_XX >= x0) & (_XX < x1) & (_YY >= y0) & (_YY < y1)


def _disc(cx, cy, r) -> np.ndarray:
    return (_XX - cx) ** 2 + (_YY - cy) ** 2 <= r * r


def _triangle(cx, top, base_y, half_w) -> np.ndarray:
    """Isosceles triangle with apex (cx, top) and base from cx-half_w to cx+half_w at base_y."""
    h = max(base_y - top, 1e-3)
    frac = (_YY - top) / h
    return (frac >= 0) & (frac <= 1) & (np.abs(_XX - cx) <= frac * half_w)


def _draw_object(img, kind: str, cx: float, base: float, size: float, colour, rng) -> None:
    dark = (0.12, 0.10, 0.10)
    if kind == "house":
        w, h = size, size * 0.7
        _paint(img, _rect(cx - w / 2, base - h, cx + w / 2, base), colour)
        _paint(img, _triangle(cx, base - h - size * 0.5, base - h, w * 0.62), (0.35, 0.18, 0.12))
        _paint(img, _rect(cx - w * 0.12, base - h * 0.45, cx + w * 0.12, base), dark)
    elif kind == "tree":
        _paint(img, _rect(cx - size * 0.09, base - size * 0.55, cx + size * 0.09, base), (0.40, 0.24, 0.10))
        _paint(img, _disc(cx, base - size * 0.85, size * 0.42), colour)
    elif kind == "mountain":
        top = base - size * 1.2
        _paint(img, _triangle(cx, top, base, size * 0.95), colour)
        _paint(img, _triangle(cx, top, top + size * 0.32, size * 0.95 * 0.27), (0.97, 0.97, 0.97))
    elif kind == "boat":
        hull = (_YY >= base - size * 0.3) & (_YY < base) & (
            np.abs(_XX - cx) <= size * 0.6 - (_YY - (base - size * 0.3)) * 0.8
        )
        _paint(img, _rect(cx - size * 0.04 - 0.5, base - size * 1.1, cx + size * 0.04 + 0.5, base - size * 0.3), dark)
        sail = _triangle(cx + 1, base - size * 1.05, base - size * 0.35, size * 0.4) & (_XX >= cx + 1)
        _paint(img, sail, (0.96, 0.96, 0.92))
        _paint(img, hull, colour)
    elif kind == "car":
        _paint(img, _rect(cx - size * 0.6, base - size * 0.42, cx + size * 0.6, base - size * 0.12), colour)
        _paint(img, _rect(cx - size * 0.32, base - size * 0.68, cx + size * 0.3, base - size * 0.40), colour)
        _paint(img, _rect(cx - size * 0.24, base - size * 0.62, cx + size * 0.22, base - size * 0.45), (0.75, 0.88, 0.95))
        for wx in (cx - size * 0.33, cx + size * 0.33):
            _paint(img, _disc(wx, base - size * 0.12, size * 0.14 + 0.6), dark)
    elif kind == "person":
        _paint(img, _rect(cx - size * 0.16, base - size * 0.35, cx - size * 0.04, base), dark)
        _paint(img, _rect(cx + size * 0.04, base - size * 0.35, cx + size * 0.16, base), dark)
        _paint(img, _rect(cx - size * 0.22, base - size * 0.85, cx + size * 0.22, base - size * 0.33), colour)
        _paint(img, _disc(cx, base - size * 1.0, size * 0.16 + 0.5), (0.93, 0.76, 0.60))
    else:  # pragma: no cover - guarded by ATTRIBUTES
        raise ValueError(kind)


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Draw a scene as float32 RGB in [0, 1], shape (64, 64, 3)."""
    img = np.zeros((SIZE, SIZE, 3), np.float32)
    horizon = 38.0 + rng.uniform(-3, 3)
    # sky: vertical gradient
    top, low = (np.array(c, np.float32) for c in SKY[scene.time])
    t = np.clip(_YY / horizon, 0, 1)[..., None]
    img[:] = top * (1 - t) + low * t
    # weather darkens and greys the sky
    if scene.weather != "clear":
        grey = np.float32(0.55 if scene.time != "night" else 0.15)
        sky = _YY < horizon
        img[sky] = img[sky] * 0.45 + grey * 0.55
    # sun or moon
    sx, sy = rng.uniform(6, 58), rng.uniform(6, 16)
    if scene.time == "day" and scene.weather == "clear":
        _paint(img, _disc(sx, sy, 4.5), (1.0, 0.95, 0.55))
    elif scene.time == "sunset":
        _paint(img, _disc(sx, horizon - 3, 6.0) & (_YY < horizon), (1.0, 0.45, 0.15))
    elif scene.time == "night":
        for _ in range(14):
            x, y = rng.integers(0, SIZE), rng.integers(0, int(horizon) - 2)
            img[y, x] = (0.9, 0.9, 0.8)
        _paint(img, _disc(sx, sy, 3.5), (0.92, 0.92, 0.82))
    # clouds when it rains or snows, and some when busy
    n_clouds = (3 if scene.weather != "clear" else 0) + {"calm": 0, "normal": 1, "busy": 3}[scene.detail]
    for _ in range(n_clouds):
        cx, cy, r = rng.uniform(0, 64), rng.uniform(3, 14), rng.uniform(2.5, 4.5)
        shade = 0.8 if scene.weather == "clear" else 0.5
        if scene.time == "night":
            shade *= 0.4
        m = _disc(cx, cy, r) | _disc(cx + r, cy + 1, r * 0.8) | _disc(cx - r, cy + 1, r * 0.8)
        _paint(img, m, (shade, shade, shade * 1.02))
    # ground
    g = _YY >= horizon
    _paint(img, g, GROUND[scene.ground])
    if scene.ground == "water":
        for _ in range(6):
            y, x = rng.uniform(horizon + 2, 63), rng.uniform(0, 54)
            _paint(img, _rect(x, y, x + rng.uniform(4, 10), y + 1), (0.45, 0.65, 0.90))
    elif scene.ground == "street":
        y = horizon + (SIZE - horizon) * 0.62
        for x in range(int(rng.integers(0, 8)), SIZE, 12):
            _paint(img, _rect(x, y, x + 6, y + 1.2), (0.95, 0.95, 0.90))
    elif scene.ground == "grass":
        shade = np.float32(0.9) + 0.1 * np.sin(_XX * 0.7 + _YY * 1.3)
        img[g] = img[g] * shade[g][:, None]
    # small decorations: more when busy
    n_deco = {"calm": 0, "normal": 3, "busy": 14}[scene.detail]
    for _ in range(n_deco):
        if rng.random() < 0.4:  # a bird in the sky
            x, y = rng.uniform(2, 60), rng.uniform(4, horizon - 6)
            img[int(y), int(x)] = img[int(y), int(x) + 2] = (0.1, 0.1, 0.1)
            img[int(y) + 1, int(x) + 1] = (0.1, 0.1, 0.1)
        else:  # a flower or stone on the ground
            x, y = rng.uniform(1, 62), rng.uniform(horizon + 1, 62)
            c = (1.0, 0.95, 0.95) if rng.random() < 0.5 else (0.95, 0.35, 0.70)
            _paint(img, _disc(x, y, 0.9), c)
    # the main objects
    n = COUNT[scene.count]
    size = {1: 18.0, 2: 13.0, 3: 10.5}[n] * rng.uniform(0.9, 1.1)
    if scene.object == "mountain":
        size *= 0.85
    spacing = size * (1.35 if scene.object != "mountain" else 1.25)
    cx0 = CENTRE_X[scene.position] + rng.uniform(-2, 2)
    base = horizon + rng.uniform(6, 10) if scene.object != "mountain" else horizon + 2
    colour = np.clip(np.array(COLOURS[scene.colour]) + rng.uniform(-0.04, 0.04, 3), 0, 1)
    for i in range(n):
        cx = cx0 + (i - (n - 1) / 2) * spacing
        cx = float(np.clip(cx, size * 0.4, SIZE - size * 0.4))
        _draw_object(img, scene.object, cx, base + rng.uniform(-1, 1), size, colour, rng)
    # weather particles over everything
    if scene.weather == "rain":
        for _ in range(45):
            x, y = rng.uniform(0, 64), rng.uniform(0, 60)
            for k in range(3):
                xi, yi = int(x - k * 0.5) % SIZE, int(y + k) % SIZE
                img[yi, xi] = img[yi, xi] * 0.4 + np.array((0.55, 0.65, 0.85)) * 0.6
    elif scene.weather == "snow":
        for _ in range(50):
            x, y = rng.integers(0, SIZE), rng.integers(0, SIZE)
            img[y, x] = (1.0, 1.0, 1.0)
    # light of the time of day, then the look's tint
    img *= LIGHT[scene.time]
    img *= np.array(TINT[scene.warmth], np.float32)
    return np.clip(img, 0, 1)


# ----------------------------------------------------------------------------- captions

OBJECT_WORDS = {
    "house": (("house", "houses"), ("cottage", "cottages"), ("cabin", "cabins"), ("home", "homes")),
    "tree": (("tree", "trees"), ("oak", "oaks"), ("leafy tree", "leafy trees")),
    "mountain": (("mountain", "mountains"), ("hill", "hills"), ("peak", "peaks")),
    "boat": (("boat", "boats"), ("sailboat", "sailboats"), ("ship", "ships")),
    "car": (("car", "cars"), ("automobile", "automobiles"), ("sedan", "sedans")),
    "person": (("person", "people"), ("man", "men"), ("woman", "women"), ("figure", "figures")),
}
COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine", "bright orange"),
    "yellow": ("yellow", "golden", "lemon yellow"),
    "green": ("green", "emerald", "lime green"),
    "blue": ("blue", "azure", "cobalt"),
    "purple": ("purple", "violet", "plum"),
}
COUNT_WORDS = {"one": ("a", "one", "a single"), "two": ("two", "a pair of"), "three": ("three", "a group of three")}
TIME_WORDS = {
    "day": ("during the day", "in daylight", "at noon", "in the morning", "by day"),
    "sunset": ("at sunset", "at dusk", "in the evening glow", "at sundown"),
    "night": ("at night", "at midnight", "under the night sky", "in the dark of night"),
}
WEATHER_WORDS = {
    "clear": ("in clear weather", "under clear skies", "on a fair day"),
    "rain": ("in the rain", "on a rainy day", "during a downpour", "as rain falls"),
    "snow": ("while it snows", "during snowfall", "in a snowstorm", "as snow falls"),
}
GROUND_WORDS = {
    "grass": ("on grass", "on a meadow", "in a green field", "on the lawn"),
    "sand": ("on sand", "on a beach", "in the desert", "on the dunes"),
    "snow": ("on snow", "in a snowy field", "on snowy ground", "on a snowfield"),
    "water": ("on water", "on a lake", "at sea", "on the river"),
    "street": ("on a street", "on the road", "on a city street", "on asphalt"),
}
POSITION_WORDS = {
    "left": ("on the left", "at the left side", "to the left"),
    "centre": ("in the centre", "in the middle", "at the center"),
    "right": ("on the right", "at the right side", "to the right"),
}
WARMTH_WORDS = {"warm": ("warm", "warm-toned", "cosy"), "cold": ("cold", "cool-toned", "icy")}
DETAIL_WORDS = {"calm": ("calm", "peaceful", "minimal"), "busy": ("busy", "lively", "cluttered")}

# "{look}" is an adjective phrase or empty; "{body}" the subject with its clauses.
TRAIN_FRAMES = (
    "{body}",
    "{look} scene: {body}",
    "a {look} picture of {body}",
    "a {look} painting of {body}",
    "{body}, {look}",
    "a {look} view: {body}",
    "{look} image of {body}",
)
TEST_FRAMES = (
    "an illustration showing {body}, {look} mood",
    "imagine {body} - {look} style",
)


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def caption_mentions(scene: Scene, rng: np.random.Generator) -> dict[str, bool]:
    """Which attributes a caption will state (object, colour and count always)."""
    p = {"time": 0.75, "weather": 0.5, "ground": 0.8, "position": 0.6, "warmth": 0.35, "detail": 0.35}
    m = {k: True for k in ("object", "colour", "count")}
    for k, prob in p.items():
        m[k] = bool(rng.random() < prob)
    # the neutral/normal look values have no words: they are never stated
    m["warmth"] = m["warmth"] and scene.warmth != "neutral"
    m["detail"] = m["detail"] and scene.detail != "normal"
    return m


def caption(scene: Scene, rng: np.random.Generator, split: str = "train",
            mentions: dict[str, bool] | None = None) -> tuple[str, dict[str, str]]:
    """A caption for the scene and the attributes it states ({name: value}).

    ``mentions`` fixes which attributes to state (default: drawn by :func:`caption_mentions`).
    """
    m = dict(mentions) if mentions is not None else caption_mentions(scene, rng)
    singular, plural = _pick(rng, OBJECT_WORDS[scene.object])
    noun = singular if scene.count == "one" else plural
    count_word = _pick(rng, COUNT_WORDS[scene.count])
    colour_word = _pick(rng, COLOUR_WORDS[scene.colour])
    if count_word == "a" and colour_word[0] in "aeiou":
        count_word = "an"
    subject = f"{count_word} {colour_word} {noun}"
    clauses = []
    for name, words in (("ground", GROUND_WORDS), ("position", POSITION_WORDS),
                        ("time", TIME_WORDS), ("weather", WEATHER_WORDS)):
        if m[name]:
            clauses.append(_pick(rng, words[getattr(scene, name)]))
    rng.shuffle(clauses)
    # sometimes the time leads the sentence
    body = " ".join([subject, *clauses])
    look_words = []
    if m["warmth"]:
        look_words.append(_pick(rng, WARMTH_WORDS[scene.warmth]))
    if m["detail"]:
        look_words.append(_pick(rng, DETAIL_WORDS[scene.detail]))
    rng.shuffle(look_words)
    look = " and ".join(look_words)
    frames = TEST_FRAMES if split == "test" else TRAIN_FRAMES
    frame = frames[0] if not look and split != "test" else _pick(rng, frames)
    if not look:
        text = body if split != "test" else frame.replace(", {look} mood", "").replace(" - {look} style", "").format(body=body)
    else:
        text = frame.format(body=body, look=look)
    text = " ".join(text.split())
    if frame == "{body}":  # this frame carries no look words
        m["warmth"] = m["detail"] = False
    stated = {k: getattr(scene, k) for k, v in m.items() if v}
    return text, stated


# ----------------------------------------------------------------------------- parsing prompts

def _word_table() -> list[tuple[str, str, str]]:
    rows = []
    for obj, pairs in OBJECT_WORDS.items():
        for s, p in pairs:
            rows += [(s, "object", obj), (p, "object", obj)]
    for table, name in ((COLOUR_WORDS, "colour"), (TIME_WORDS, "time"), (WEATHER_WORDS, "weather"),
                        (GROUND_WORDS, "ground"), (POSITION_WORDS, "position"),
                        (WARMTH_WORDS, "warmth"), (DETAIL_WORDS, "detail")):
        for value, words in table.items():
            rows += [(w, name, value) for w in words]
    rows += [("one", "count", "one"), ("a single", "count", "one"), ("two", "count", "two"),
             ("a pair of", "count", "two"), ("three", "count", "three")]
    # longest phrases first so "lime green" wins over "green"
    rows = [(phrase.replace("-", " "), name, value) for phrase, name, value in rows]
    return sorted(rows, key=lambda r: -len(r[0]))


_WORDS = _word_table()


def parse_prompt(prompt: str) -> dict[str, str]:
    """The world attributes a free-text prompt states, read from the caption vocabulary.

    Unknown words are ignored, so any prompt parses (possibly to nothing). A plural object noun
    without a number word means two or more and states no count; a singular one means one.
    """
    text = " " + " ".join(prompt.lower().replace(",", " ").replace("-", " ").replace(":", " ").split()) + " "
    norm = text
    found: dict[str, str] = {}
    for phrase, name, value in _WORDS:
        key = f" {phrase} "
        if key in text and name not in found:
            found[name] = value
            text = text.replace(key, " | ")
    if "count" not in found and "object" in found:
        singulars = {s for pairs in OBJECT_WORDS.values() for s, _ in pairs}
        if any(f" {s} " in norm for s in singulars):
            found["count"] = "one"
    return found
