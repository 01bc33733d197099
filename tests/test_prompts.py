import pytest

from rlli.prompts import PromptError, clean_prompt, parse_prompts


def test_cleaning_normalises_odd_unicode_and_controls():
    assert clean_prompt("  a\u200bred\thouse\x00 ") == "a red house"
    assert clean_prompt("ｆｕｌｌｗｉｄｔｈ") == "fullwidth"
    assert clean_prompt("<script>alert(1)</script>") == "<script>alert(1)</script>"  # kept as text, shown escaped


def test_parse_prompts_skips_blank_lines():
    assert parse_prompts("a\n\n  \nb\r\nc", 5, 10) == ["a", "b", "c"]


@pytest.mark.parametrize("text,msg", [("", "at least one"), ("\n \n", "at least one"), (None, "at least one"),
                                      ("a\nb\nc", "at most 2"), ("x" * 11, "limit is 10")])
def test_bad_input_gets_a_clear_message(text, msg):
    with pytest.raises(PromptError, match=msg):
        parse_prompts(text, 2, 10)
