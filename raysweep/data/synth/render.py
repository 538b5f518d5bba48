"""Draw one synthetic HOI image: stick-figure people interacting with simple objects on a textured background.

The interaction is visible through pose and spatial relation, so an image classifier (and a detector) can learn it:

| verb | what is drawn |
|---|---|
| hold | front arm stretched out, the object touching the hand (an umbrella is held over the head) |
| carry | walking stride, both arms forward, the object lifted in front of the chest |
| throw | throwing arm raised, the object high in the air ahead, motion dashes between hand and object |
| kick | front leg stretched forward, ball touching the foot on the ground |
| ride | the person seated on the bicycle, hands on the handlebar, feet on the pedals |
| sit_on | sitting pose on the chair's seat |
| look_at | head tilted towards the object, which is at mid distance (at eye level if it is small) |
| fly | arm raised, a string from the hand to the kite high up |
| walk | walking stride, leash to the dog / hand on the handlebar of the bicycle beside |
| no_interaction | neutral pose facing away, the object far away on the ground |

Geometry is built in a person-sized local frame (feet at the origin, y down, a standing person is ~0.55 tall),
then fitted into a cell of the image. Drawing happens at a supersampled resolution for small images and is
box-filtered down, which keeps thin limbs visible at 64x64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from raysweep.data.synth.vocabulary import HOI_CLASSES, NO_INTERACTION

Point = tuple[float, float]
Box = tuple[float, float, float, float]
Color = tuple[int, int, int]


@dataclass(frozen=True)
class RenderedPair:
    """One drawn interaction; boxes are xyxy in pixels of the returned image (0-based, clipped to the image)."""

    verb: str
    object: str
    person_box: Box
    object_box: Box


@dataclass
class RenderedScene:
    image: Image.Image  # RGB, image_size x image_size
    pairs: list[RenderedPair]


# Object box sizes (width, height) in local units; objects that stand on the ground rather than being handled.
_SIZES: dict[str, tuple[float, float]] = {
    "ball": (0.10, 0.10),
    "bicycle": (0.40, 0.26),
    "book": (0.13, 0.10),
    "chair": (0.20, 0.36),
    "cup": (0.08, 0.10),
    "dog": (0.30, 0.19),
    "kite": (0.15, 0.26),
    "umbrella": (0.30, 0.30),
}
_GROUND_OBJECTS = frozenset({"bicycle", "chair", "dog"})

_LIMB_W = 0.03
_TORSO_W = 0.055
_HEAD_R = 0.062
_SKIN: tuple[Color, ...] = ((241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172))
_SHIRT: tuple[Color, ...] = ((200, 30, 30), (30, 60, 200), (20, 140, 60), (120, 40, 160), (230, 120, 0), (20, 20, 20))
_LIMB: tuple[Color, ...] = ((30, 30, 30), (50, 40, 90), (70, 50, 30), (40, 40, 40))


class _Sketch:
    """Drawing operations in local coordinates, each with a depth (drawn low to high) and an owner for boxes."""

    def __init__(self) -> None:
        self.ops: list[tuple[float, str, str, tuple]] = []

    def line(self, z: float, owner: str, pts: Sequence[Point], color: Color, width: float) -> None:
        self.ops.append((z, owner, "line", (tuple(pts), color, width)))

    def ellipse(
        self, z: float, owner: str, box: Box, fill: Color | None, outline: Color | None = None, width: float = 0.0
    ) -> None:
        self.ops.append((z, owner, "ellipse", (box, fill, outline, width)))

    def polygon(self, z: float, owner: str, pts: Sequence[Point], fill: Color, outline: Color | None = None) -> None:
        self.ops.append((z, owner, "polygon", (tuple(pts), fill, outline)))

    def points(self, owner: str | None = None) -> np.ndarray:
        """Every coordinate an op touches (widths included), [K, 2]; `owner` filters."""
        out: list[tuple[float, float]] = []
        for _, who, kind, args in self.ops:
            if owner is not None and who != owner:
                continue
            if kind == "ellipse":
                x0, y0, x1, y1 = args[0]
                out += [(x0, y0), (x1, y1)]
            else:
                half = args[2] / 2 if kind == "line" else 0.0
                for x, y in args[0]:
                    out += [(x - half, y - half), (x + half, y + half)]
        return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def _jitter(rng: np.random.Generator, color: Color, amount: int = 18) -> Color:
    c = np.clip(np.asarray(color) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _darker(color: Color, f: float = 0.55) -> Color:
    return (int(color[0] * f), int(color[1] * f), int(color[2] * f))


class _Frame:
    """Maps unit coordinates (u, v) in [0, 1]^2 of an object's box to local coordinates, optionally mirrored."""

    def __init__(self, box: Box, flip: bool = False):
        self.x0, self.y0, self.x1, self.y1 = box
        self.flip = flip
        self.w, self.h = self.x1 - self.x0, self.y1 - self.y0

    def p(self, u: float, v: float) -> Point:
        if self.flip:
            u = 1.0 - u
        return (self.x0 + u * self.w, self.y0 + v * self.h)

    def box(self, u0: float, v0: float, u1: float, v1: float) -> Box:
        (a, b), (c, d) = self.p(u0, v0), self.p(u1, v1)
        return (min(a, c), min(b, d), max(a, c), max(b, d))

    def s(self, frac: float) -> float:
        return frac * min(self.w, self.h)


# ---- objects: each recipe draws into a unit box; the "front" (head, handlebar) is at u = 1 -------------------------
def _draw_ball(sk: _Sketch, fr: _Frame, z: float, rng: np.random.Generator) -> None:
    body = _jitter(rng, (235, 110, 25))
    sk.ellipse(z, "object", fr.box(0, 0, 1, 1), body, (40, 25, 10), fr.s(0.06))
    seam = (30, 20, 10)
    sk.line(z, "object", [fr.p(0.5, 0.02), fr.p(0.5, 0.98)], seam, fr.s(0.06))
    sk.line(z, "object", [fr.p(0.1, 0.25), fr.p(0.35, 0.45), fr.p(0.35, 0.55), fr.p(0.1, 0.75)], seam, fr.s(0.06))
    sk.line(z, "object", [fr.p(0.9, 0.25), fr.p(0.65, 0.45), fr.p(0.65, 0.55), fr.p(0.9, 0.75)], seam, fr.s(0.06))


def _draw_cup(sk: _Sketch, fr: _Frame, z: float, rng: np.random.Generator) -> None:
    edge = (60, 80, 110)
    sk.ellipse(z, "object", fr.box(0.55, 0.22, 1.0, 0.72), None, edge, fr.s(0.12))
    body = [fr.p(0.0, 0.0), fr.p(0.78, 0.0), fr.p(0.66, 1.0), fr.p(0.12, 1.0)]
    sk.polygon(z, "object", body, _jitter(rng, (238, 242, 248), 8), edge)
    stripe = [fr.p(0.04, 0.42), fr.p(0.74, 0.42), fr.p(0.72, 0.6), fr.p(0.06, 0.6)]
    sk.polygon(z, "object", stripe, _jitter(rng, (30, 90, 210)))


def _draw_kite(sk: _Sketch, fr: _Frame, z: float, rng: np.random.Generator) -> None:
    top, right, bottom, left = fr.p(0.5, 0.0), fr.p(1.0, 0.24), fr.p(0.5, 0.65), fr.p(0.0, 0.24)
    sk.polygon(z, "object", [top, left, bottom], _jitter(rng, (225, 35, 165)))
    sk.polygon(z, "object", [top, right, bottom], _jitter(rng, (250, 215, 30)))
    sk.line(z, "object", [top, bottom], (40, 40, 40), fr.s(0.05))
    sk.line(z, "object", [left, right], (40, 40, 40), fr.s(0.05))
    tail = [fr.p(0.5, 0.65), fr.p(0.38, 0.74), fr.p(0.6, 0.83), fr.p(0.4, 0.92), fr.p(0.55, 1.0)]
    sk.line(z, "object", tail, (200, 20, 20), fr.s(0.06))


def _draw_chair(sk: _Sketch, fr: _Frame, z: float, rng: np.random.Generator) -> None:
    # Back rest at u = 0 (behind a sitting person), seat at v = 0.45.
    wood = _jitter(rng, (150, 90, 40))
    dark = _darker(wood)
    w = fr.s(0.12)
    sk.line(z, "object", [fr.p(0.08, 0.58), fr.p(0.08, 1.0)], dark, w)
    sk.line(z, "object", [fr.p(0.92, 0.58), fr.p(0.92, 1.0)], dark, w)
    sk.polygon(z, "object", [fr.p(0.0, 0.0), fr.p(0.16, 0.0), fr.p(0.16, 0.5), fr.p(0.0, 0.5)], wood, dark)
    sk.polygon(z, "object", [fr.p(0.0, 0.45), fr.p(1.0, 0.45), fr.p(1.0, 0.58), fr.p(0.0, 0.58)], wood, dark)
    for v in (0.12, 0.24, 0.36):  # slats: the wood texture
        sk.line(z, "object", [fr.p(0.02, v), fr.p(0.14, v)], dark, fr.s(0.04))


# Bicycle landmarks in its unit box (front wheel at u = 1).
_SEAT_UV, _BAR_UV, _CRANK_UV = (0.32, 0.2), (0.8, 0.1), (0.45, 0.72)


def _draw_bicycle(sk: _Sketch, fr: _Frame, z: float, rng: np.random.Generator) -> None:
    tyre, frame = (25, 25, 25), _jitter(rng, (30, 165, 70))
    w = fr.s(0.08)
    rear, front = fr.p(0.21, 0.71), fr.p(0.79, 0.71)
    r = min(0.21 * fr.w, 0.29 * fr.h)
    for cx, cy in (rear, front):
        sk.ellipse(z, "object", (cx - r, cy - r, cx + r, cy + r), None, tyre, w)
    crank, seat, head = fr.p(*_CRANK_UV), fr.p(0.34, 0.28), fr.p(0.72, 0.28)
    sk.line(z, "object", [rear, crank, seat, rear], frame, w)
    sk.line(z, "object", [seat, head, crank], frame, w)
    sk.line(z, "object", [front, fr.p(0.76, 0.12)], frame, w)
    sk.polygon(z, "object", [fr.p(0.24, 0.16), fr.p(0.42, 0.16), fr.p(0.38, 0.24), fr.p(0.26, 0.24)], tyre)
    sk.line(z, "object", [fr.p(0.72, 0.12), fr.p(0.9, 0.06)], tyre, w)


def _draw_umbrella(sk: _Sketch, fr: _Frame, z: float, rng: np.random.Generator) -> None:
    c1, c2 = _jitter(rng, (210, 35, 50)), _jitter(rng, (40, 70, 200))
    cx, cy = 0.5, 0.48
    n = 6
    for i in range(n):  # striped canopy: half an ellipse in n sectors
        a0, a1 = math.pi + i * math.pi / n, math.pi + (i + 1) * math.pi / n
        arc = [fr.p(cx + 0.5 * math.cos(a), cy + 0.48 * math.sin(a)) for a in np.linspace(a0, a1, 4)]
        sk.polygon(z, "object", [fr.p(cx, cy), *arc], c1 if i % 2 == 0 else c2)
    stick = (60, 45, 30)
    sk.line(z, "object", [fr.p(0.5, 0.02), fr.p(0.5, 0.9)], stick, fr.s(0.05))
    sk.line(z, "object", [fr.p(0.5, 0.9), fr.p(0.53, 0.99), fr.p(0.61, 1.0), fr.p(0.66, 0.93)], stick, fr.s(0.05))


def _draw_book(sk: _Sketch, fr: _Frame, z: float, rng: np.random.Generator) -> None:
    cover = _jitter(rng, (25, 95, 60))
    sk.polygon(z, "object", [fr.p(0, 0), fr.p(1, 0), fr.p(1, 1), fr.p(0, 1)], cover, _darker(cover))
    sk.polygon(z, "object", [fr.p(0, 0), fr.p(0.14, 0), fr.p(0.14, 1), fr.p(0, 1)], _darker(cover))
    sk.polygon(z, "object", [fr.p(0.8, 0.1), fr.p(0.96, 0.1), fr.p(0.96, 0.9), fr.p(0.8, 0.9)], (246, 236, 205))
    sk.polygon(z, "object", [fr.p(0.3, 0.28), fr.p(0.66, 0.28), fr.p(0.66, 0.44), fr.p(0.3, 0.44)], (230, 190, 60))


def _draw_dog(sk: _Sketch, fr: _Frame, z: float, rng: np.random.Generator) -> None:
    fur = _jitter(rng, (195, 145, 85))
    dark = _darker(fur, 0.45)
    w = fr.s(0.12)
    for u0, u1 in ((0.26, 0.22), (0.36, 0.4), (0.6, 0.58), (0.7, 0.74)):
        sk.line(z, "object", [fr.p(u0, 0.6), fr.p(u1, 1.0)], dark, w)
    sk.line(z, "object", [fr.p(0.16, 0.42), fr.p(0.0, 0.12)], dark, w)
    sk.ellipse(z, "object", fr.box(0.12, 0.28, 0.82, 0.72), fur)
    for _ in range(2):  # spots
        u, v = rng.uniform(0.25, 0.65), rng.uniform(0.35, 0.55)
        sk.ellipse(z, "object", fr.box(u, v, u + 0.12, v + 0.14), dark)
    sk.ellipse(z, "object", fr.box(0.7, 0.0, 1.0, 0.42), fur)
    sk.polygon(z, "object", [fr.p(0.72, 0.05), fr.p(0.82, 0.0), fr.p(0.8, 0.34)], dark)
    sk.ellipse(z, "object", fr.box(0.9, 0.12, 0.95, 0.2), (10, 10, 10))
    sk.ellipse(z, "object", fr.box(0.96, 0.2, 1.0, 0.28), (10, 10, 10))


_RECIPES = {
    "ball": _draw_ball,
    "bicycle": _draw_bicycle,
    "book": _draw_book,
    "chair": _draw_chair,
    "cup": _draw_cup,
    "dog": _draw_dog,
    "kite": _draw_kite,
    "umbrella": _draw_umbrella,
}
assert set(_RECIPES) == {o for _, o in HOI_CLASSES}
_KNOWN = frozenset(HOI_CLASSES)


# ---- people ---------------------------------------------------------------------------------------------------------
def _standing() -> dict[str, Point]:
    return {
        "head": (0.0, -0.485), "neck": (0.0, -0.41), "hip": (0.0, -0.22),
        "elbow_f": (0.05, -0.32), "hand_f": (0.07, -0.22), "elbow_b": (-0.05, -0.32), "hand_b": (-0.07, -0.22),
        "knee_f": (0.03, -0.11), "foot_f": (0.05, 0.0), "knee_b": (-0.03, -0.11), "foot_b": (-0.05, 0.0),
    }  # fmt: skip


def _stride(j: dict[str, Point]) -> dict[str, Point]:
    j.update({"knee_f": (0.06, -0.11), "foot_f": (0.11, 0.0), "knee_b": (-0.04, -0.11), "foot_b": (-0.1, 0.0)})
    return j


def _draw_person(sk: _Sketch, j: dict[str, Point], gaze: int, rng: np.random.Generator) -> None:
    skin, shirt, limb = (_jitter(rng, palette[rng.integers(len(palette))], 10) for palette in (_SKIN, _SHIRT, _LIMB))
    sk.line(0, "person", [j["hip"], j["knee_b"], j["foot_b"]], limb, _LIMB_W)
    sk.line(0, "person", [j["neck"], j["elbow_b"], j["hand_b"]], skin, _LIMB_W)
    sk.line(1, "person", [j["neck"], j["hip"]], shirt, _TORSO_W)
    hx, hy = j["head"]
    r = _HEAD_R
    sk.ellipse(2, "person", (hx - r, hy - r, hx + r, hy + r), skin, _darker(skin), 0.01)
    ex, ey, er = hx + gaze * 0.5 * r, hy - 0.1 * r, 0.22 * r
    sk.ellipse(2, "person", (ex - er, ey - er, ex + er, ey + er), (15, 15, 15))
    sk.line(4, "person", [j["hip"], j["knee_f"], j["foot_f"]], limb, _LIMB_W)
    sk.line(5, "person", [j["neck"], j["elbow_f"], j["hand_f"]], skin, _LIMB_W)


def _object_box(obj: str, rng: np.random.Generator, scale: float = 1.0) -> tuple[float, float]:
    w, h = _SIZES[obj]
    k = scale * rng.uniform(0.9, 1.1)
    return w * k, h * k


def _compose(verb: str, obj: str, rng: np.random.Generator, object_scale: float = 1.0) -> _Sketch:
    """One person and one object in local coordinates, the person facing +x."""
    sk = _Sketch()
    j = _standing()
    gaze, z_obj, flip = 1, 3.0, False
    w, h = _object_box(obj, rng, object_scale)
    if verb == "hold" and obj == "umbrella":
        j.update(elbow_f=(0.08, -0.47), hand_f=(0.05, -0.58))
        x0, y0 = 0.05 - w / 2, -0.58 - 0.88 * h
    elif verb == "hold":
        j.update(elbow_f=(0.08, -0.38), hand_f=(0.16, -0.36))
        x0, y0 = 0.15, -0.36 - h / 2
    elif verb == "carry":
        _stride(j)
        j.update(elbow_f=(0.07, -0.3), hand_f=(0.13, -0.33), elbow_b=(0.04, -0.3), hand_b=(0.11, -0.31))
        if obj in _GROUND_OBJECTS:
            w, h = w * 0.7, h * 0.7
        x0, y0 = 0.12 - w / 2, -0.35 - h / 2
    elif verb == "throw":
        _stride(j)
        j.update(elbow_f=(0.02, -0.5), hand_f=(0.06, -0.61), elbow_b=(-0.07, -0.33), hand_b=(-0.12, -0.27))
        cx, cy = 0.3 + rng.uniform(0, 0.05), -0.74
        x0, y0 = cx - w / 2, cy - h / 2
        hand = j["hand_f"]
        for t0, t1 in ((0.3, 0.42), (0.52, 0.64)):
            dash = [(hand[0] + t * (cx - hand[0]), hand[1] + t * (cy - hand[1])) for t in (t0, t1)]
            sk.line(6, "extra", dash, (60, 60, 60), 0.015)
    elif verb == "kick":
        j.update(
            neck=(-0.02, -0.41), head=(-0.03, -0.485), knee_b=(-0.01, -0.11), foot_b=(-0.02, 0.0),
            knee_f=(0.08, -0.15), foot_f=(0.17, -0.07),
            elbow_f=(0.06, -0.33), hand_f=(0.1, -0.27), elbow_b=(-0.08, -0.36), hand_b=(-0.14, -0.34),
        )  # fmt: skip
        x0, y0 = 0.165, -h
    elif verb == "ride":
        x0, y0, z_obj = -0.2, -h, -1.0
        fr = _Frame((x0, y0, x0 + w, y0 + h))
        (sx, sy), (bx, by), (kx, ky) = fr.p(*_SEAT_UV), fr.p(*_BAR_UV), fr.p(*_CRANK_UV)
        hip = (sx, sy - 0.02)
        neck = (hip[0] + 0.06, hip[1] - 0.19)
        j.update(
            hip=hip, neck=neck, head=(neck[0] + 0.025, neck[1] - 0.072),
            hand_f=(bx, by), elbow_f=(neck[0] + 0.07, neck[1] + 0.08),
            hand_b=(bx - 0.01, by + 0.005), elbow_b=(neck[0] + 0.06, neck[1] + 0.09),
            knee_f=(hip[0] + 0.1, hip[1] + 0.05), foot_f=(kx + 0.03, ky),
            knee_b=(hip[0] + 0.08, hip[1] + 0.07), foot_b=(kx - 0.03, ky + 0.01),
        )  # fmt: skip
    elif verb == "sit_on":
        x0, y0, z_obj = -0.14, -h, -1.0
        seat_y = y0 + 0.45 * h
        hip = (x0 + 0.45 * w, seat_y - 0.02)
        neck = (hip[0] - 0.01, hip[1] - 0.19)
        j.update(
            hip=hip, neck=neck, head=(neck[0], neck[1] - 0.075),
            knee_f=(hip[0] + 0.13, seat_y - 0.02), foot_f=(hip[0] + 0.14, 0.0),
            knee_b=(hip[0] + 0.12, seat_y - 0.01), foot_b=(hip[0] + 0.11, 0.0),
            elbow_f=(hip[0] + 0.05, hip[1] - 0.08), hand_f=(hip[0] + 0.12, hip[1] - 0.04),
            elbow_b=(hip[0] + 0.04, hip[1] - 0.07), hand_b=(hip[0] + 0.11, hip[1] - 0.03),
        )  # fmt: skip
    elif verb == "look_at":
        if obj in _GROUND_OBJECTS:
            j["head"] = (0.03, -0.472)  # looking down at it
            x0, y0 = 0.2 + rng.uniform(0, 0.06), -h
            flip = bool(rng.integers(2))
        elif obj == "kite":
            j["head"] = (0.02, -0.495)  # looking up
            cx, cy = 0.33 + rng.uniform(0, 0.05), -0.74
            x0, y0 = cx - w / 2, cy - h / 2
        else:
            j["head"] = (0.025, -0.482)
            cx, cy = 0.3 + rng.uniform(0, 0.05), -0.48
            x0, y0 = cx - w / 2, cy - h / 2
    elif verb == "fly":
        j.update(head=(0.02, -0.495), elbow_f=(0.07, -0.44), hand_f=(0.12, -0.53))
        cx, cy = 0.38 + rng.uniform(0, 0.05), -0.88
        x0, y0 = cx - w / 2, cy - h / 2
        sk.line(6, "extra", [j["hand_f"], _Frame((x0, y0, x0 + w, y0 + h)).p(0.5, 0.65)], (70, 70, 70), 0.01)
    elif verb == "walk":
        _stride(j)
        if obj == "bicycle":  # pushing it beside: the handlebar (its front) next to the person
            x0, y0, flip = 0.06, -h, True
            bx, by = _Frame((x0, y0, x0 + w, y0 + h), flip=True).p(*_BAR_UV)
            j.update(elbow_f=((bx + 0.0) / 2, (by - 0.41) / 2 + 0.02), hand_f=(bx, by))
        else:  # dog on a leash, walking ahead
            j.update(elbow_f=(0.06, -0.31), hand_f=(0.12, -0.26))
            x0, y0 = 0.2 + rng.uniform(0, 0.04), -h
            collar = _Frame((x0, y0, x0 + w, y0 + h)).p(0.74, 0.34)
            sk.line(6, "extra", [j["hand_f"], collar], (150, 20, 20), 0.012)
    elif verb == NO_INTERACTION:
        gaze = -1
        j["head"] = (-0.01, -0.485)
        x0, y0 = 0.42 + rng.uniform(0, 0.12), -h
        flip = bool(rng.integers(2))
    else:
        raise ValueError(f"no drawing for verb {verb!r}")

    for name, (x, y) in j.items():  # small pose noise so no two people are pixel-identical
        j[name] = (x + rng.normal(0, 0.005), y + rng.normal(0, 0.005))
    _draw_person(sk, j, gaze, rng)
    _RECIPES[obj](sk, _Frame((x0, y0, x0 + w, y0 + h), flip=flip), z_obj, rng)
    return sk


# ---- scene ----------------------------------------------------------------------------------------------------------
def _background(size: int, rng: np.random.Generator) -> tuple[Image.Image, Color]:
    base = rng.uniform(105, 200, 3)
    g = int(rng.integers(3, 7))
    low = np.clip(base + rng.normal(0, 24, (g, g, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(low, "RGB").resize((size, size), Image.BICUBIC)
    return img, (int(base[0]), int(base[1]), int(base[2]))


def _cells(k: int, rng: np.random.Generator) -> list[Box]:
    """k cells (x, y, w, h) in unit image coordinates."""
    if k == 1:
        return [(0.0, 0.0, 1.0, 1.0)]
    if k == 2:
        return [(0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 0.5, 1.0)]
    quads = [(0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 0.5, 0.5), (0.0, 0.5, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5)]
    chosen = sorted(rng.choice(4, size=k, replace=False).tolist())
    return [quads[i] for i in chosen]


def _bbox(pts: np.ndarray) -> Box:
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))


def render_scene(hois: Sequence[tuple[str, str]], image_size: int, rng: np.random.Generator,
                 object_scale: float = 1.0) -> RenderedScene:
    """Draw 1..4 (verb, object) interactions, each with its own person, into one square RGB image.

    `object_scale` multiplies every object's size (1: the sizes above; larger objects are easier to detect).
    Same `rng` state -> the same pixels. Raises ValueError for an unknown verb/object combination.
    """
    if not 1 <= len(hois) <= 4:
        raise ValueError(f"render_scene draws 1..4 interactions, got {len(hois)}")
    ss = max(1, math.ceil(256 / image_size))  # supersampling factor for small images
    canvas_size = image_size * ss
    img, base = _background(canvas_size, rng)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 4))):  # faint clutter
        x, y = rng.uniform(0, canvas_size, 2)
        rw, rh = rng.uniform(0.1, 0.4, 2) * canvas_size
        color = _jitter(rng, base, 22)
        shape = draw.ellipse if rng.integers(2) else draw.rectangle
        shape((x - rw / 2, y - rh / 2, x + rw / 2, y + rh / 2), fill=color)

    cells = _cells(len(hois), rng)
    margin = 0.04
    pairs: list[RenderedPair] = []
    for (verb, obj), (ux, uy, uw, uh) in zip(hois, cells):
        if (verb, obj) not in _KNOWN:
            raise ValueError(f"no drawing for HOI ({verb!r}, {obj!r})")
        sk = _compose(verb, obj, rng, object_scale)
        facing = 1.0 if rng.integers(2) else -1.0
        gx0, gy0, gx1, gy1 = _bbox(sk.points())
        if facing < 0:
            gx0, gx1 = -gx1, -gx0
        cx0, cy0 = (ux + margin * uw) * canvas_size, (uy + margin * uh) * canvas_size
        cw, ch = uw * (1 - 2 * margin) * canvas_size, uh * (1 - 2 * margin) * canvas_size
        fit = min(cw / (gx1 - gx0), ch / (gy1 - gy0))
        s = fit * rng.uniform(0.62 if len(hois) == 1 else 0.85, 1.0)
        ox = cx0 + rng.uniform(0, cw - s * (gx1 - gx0)) - s * gx0
        oy = cy0 + rng.uniform(0, ch - s * (gy1 - gy0)) - s * gy0

        def tx(p: Point) -> tuple[float, float]:
            return (ox + s * facing * p[0], oy + s * p[1])

        def px(width: float) -> int:
            return max(1, round(s * width))

        for _, _, kind, args in sorted(sk.ops, key=lambda op: op[0]):  # stable: same-depth ops keep their order
            if kind == "line":
                pts, color, width = args
                draw.line([tx(p) for p in pts], fill=color, width=px(width), joint="curve")
            elif kind == "ellipse":
                (x0, y0, x1, y1), fill, outline, width = args
                (a, b), (c, d) = tx((x0, y0)), tx((x1, y1))
                box = (min(a, c), b, max(a, c), d)
                draw.ellipse(box, fill=fill, outline=outline, width=px(width) if outline else 0)
            else:
                pts, fill, outline = args
                draw.polygon([tx(p) for p in pts], fill=fill, outline=outline)

        def to_pixels(box: Box) -> Box:
            (a, b), (c, d) = tx(box[:2]), tx(box[2:])
            x0, x1 = sorted((a / ss, c / ss))
            clip = lambda v: float(min(max(v, 0.0), image_size))  # noqa: E731
            return (clip(x0), clip(b / ss), clip(x1), clip(d / ss))

        person_box, object_box = to_pixels(_bbox(sk.points("person"))), to_pixels(_bbox(sk.points("object")))
        pairs.append(RenderedPair(verb, obj, person_box, object_box))

    if ss > 1:
        img = img.reduce(ss)
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-7, 8, (image_size, image_size, 3), dtype=np.int16)
    return RenderedScene(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"), pairs)

