import pytest

from curation.redaction import RedactionConfig, Redactor

TRANSCRIPT = """Agent (Maria Lopez): Hello, this is Maria from ShopCo support.
Customer: Hi Maria, my name is John Smith. My order 112-3456789-1234567 arrived with the bottle leaking.
Agent (Maria Lopez): Sorry John. Can you confirm your email and phone?
Customer: john.smith@example.com, phone +1 (415) 555-0134. Ship to 42 Elm Street, Springfield, IL 62704.
Customer: I paid with card 4111 1111 1111 1111. Customer ID: CUST-778812."""

RAW_VALUES = ["Maria", "Lopez", "John", "Smith", "112-3456789-1234567", "john.smith@example.com", "415", "555-0134",
              "42 Elm Street", "Springfield", "62704", "4111 1111 1111 1111", "CUST-778812"]


def test_transcript_every_kind_replaced_and_counted():
    out = Redactor().redact(TRANSCRIPT)
    for raw in RAW_VALUES:
        assert raw not in out.text, raw
    assert out.counts == {"EMAIL": 1, "CARD": 1, "UCI": 2, "ADDRESS": 1, "PHONE": 1, "NAME": 6}
    assert "Agent ([NAME]):" in out.text
    assert "my name is [NAME]" in out.text
    assert "order [UCI]" in out.text
    assert "Customer ID: [UCI]" in out.text
    # the conversation keeps its meaning
    assert "arrived with the bottle leaking" in out.text


@pytest.mark.parametrize(
    "text, kind, leftover",
    [
        ("write to jane_doe+shop@mail.co.uk please", "EMAIL", "jane_doe"),
        ("my number is 020 7946 0958", "PHONE", "7946"),
        ("call me at 555-1234", "PHONE", "555-1234"),
        ("text me on 4155550134 tonight", "PHONE", "4155550134"),
        ("+44 20 7946 0958 is my mobile", "PHONE", "7946"),
        ("card 5500-0000-0000-0004 was charged twice", "CARD", "0004"),
        ("order #98765432 never came", "UCI", "98765432"),
        ("my account number is AB-99812 thanks", "UCI", "99812"),
        ("reviewer A3SGXH7AUHU8GW wrote", "UCI", "A3SGXH7AUHU8GW"),
        ("send it to PO Box 1234 please", "ADDRESS", "1234"),
        ("I live at 7 Baker Street, London", "ADDRESS", "Baker"),
        ("postcode SW1A 1AA", "ADDRESS", "SW1A"),
        ("Mrs. Okafor called again", "NAME", "Okafor"),
        ("Dear Kowalski, thanks", "NAME", "Kowalski"),
        ("Thanks, Priya!", "NAME", "Priya"),
    ],
)
def test_each_kind(text, kind, leftover):
    out = Redactor().redact(text)
    assert leftover not in out.text
    assert out.counts.get(kind, 0) >= 1, out


def test_order_ids_are_not_taken_for_cards():
    # 162-6194349-8476614 happens to pass the Luhn check; it is an order id all the same
    out = Redactor().redact("My order 162-6194349-8476614 and card 3714 496353 98431")
    assert out.text == "My order [UCI] and card [CARD]" and out.counts == {"UCI": 1, "CARD": 1}


def test_luhn_invalid_card_is_not_a_card_unless_called_one():
    out = Redactor().redact("serial 1234 5678 9012 3456 on the box")
    assert out.counts.get("CARD", 0) == 0
    out = Redactor().redact("my visa card 1234 5678 9012 3456 was charged")
    assert out.text == "my visa card [CARD] was charged"


@pytest.mark.parametrize(
    "text",
    [
        "With a life of 15,000 hours, the bulb will last over 13 years (based on 3 hours of use each day)",
        "Provides 400 lumens, 3000 Kelvin, uses only 6 watts, saving up to $72.60",
        "Product arrived labeled as Jumbo Salted Peanuts...the peanuts were actually small sized unsalted.",
        "Aurelia Argan Oil Shampoo 250 ml, Brightleaf Vitamin C Tablets 60 Count, listed 2025-01-06",
        "Model B074M5HPB7, dimensions 9.0 x 9.0 x 9.0 inches, 12 oz",
        "EAN 5400606009813, model number 5400606009813",
    ],
)
def test_product_text_is_left_alone(text):
    out = Redactor().redact(text, mode="catalog")
    assert out.text == text and out.counts == {}


def test_brand_names_that_look_like_people_survive_in_catalog_fields():
    out = Redactor().redact("Calvin Klein by Tommy, Amber Rose scent", mode="catalog")
    assert out.text == "Calvin Klein by Tommy, Amber Rose scent"


def test_known_values_from_pii_columns_are_replaced_everywhere():
    r = Redactor()
    out = r.redact(
        'Natalia Corres says: Natalia loves this. Mail natalia@example.com',
        known={"NAME": ['Natalia Corres "Natalia Corres"'], "EMAIL": ["natalia@example.com"]},
    )
    assert "Natalia" not in out.text and "natalia" not in out.text
    assert out.text == "[NAME] says: [NAME] loves this. Mail [EMAIL]"
    assert out.counts == {"NAME": 2, "EMAIL": 1}


def test_extra_patterns_and_their_validation():
    r = Redactor(RedactionConfig(extra_patterns=(("EMPLOYEE", r"EMP-\d{4,}"),)))
    out = r.redact("escalated to EMP-20931 today")
    assert out.text == "escalated to [EMPLOYEE] today" and out.counts == {"EMPLOYEE": 1}
    with pytest.raises(ValueError, match="valid regex"):
        RedactionConfig(extra_patterns=(("BAD", "([unclosed"),))
    with pytest.raises(ValueError, match="upper-case"):
        RedactionConfig(extra_patterns=(("lower", "x"),))


def test_disabled_redaction_keeps_text():
    out = Redactor(RedactionConfig(enabled=False)).redact(TRANSCRIPT)
    assert out.text == TRANSCRIPT and out.counts == {}


def test_ocr_boxes_carry_no_value_the_joined_text_redacts():
    from workers.jobs.ocr import redacted_boxes

    texts = ["SHIP TO", "Name:", "Zaphod Beeblebrox", "Tel:", "5551234567", "Order", "W12345678"]
    boxes = [{"box": [[0, i]], "text": t, "score": 0.9} for i, t in enumerate(texts)]
    red = Redactor().redact("\n".join(texts), mode="structured")
    out = redacted_boxes(boxes, red.text)
    joined = str(out)
    for raw in ("Zaphod", "Beeblebrox", "5551234567", "W12345678"):
        assert raw not in red.text and raw not in joined
    assert all(b["box"] == orig["box"] and b["score"] == 0.9 for b, orig in zip(out, boxes))


@pytest.mark.parametrize(
    "text, leftovers",
    [
        ("[14:30] Agent (Xochitl Quetzal): how can I help?", ["Xochitl", "Quetzal"]),
        ("14:31:05 - Customer (Bram Ellery): the jar is cracked", ["Bram", "Ellery"]),
        ("Xochitl (agent): hello there", ["Xochitl"]),
        ("my name is sarah connor and the box was wet", ["sarah", "connor"]),
        ("i'm mike, the lid was broken", ["mike"]),
        ("My name is DeShawn Washington", ["DeShawn", "Shawn", "Washington"]),
        ("Hi Mike, this is Liam Murphy from returns", ["Mike", "Liam", "Murphy"]),
        ("ship to 55 W 3rd St Apt 2, Austin, TX 78701", ["55 W", "3rd", "78701"]),
        ("42 Baker Street, London NW1 6XE", ["Baker", "NW1", "6XE"]),
        ("my ID 4455667788 please", ["4455667788"]),
    ],
)
def test_review_findings_are_redacted(text, leftovers):
    out = Redactor().redact(text)
    for leftover in leftovers:
        assert leftover not in out.text, (leftover, out.text)


@pytest.mark.parametrize(
    "text, mode",
    [
        ("1 TB Portable External Hard Drive, 2 Pack Solid State Drive", "free_text"),
        ("ISBN 978-0-306-40615-7, part 12345-67890-123", "free_text"),
        ("[2023-11-04 14:30:12] the parcel arrived", "free_text"),
        ("my name is on the parcel", "free_text"),
        ("Ralph Lauren shirt and a John Deere toy for Dr. Martens fans", "catalog"),
    ],
)
def test_review_false_positives_stay_as_written(text, mode):
    out = Redactor().redact(text, mode=mode)
    assert out.text == text and out.counts == {}, out


def test_kept_phrases_are_never_names():
    r = Redactor(RedactionConfig(keep=("Ralph Lauren", "John Deere", "Mr. Coffee")))
    out = r.redact("Dear team, my John Deere toy and Mr. Coffee machine. Thanks, Priya")
    assert out.text == "Dear team, my John Deere toy and Mr. Coffee machine. Thanks, [NAME]"


def test_declared_values_match_cleaned_text_and_nicknames_only_when_names():
    out = Redactor().redact("Zed Quux here. Love Gluten Free Oatmeal!!!", known={"NAME": ['Zed  Quux', 'Daniel "gluten free"']})
    assert out.text == "[NAME] here. Love Gluten Free Oatmeal!!!"
    out = Redactor().redact("the Cat Lady strikes again", known={"NAME": ['Deborah S. Linzer "Cat Lady"']})
    assert out.text == "the [NAME] strikes again"
