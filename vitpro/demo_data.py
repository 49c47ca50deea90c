"""Demo data the project makes itself: product photos, catalog rows, complaint transcripts.

Photos are drawn packages (bottles, boxes, jars, pouches) with the brand, product name and size printed on
them, so OCR has something real to read; a share of the complaint photos show damage (torn, dented,
leaking). Transcripts are agent/customer chats full of personal data for redaction to remove. A few rows
are bad on purpose (a missing photo, a path out of the image folder, a corrupt file, HTML in the text) so
the demo shows how bad input is recorded while the rest goes on. Deterministic for a given seed.
"""
from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

BRANDS = ["Aurelia", "Nordbrook", "Sunvale", "Pinecrest", "Lumio", "Kestrel", "Brightleaf", "Oakhaven"]
PRODUCTS = [
    # category, product type, shape, sizes, gender
    ("Hair Care", "Shampoo", "bottle", ["100 ml", "250 ml", "400 ml"], "Unisex"),
    ("Hair Care", "Conditioner", "bottle", ["200 ml", "350 ml"], "Women"),
    ("Skin Care", "Body Lotion", "bottle", ["150 ml", "300 ml"], "Unisex"),
    ("Grocery", "Ground Coffee", "pouch", ["250 g", "500 g", "1 kg"], None),
    ("Grocery", "Breakfast Cereal", "box", ["375 g", "500 g"], None),
    ("Household", "Laundry Detergent", "box", ["1.5 kg", "3 kg"], None),
    ("Health", "Vitamin C Tablets", "jar", ["60 Count", "120 Count"], None),
    ("Grocery", "Peanut Butter", "jar", ["340 g", "500 g"], None),
]
VARIANTS = ["Argan Oil", "Fresh Mint", "Classic", "Honey Oat", "Citrus", "Lavender", "Dark Roast", "Original"]
COLORS = {
    "Blue": (52, 101, 164), "Green": (60, 140, 90), "Red": (190, 60, 55), "Purple": (120, 80, 160),
    "Orange": (225, 130, 40), "Teal": (40, 140, 150), "Brown": (120, 80, 50), "Pink": (215, 110, 150),
}
REGIONS = ["US-West", "US-East", "UK", "DE", "IN"]
ISSUES = {"torn": "damaged packaging", "dented": "damaged packaging", "leaking": "leaking product", "none": "wrong item"}
SURNAMES = ["Smith", "Garcia", "Okafor", "Nguyen", "Schmidt", "Patel", "Kowalski", "Rossi", "Tanaka", "Murphy"]
AGENTS = ["Maria Lopez", "Daniel Weber", "Priya Nair", "Kevin Brooks"]
STREETS = ["Elm Street", "Maple Avenue", "Harbor Road", "Cedar Lane", "Sunset Boulevard"]
CITIES = [("Springfield", "IL", "62704"), ("Portland", "OR", "97205"), ("Austin", "TX", "78701"), ("Madison", "WI", "53703")]


@dataclass
class DemoProduct:
    product_id: str
    brand: str
    name: str
    product_type: str
    category: str
    size: str
    color: str
    shape: str
    gender: str | None

    @property
    def title(self) -> str:
        return f"{self.brand} {self.name} {self.size}"


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _centered(draw: ImageDraw.ImageDraw, cx: int, y: int, text: str, size: int, fill) -> int:
    """Draw text centred on cx, shrinking the font until it fits 70% of the label; returns its height."""
    while size > 10:
        font = _font(size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= 300:
            break
        size -= 2
    draw.text((cx - (right - left) // 2, y), text, font=font, fill=fill)
    return bottom - top


def draw_product(product: DemoProduct, damage: str, rng: random.Random, size: int = 512) -> Image.Image:
    """A package on a table, label facing the camera, optionally damaged."""
    bg = tuple(int(c) for c in (rng.randint(215, 240), rng.randint(210, 235), rng.randint(200, 225)))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    d.rectangle([0, int(size * 0.78), size, size], fill=tuple(max(0, c - 40) for c in bg))  # table edge
    color = COLORS[product.color]
    cx = size // 2
    if product.shape == "bottle":
        body = [cx - 120, 130, cx + 120, 440]
        d.rounded_rectangle(body, radius=40, fill=color)
        d.rectangle([cx - 35, 80, cx + 35, 135], fill=(235, 235, 235))  # cap
        label = [cx - 105, 200, cx + 105, 390]
    elif product.shape == "box":
        body = [cx - 150, 90, cx + 130, 440]
        d.polygon([(cx + 130, 90), (cx + 170, 60), (cx + 170, 410), (cx + 130, 440)], fill=tuple(max(0, c - 50) for c in color))
        d.polygon([(cx - 150, 90), (cx - 110, 60), (cx + 170, 60), (cx + 130, 90)], fill=tuple(min(255, c + 40) for c in color))
        d.rectangle(body, fill=color)
        label = [cx - 135, 150, cx + 115, 400]
    elif product.shape == "jar":
        body = [cx - 120, 170, cx + 120, 440]
        d.rounded_rectangle(body, radius=25, fill=color)
        d.rectangle([cx - 110, 130, cx + 110, 175], fill=(90, 90, 90))  # lid
        label = [cx - 105, 220, cx + 105, 400]
    else:  # pouch
        body = [cx - 130, 100, cx + 130, 440]
        d.polygon([(cx - 130, 440), (cx - 115, 100), (cx + 115, 100), (cx + 130, 440)], fill=color)
        d.rectangle([cx - 115, 100, cx + 115, 125], fill=tuple(max(0, c - 40) for c in color))
        label = [cx - 100, 170, cx + 100, 400]
    d.rectangle(label, fill=(250, 248, 240))
    lx = (label[0] + label[2]) // 2
    y = label[1] + 12
    y += _centered(d, lx, y, product.brand.upper(), 34, (20, 20, 20)) + 16
    for line in _wrap(product.name, 16):
        y += _centered(d, lx, y, line, 22, (40, 40, 40)) + 8
    _centered(d, lx, label[3] - 40, product.size, 26, (20, 20, 20))
    if damage == "torn":
        _tear(d, label, rng, bg)
    elif damage == "dented":
        img = _dent(img, body, rng)
    elif damage == "leaking":
        _leak(d, body, rng, size)
    return img


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return lines + ([line] if line else [])


def _tear(d: ImageDraw.ImageDraw, label, rng: random.Random, bg) -> None:
    x0 = rng.randint(label[0], label[0] + 40)
    y0 = rng.randint(label[1] + 60, label[3] - 80)
    points = [(x0, y0)]
    for i in range(1, 9):
        points.append((x0 + i * 22, y0 + rng.randint(-18, 18)))
    lower = [(x + rng.randint(-6, 6), y + rng.randint(35, 60)) for x, y in reversed(points)]
    d.polygon(points + lower, fill=tuple(max(0, c - 90) for c in bg))
    d.line(points, fill=(255, 255, 255), width=4)


def _dent(img: Image.Image, body, rng: random.Random) -> Image.Image:
    shade = Image.new("L", img.size, 0)
    sd = ImageDraw.Draw(shade)
    cx = rng.randint(body[0] + 60, body[2] - 60)
    cy = rng.randint(body[1] + 80, body[3] - 80)
    sd.ellipse([cx - 70, cy - 45, cx + 70, cy + 45], fill=150)
    shade = shade.filter(ImageFilter.GaussianBlur(18))
    dark = Image.new("RGB", img.size, (25, 25, 25))
    img = Image.composite(dark, img, shade)
    d = ImageDraw.Draw(img)
    for k in range(3):
        d.line([(cx - 60 + 20 * k, cy - 40), (cx - 20 + 20 * k, cy + 40)], fill=(70, 70, 70), width=3)
    return img


def _leak(d: ImageDraw.ImageDraw, body, rng: random.Random, size: int) -> None:
    liquid = (150, 190, 230)
    for _ in range(4):
        x = rng.randint(body[0] + 20, body[2] - 20)
        top = rng.randint(body[1] + 40, body[1] + 140)
        bottom = rng.randint(body[3] - 60, body[3])
        d.line([(x, top), (x, bottom)], fill=liquid, width=rng.randint(6, 12))
        d.ellipse([x - 9, bottom - 9, x + 9, bottom + 9], fill=liquid)
    d.ellipse([body[0] - 40, body[3] - 15, body[2] + 60, body[3] + 45], fill=liquid)


def make_products(n: int, rng: random.Random) -> list[DemoProduct]:
    products = []
    for i in range(n):
        category, ptype, shape, sizes, gender = PRODUCTS[i % len(PRODUCTS)]
        brand = BRANDS[(i // len(PRODUCTS) + i) % len(BRANDS)]
        variant = VARIANTS[rng.randrange(len(VARIANTS))]
        products.append(
            DemoProduct(
                product_id=f"DP{1000 + i}",
                brand=brand,
                name=f"{variant} {ptype}",
                product_type=ptype,
                category=category,
                size=rng.choice(sizes),
                color=rng.choice(list(COLORS)),
                shape=shape,
                gender=gender,
            )
        )
    return products


def _transcript(product: DemoProduct, damage: str, rng: random.Random, customer: str, email: str, phone: str, order: str, address: str, card: str) -> str:
    agent = rng.choice(AGENTS)
    first = customer.split()[0]
    problem = {
        "torn": f"the box of the {product.name} arrived torn open on one side",
        "dented": f"the {product.name} came badly dented, the package is crushed in the middle",
        "leaking": f"the {product.name} bottle is leaking all over the other items",
        "none": f"I ordered the {product.size} {product.name} but got a different size",
    }[damage]
    lines = [
        f"Agent ({agent}): Hello, this is {agent.split()[0]} from customer support. How can I help you today?",
        f"Customer: Hi {agent.split()[0]}, my name is {customer}. My order {order} from {product.brand} - {problem}.",
        f"Agent ({agent}): I'm sorry to hear that, {first}. Could you confirm the e-mail on the account?",
        f"Customer: Sure, it's {email}. You can also call me on {phone}.",
        f"Agent ({agent}): Thank you. Is the delivery address still {address}?",
        f"Customer: Yes. I paid with the card ending in {card[-4:]}, the full number was {card}, please refund it.",
        f"Agent ({agent}): I've opened a return for the {product.title}. Could you upload a photo of the item?",
        "Customer: Done, I attached the photo.",
    ]
    return "\n".join(lines)


def _card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return " ".join(s[i : i + 4] for i in range(0, 16, 4))


def write_demo_data(out: Path, *, products: int = 24, complaints: int = 16, seed: int = 7) -> dict:
    """Write photos, ``catalog.csv``, ``complaints.jsonl`` and ``complaints.yaml`` under ``out``."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    catalog = make_products(products, rng)
    start = datetime(2025, 1, 6, 9, 0, tzinfo=timezone.utc)

    with open(out / "catalog.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["product_id", "title", "description", "brand", "category", "attributes", "image", "region", "listed_at"])
        for i, p in enumerate(catalog):
            rel = f"images/{p.product_id}.jpg"
            draw_product(p, "none", random.Random(f"{seed}-{p.product_id}")).save(out / rel, quality=90)
            attributes = {"ProductType": p.product_type, "Brand": p.brand, "Color": p.color, "Size": p.size,
                          "Count": "1", "TargetGender": p.gender or "Unanswerable"}
            description = f"{p.brand} {p.name} in a {p.color.lower()} {p.shape}, {p.size}. {p.category} product."
            w.writerow([p.product_id, p.title, description, p.brand, p.category, json.dumps(attributes), rel,
                        REGIONS[i % len(REGIONS)], (start + timedelta(days=i)).isoformat()])

    damages = ["torn", "dented", "leaking", "none"]
    bad_rows = {1: "missing", 3: "escape", 5: "corrupt", 7: "html"} if complaints >= 8 else {}
    with open(out / "complaints.jsonl", "w", encoding="utf-8") as f:
        for j in range(complaints):
            p = catalog[rng.randrange(len(catalog))]
            damage = damages[j % len(damages)]
            first = rng.choice(["John", "Emma", "Carlos", "Aisha", "Wei", "Sofia", "Rahul", "Hannah"])
            customer = f"{first} {rng.choice(SURNAMES)}"
            email = f"{first.lower()}.{rng.randrange(100, 999)}@example.com"
            phone = f"+1 ({rng.randint(201, 989)}) 555-{rng.randint(1000, 9999)}"
            order = f"{rng.randint(100, 999)}-{rng.randint(1000000, 9999999)}-{rng.randint(1000000, 9999999)}"
            city, state, zipcode = rng.choice(CITIES)
            address = f"{rng.randint(10, 9999)} {rng.choice(STREETS)}, {city}, {state} {zipcode}"
            photo = f"images/complaint_{j:04d}.jpg"
            draw_product(p, damage, random.Random(f"{seed}-c{j}")).save(out / photo, quality=88)
            transcript = _transcript(p, damage, rng, customer, email, phone, order, address, _card(rng))
            photos = [photo]
            kind = bad_rows.get(j)
            if kind == "missing":
                photos.append("images/not_uploaded.jpg")
            elif kind == "escape":
                photos.append("../../etc/passwd")
            elif kind == "corrupt":
                broken = f"images/complaint_{j:04d}_broken.jpg"
                data = (out / photo).read_bytes()
                (out / broken).write_bytes(data[: len(data) // 3])  # cut off: a truncated upload
                photos.append(broken)
            elif kind == "html":
                transcript = transcript.replace("Customer: Done", "Customer: <b>Done</b><br/>see <img src=x onerror=alert(1)>")
            record = {
                "ticket": f"T-{5000 + j}",
                "product_id": p.product_id,
                "channel": "chat",
                "region": REGIONS[j % len(REGIONS)],
                "issue_type": ISSUES[damage],
                "created": (start + timedelta(days=30 + j, hours=j % 7)).isoformat(),
                "transcript": transcript,
                "photos": photos,
                "customer_name": customer,
                "customer_email": email,
            }
            f.write(json.dumps(record) + "\n")

    (out / "complaints.yaml").write_text(
        "# Column mapping for the demo's complaint transcripts (vitpro ingest complaints.jsonl --mapping complaints.yaml)\n"
        "kind: feedback\n"
        "feedback_type: transcript\n"
        "columns:\n"
        "  external_id: ticket\n"
        "  product_ref: product_id\n"
        "  feedback_text: transcript\n"
        "  images: photos\n"
        "  region: region\n"
        "  issue_type: issue_type\n"
        "  time: created\n"
        "pii:\n"
        "  customer_name: NAME\n"
        "  customer_email: EMAIL\n",
        encoding="utf-8",
    )
    (out / "catalog.yaml").write_text(
        "# Column mapping for the demo catalog (vitpro ingest catalog.csv --mapping catalog.yaml)\n"
        "kind: catalog\n"
        "columns:\n"
        "  external_id: product_id\n"
        "  title: title\n"
        "  description: description\n"
        "  brand: brand\n"
        "  category: category\n"
        "  attributes: attributes\n"
        "  images: image\n"
        "  region: region\n"
        "  time: listed_at\n",
        encoding="utf-8",
    )
    return {"products": products, "complaints": complaints, "bad_rows": len(bad_rows), "brands": sorted({p.brand for p in catalog})}
