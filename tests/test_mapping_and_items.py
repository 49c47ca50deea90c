import pytest

from curation.ingest import RowFailure, TextLimits, build_item, parse_time
from curation.mapping import ABO_MAPPING, ColumnMapping, MappingError
from curation.readers import SourceRow, read_range
from curation.redaction import Redactor

REVIEWS = ColumnMapping.from_dict(
    {
        "kind": "feedback",
        "feedback_type": "review",
        "columns": {"external_id": "Id", "product_ref": "ProductId", "title": "Summary", "feedback_text": ["Summary", "Text"], "time": "Time"},
        "pii": {"ProfileName": "NAME", "UserId": "UCI"},
    }
)


def _build(fields, mapping=REVIEWS, limits=TextLimits(), row_number=1):
    return build_item(SourceRow(row_number, fields), mapping, Redactor(), source_id="s1", source_name="reviews", limits=limits)


def test_mapping_from_yaml_and_options(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("kind: feedback\ncolumns:\n  feedback_text: [Summary, Text]\npii:\n  ProfileName: name\n"
                    "redaction:\n  patterns:\n    EMPLOYEE: 'EMP-\\d+'\n  keep: [John Deere]\n")
    m = ColumnMapping.from_yaml(path)
    assert m.item_kind == "feedback" and m.feedback_type == "review"
    assert m.columns == {"feedback_text": ["Summary", "Text"]} and m.pii == {"ProfileName": "NAME"}
    assert m.redaction_patterns == (("EMPLOYEE", r"EMP-\d+"),) and m.redaction_keep == ("John Deere",)
    m2 = m.with_options(["external_id=Id", "title=Summary"], ["UserId=UCI"], ["TICKET=T-\\d+"], feedback_type="transcript")
    assert m2.columns["external_id"] == ["Id"] and m2.pii["UserId"] == "UCI" and m2.feedback_type == "transcript"
    assert ColumnMapping.from_dict(m2.to_dict()) == m2


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ColumnMapping(columns={"colour": ["c"]}), "unknown field 'colour'"),
        (lambda: ColumnMapping(item_kind="blog"), "kind must be one of"),
        (lambda: ColumnMapping(pii={"x": "SSN"}), "PII kind"),
        (lambda: ColumnMapping().with_options(["title"]), "--map takes field=column"),
        (lambda: ColumnMapping.from_dict({"columns": {}, "colour": 1}), "unknown keys"),
        (lambda: ColumnMapping(columns={"external_id": ["UserId"]}, pii={"UserId": "UCI"}), "cannot be the external_id"),
    ],
)
def test_mapping_errors(build, message):
    with pytest.raises(MappingError, match=message):
        build()


def test_mapping_checked_against_columns():
    with pytest.raises(MappingError, match="'Txt' are not in the source"):
        ColumnMapping(item_kind="feedback", columns={"feedback_text": ["Txt"]}).check_against(["Id", "Text"])
    with pytest.raises(MappingError, match="feedback_text"):
        ColumnMapping(item_kind="feedback", columns={"title": ["Text"]}).check_against(["Text"])


def test_review_row_becomes_redacted_item(shared_data):
    rows = list(read_range(shared_data / "reviews" / "amazon_fine_food_200.csv", "csv"))
    item = _build(rows[2].fields).item  # Id 3, ProfileName 'Natalia Corres "Natalia Corres"'
    assert item["external_id"] == "3" and item["product_ref"] == "B000LQOCH0"
    assert item["kind"] == "feedback" and item["feedback_type"] == "review"
    assert item["title"] == '"Delight" says it all'
    assert item["feedback_text"].startswith('"Delight" says it all\n\nThis is a confection')
    assert item["event_time"].isoformat() == "2008-08-18T00:00:00+00:00"
    assert "Natalia" not in str(item) and "ABXLMWJIXXAIN" not in str(item)
    assert "ProfileName" not in str(item)
    # the same row always gets the same id; another row another
    assert _build(rows[2].fields).item["item_id"] == item["item_id"]
    assert _build(rows[3].fields).item["item_id"] != item["item_id"]


def test_html_is_cleaned_and_noted(shared_data):
    rows = list(read_range(shared_data / "reviews" / "amazon_fine_food_200.csv", "csv"))
    with_br = next(r for r in rows if "<br />" in r.fields["Text"])
    item = _build(with_br.fields).item
    assert "<br" not in item["feedback_text"] and item["text_notes"]["html_breaks"] >= 1


def test_row_failures_carry_redacted_excerpts():
    long_text = "My name is John Smith, call 415-555-0134. " + "x" * 1_000_000
    failure = _build({"Id": "9", "ProductId": "P", "Summary": "s", "Text": long_text, "Time": "1", "ProfileName": "John Smith", "UserId": "A1"})
    assert isinstance(failure, RowFailure) and failure.code == "text_too_long"
    assert "1,000,0" in failure.message
    excerpt = str(failure.source_row)
    assert "John" not in excerpt and "415-555-0134" not in excerpt and "[NAME]" in excerpt
    assert len(excerpt) < 3000
    empty = _build({"Id": "10", "ProductId": "P", "Summary": " ", "Text": "<br />", "Time": "1", "ProfileName": "", "UserId": ""})
    assert isinstance(empty, RowFailure) and empty.code == "empty_text"
    parse_error = build_item(SourceRow(4, None, "bad_quoting", "quote still open"), REVIEWS, Redactor(), source_id="s", source_name="n")
    assert (parse_error.code, parse_error.message, parse_error.source_row) == ("bad_quoting", "quote still open", None)


def test_catalog_row_images_attributes_and_limits():
    mapping = ColumnMapping(columns={"title": ["t"], "attributes": ["a"], "images": ["img"], "time": ["when"]})
    draft = _build({"t": "Lumio Shampoo 250 ml", "a": '{"Color": "Blue", "Size": "250 ml"}', "img": "a.jpg|b.jpg", "when": "not a time"}, mapping)
    assert draft.image_refs == ["a.jpg", "b.jpg"]
    assert draft.item["attributes"] == {"Color": "Blue", "Size": "250 ml"}
    assert draft.item["event_time"] is None and draft.notes["unreadable_time"] == 1
    many = _build({"t": "x", "a": "", "img": '["1.jpg","2.jpg","3.jpg"]', "when": ""}, mapping, TextLimits(max_images_per_item=2))
    assert many.image_refs == ["1.jpg", "2.jpg"] and many.notes["images_dropped_over_limit"] == 1


def test_abo_listing_items(shared_data):
    rows = list(read_range(shared_data / "abo-samples" / "listings.jsonl", "abo", languages=ABO_MAPPING.languages))
    items = [build_item(r, ABO_MAPPING, Redactor(), source_id="s", source_name="abo").item for r in rows]
    bag = next(i for i in items if i["external_id"] == "B0799CK52K")
    assert bag["title"] == "Starter Yoga Bag" and bag["brand"] == "Starter" and bag["language"] == "en_US"
    assert bag["attributes"]["color"] == "Iron Grey" and bag["attributes"]["fabric_type"] == "100% Polyester"
    assert all(i["kind"] == "catalog" and i["redaction_counts"] == {} for i in items)


def test_parse_time():
    assert parse_time(1303862400).isoformat() == "2011-04-27T00:00:00+00:00"
    assert parse_time("1303862400000").isoformat() == "2011-04-27T00:00:00+00:00"
    assert parse_time("2025-01-06T09:00:00Z").isoformat() == "2025-01-06T09:00:00+00:00"
    assert parse_time("") is None
    with pytest.raises(ValueError):
        parse_time("yesterday")
