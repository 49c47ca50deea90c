import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.readers import SourceError, detect_format, plan_ranges, read_range, source_columns


def _all(path, fmt, n):
    """Rows read range by range must equal rows read in one go."""
    whole = [(r.row_number, r.fields, r.error_code) for r in read_range(path, fmt)]
    parts = []
    for rng in plan_ranges(path, fmt, n):
        parts.extend((r.row_number, r.fields, r.error_code) for r in read_range(path, fmt, rng))
    assert parts == whole
    return whole


def test_amazon_fine_food_reviews(shared_data):
    path = shared_data / "reviews" / "amazon_fine_food_200.csv"
    rows = _all(path, "csv", 37)
    assert len(rows) == 200
    assert all(code is None for _, _, code in rows)
    assert rows[1][1]["Summary"] == "Not as Advertised"
    assert rows[1][1]["ProfileName"] == "dll pa"
    assert rows[2][1]["ProfileName"] == 'Natalia Corres "Natalia Corres"'
    assert [r[0] for r in rows] == list(range(1, 201))
    assert source_columns(path, "csv") == (
        ["Id", "ProductId", "UserId", "ProfileName", "HelpfulnessNumerator", "HelpfulnessDenominator", "Score", "Time", "Summary", "Text"],
        True,
    )


def test_bad_csv_rows_are_reported_and_the_rest_is_read(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(
        b"id,title,text\n"
        b"1,ok,\"fine, with comma\"\n"
        b"2,missing column\n"
        b"3,bad utf8,\xff\xfe here\n"
        b"4,\"multi\nline\",x\n"
        b'5,literal quote,55" TV screen\n'
        b"\n"
        b"6,last good,ok\n"
        b"7,\"never closed,oops\n"
        b"8,after the broken row,still read\n"
    )
    long_row = tmp_path / "long.csv"
    long_row.write_bytes(b'id,text\n1,"' + b"word " * 300_000 + b'"\n2,short\n')
    assert [len(r.fields["text"]) for r in read_range(long_row, "csv")] == [1_500_000, 5]
    rows = _all(path, "csv", 2)
    by_id = {r[0]: r for r in rows}
    assert by_id[1][1] == {"id": "1", "title": "ok", "text": "fine, with comma"}
    assert by_id[2][2] == "wrong_field_count"
    assert by_id[3][2] == "invalid_utf8"
    assert by_id[4][1]["title"] == "multi\nline"
    assert by_id[5][1]["text"] == '55" TV screen'
    assert by_id[6][1]["id"] == "6"
    assert by_id[7][2] == "bad_quoting"
    assert by_id[8][1] == {"id": "8", "title": "after the broken row", "text": "still read"}
    assert len(rows) == 8


def test_tsv_and_delimiter(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("sentence\tlabel\nGood case, Excellent value.\t1\n")
    assert detect_format(path) == "tsv"
    assert [r.fields for r in read_range(path, "tsv")] == [{"sentence": "Good case, Excellent value.", "label": "1"}]


def test_jsonl_bad_lines(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{broken\n[1, 2]\n\n{"a": "\xff"}\n{"a": 5}\n')
    rows = _all(path, "jsonl", 2)
    assert [(n, code) for n, _, code in rows] == [(1, None), (2, "bad_json"), (3, "bad_json"), (4, "invalid_utf8"), (5, None)]


def test_parquet_ranges(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": list(range(25)), "t": [f"t{i}" for i in range(25)]}), path, row_group_size=7)
    rows = _all(path, "parquet", 6)
    assert [r[1]["id"] for r in rows] == list(range(25))
    assert [r[0] for r in rows] == list(range(1, 26))


def test_abo_language_preference(shared_data):
    path = shared_data / "abo-samples" / "listings.jsonl"
    assert detect_format(path) == "abo"
    rows = {r.fields["item_id"]: r.fields for r in read_range(path, "abo", languages=("en_US", "en"))}
    assert len(rows) == 3
    bag = rows["B0799CK52K"]
    assert bag["fabric_type"] == "100% Polyester"  # en_US chosen over zh_CN, es_US, pt_BR
    assert bag["style"] == "Yoga Bag"  # en_US over de_DE
    assert bag["item_name"] == "Starter Yoga Bag"  # no item_name in the listing: brand + model name
    assert bag["_language"] == "en_US"
    bulb = rows["B074M5HPBD"]
    assert bulb["brand"] == "AmazonBasics" and bulb["_language"] == "en_AU"  # en_AU matches "en"
    assert bulb["bullet_point"].count("\n") == 5  # six bullet points
    assert bulb["images"] == ["images/B074M5HPBD/9ea6992d.jpg", "images/B074M5HPBD/dcace9b5.jpg", "images/B074M5HPBD/f5047137.jpg"]
    # only French: the French text is taken rather than nothing
    assert rows["B07GTFSCHB"]["bullet_point"].startswith("La vitamine E") and rows["B07GTFSCHB"]["_language"] == "fr_FR"
    german = {r.fields["item_id"]: r.fields for r in read_range(path, "abo", languages=("de_DE",))}
    assert german["B0799CK52K"]["style"] == "Yogatasche"


def test_source_errors(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        plan_ranges(tmp_path / "nope.csv", "csv", 10)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SourceError, match="empty"):
        source_columns(tmp_path / "empty.csv", "csv")
    with pytest.raises(SourceError, match="cannot tell the format"):
        detect_format(tmp_path / "data.xlsx")
    (tmp_path / "a.json").write_text(json.dumps([{"a": 1}]))
    with pytest.raises(SourceError, match="JSON lines"):
        detect_format(tmp_path / "a.json")


def test_byte_order_marks_and_old_mac_line_endings(tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"a": 2}\n')
    assert [r.fields for r in read_range(bom, "jsonl")] == [{"a": 1}, {"a": 2}]
    csv_bom = tmp_path / "bom.csv"
    csv_bom.write_bytes(b"\xef\xbb\xbfid,t\n1,x\n")
    assert [r.fields for r in read_range(csv_bom, "csv")] == [{"id": "1", "t": "x"}]
    cr = tmp_path / "cr.csv"
    cr.write_bytes(b'id,t\r1,"a\rb"\r2,y\r')
    with pytest.raises(SourceError, match="line endings"):
        source_columns(cr, "csv")
