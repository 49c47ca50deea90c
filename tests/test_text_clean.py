from curation.text_clean import clean_text


def test_html_breaks_tags_entities():
    text, notes = clean_text("Great taste.<br /><br />Would buy <b>again</b> &amp; again.")
    assert text == "Great taste.\n\nWould buy again & again."
    assert notes == {"html_breaks": 2, "html_tags_removed": 2, "html_entities": 1}


def test_script_and_handlers_removed_but_words_kept():
    text, notes = clean_text('Done <script>alert(1)</script> see <img src=x onerror=alert(1)> photo')
    assert "alert" not in text and "<" not in text
    assert text == "Done see photo"
    assert notes["scripts_removed"] == 1 and notes["html_tags_removed"] == 1


def test_control_characters_and_whitespace():
    text, notes = clean_text("a\x00b  \t c\r\n\r\n\r\n\r\nd")
    assert text == "ab c\n\nd"
    assert notes == {"control_chars_removed": 1}


def test_none_and_plain_text():
    assert clean_text(None) == (None, {})
    assert clean_text("5 < 6 and 7 > 3") == ("5 < 6 and 7 > 3", {})
