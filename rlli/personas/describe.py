"""A faithful text account of a delivered image, for judges that cannot see images.

On the embedded model's world the attribute probe reads every scene attribute back from the image;
the description lists what it read and, against what the prompt asked for, what matches and what
does not. Other images (other sizes, other backbones) get no description.
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


def describe_found(found: dict[str, str], stated: dict[str, str]) -> str:
    """The description from the probe's reading ``found`` and the prompt's stated attributes."""
    text = f"an image showing {scene_sentence(found)}."
    if not stated:
        return text + " Your request named nothing this image model knows, so nothing could be checked."
    hits = [f"{k} {v}" for k, v in stated.items() if found.get(k) == v]
    misses = [f"{k} {v} (it shows {found.get(k)})" for k, v in stated.items() if found.get(k) != v]
    text += f" It matches {len(hits)} of the {len(stated)} things you asked for"
    text += f": right {', '.join(hits)}" if hits else ""
    text += f"; wrong {', '.join(misses)}." if misses else "."
    return text


def describe_image(image: np.ndarray, prompt: str) -> str:
    """The description of a 64x64 image of the embedded world, or '' when there is none."""
    from rlli.diffusion.tiny import world

    image = np.asarray(image)
    if image.shape != (world.SIZE, world.SIZE, 3):
        return ""
    try:
        from rlli.diffusion.fidelity import read_attributes

        found = read_attributes(image[None])[0]
    except FileNotFoundError:  # the probe's weights are not installed
        return ""
    return describe_found(found, world.parse_prompt(prompt))


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
