"""A faithful text account of a delivered image, for judges that cannot see images.

On the embedded model's world the attribute probe reads every scene attribute back from the image;
the description lists what it read, how sure the probe is of each reading (its softmax probability),
the image's look in numbers (colourfulness and brightness, 0 to 1) and, against what the prompt
asked for, what matches and what does not. Other images (other sizes, other backbones) get no
description: a text-only judge then perceives nothing of the image (``perception = none``).
"""

from __future__ import annotations

import hashlib
import io

import numpy as np

from rlli.personas.judge import Delivery

LOOK = {"warm": "warm-toned", "cold": "cool-toned", "calm": "calm", "busy": "busy"}


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def read_png(data: bytes) -> np.ndarray:
    """uint8 RGB (H, W, 3) from PNG (or any image PIL reads) bytes; ValueError when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.array(im.convert("RGB"))  # a writable copy
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"not a readable image: {e}") from None


def scene_sentence(found: dict[str, str]) -> str:
    """'three red cars on the right, on a street, at night, in the rain; the look is warm-toned and busy'."""
    count = {"one": "one", "two": "two", "three": "three"}[found["count"]]
    noun = found["object"] if count == "one" else {"person": "people"}.get(found["object"], found["object"] + "s")
    ground = {"grass": "on grass", "sand": "on sand", "snow": "on snow", "water": "on water",
              "street": "on a street"}[found["ground"]]
    time = {"day": "by day", "sunset": "at sunset", "night": "at night"}[found["time"]]
    weather = {"clear": "in clear weather", "rain": "in the rain", "snow": "while it snows"}[found["weather"]]
    position = {"left": "on the left", "centre": "in the centre", "right": "on the right"}[found["position"]]
    look = [LOOK[v] for v in (found["warmth"], found["detail"]) if v in LOOK]
    text = f"{count} {found['colour']} {noun} {position}, {ground}, {time}, {weather}"
    return text + (f"; the look is {' and '.join(look)}" if look else "; the look is plain")


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def describe_found(found: dict[str, str], stated: dict[str, str], confidence: dict[str, float] | None = None,
                   look: tuple[float, float] | None = None) -> str:
    """The description from the probe's reading ``found`` (with each reading's ``confidence`` in [0, 1] when
    known), the image's ``look`` (colourfulness, brightness) and the prompt's stated attributes."""
    text = f"an image showing {scene_sentence(found)}."
    if confidence:
        text += " The probe's confidence: " + ", ".join(f"{k} {found[k]} {_pct(confidence[k])}"
                                                        for k in found if k in confidence) + "."
    if look is not None:
        text += f" Look: colourfulness {look[0]:.2f}, brightness {look[1]:.2f} (0 to 1)."
    if not stated:
        return text + " Your request named nothing this image model knows, so nothing could be checked."
    conf = confidence or {}
    sure = lambda k: f", {_pct(conf[k])} sure" if k in conf else ""  # noqa: E731
    hits = [f"{k} {v}" for k, v in stated.items() if found.get(k) == v]
    misses = [f"{k} {v} (it shows {found.get(k)}{sure(k)})" for k, v in stated.items() if found.get(k) != v]
    text += f" It matches {len(hits)} of the {len(stated)} things you asked for"
    text += f": right {', '.join(hits)}" if hits else ""
    text += f"; wrong {', '.join(misses)}." if misses else "."
    return text


def probe_reading(image: np.ndarray) -> tuple[dict[str, str], dict[str, float]] | None:
    """(value, probability) per attribute the probe reads from one 64x64 image; None without the probe's weights."""
    import torch

    from rlli.diffusion.tiny import world

    try:
        from rlli.diffusion.fidelity import get_probe
        from rlli.diffusion.tiny.probe import to_input

        model = get_probe()
    except FileNotFoundError:
        return None
    model.eval()
    with torch.no_grad():
        logits = model(to_input(np.asarray(image)[None]))
    found, conf = {}, {}
    for k in world.ATTRIBUTE_NAMES:
        probs = torch.softmax(logits[k][0].float(), 0)
        i = int(probs.argmax())
        found[k], conf[k] = world.ATTRIBUTES[k][i], float(probs[i])
    return found, conf


def describe_image(image: np.ndarray, prompt: str) -> str:
    """The description of a 64x64 image of the embedded world, or '' when there is none."""
    from rlli.diffusion.tiny import world

    image = np.asarray(image)
    if image.shape != (world.SIZE, world.SIZE, 3):
        return ""
    reading = probe_reading(image)
    if reading is None:  # the probe's weights are not installed
        return ""
    look = look_extras(image)
    numbers = (look["colourfulness"], look["brightness"]) if look else None
    return describe_found(reading[0], world.parse_prompt(prompt), reading[1], numbers)


def look_extras(image: np.ndarray) -> dict[str, float]:
    """The image's look (colourfulness, brightness) as the parametric trait judge reads it, when that judge exists."""
    try:
        from rlli.personas.trait_judge import look_features
    except ImportError:
        return {}
    colourfulness, brightness = look_features(image)
    return {"colourfulness": colourfulness, "brightness": brightness}


def make_delivery(prompt: str, image: np.ndarray | None, quality: float = 1.0, delay_s: float = 0.0,
                  description: str | None = None, **extras) -> Delivery:
    """A :class:`Delivery` with the PNG, its hash and (unless given) the probe's description."""
    png = png_bytes(image) if image is not None else None
    if image is not None and "colourfulness" not in extras:
        extras.update(look_extras(image))
    if description is None:
        description = describe_image(image, prompt) if image is not None else ""
    return Delivery(prompt=prompt, description=description, quality=float(quality), delay_s=float(delay_s),
                    image_png=png, image_hash=hashlib.sha256(png).hexdigest() if png else "", extras=dict(extras))
