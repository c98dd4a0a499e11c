"""Prompt sets: files of one's own with one-line errors, and Gu et al.'s generated sets."""

import json

import pytest

from sinkmech.data.prompts import GENERATORS, load_prompts, tokenize
from sinkmech.errors import PromptError


def test_txt_file_one_prompt_per_line(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("# a comment\nThe cat sat.\n\n  A dog ran.  \n")
    assert load_prompts(str(path)) == ["The cat sat.", "A dog ran."]
    assert load_prompts(str(path), limit=1) == ["The cat sat."]


def test_jsonl_file_reads_text_fields(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"text": "One."}) + "\n\n" + json.dumps({"text": "Two, three."}) + "\n"
    )
    assert load_prompts(str(path)) == ["One.", "Two, three."]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "does not exist"),
        ("empty.txt", "\n# only a comment\n", "holds no prompts"),
        ("empty.jsonl", "", "holds no prompts"),
        ("bad.jsonl", "{not json\n", "line 1 is not JSON"),
        ("nofield.jsonl", '{"prompt": "x"}\n', 'no string "text" field'),
        ("blank.jsonl", '{"text": "  "}\n', "empty text"),
        ("latin.txt", b"caf\xe9\n", "cannot read prompt file"),
        ("prompts.csv", "a,b\n", "must end in .txt or .jsonl"),
    ],
)
def test_bad_prompt_files_fail_in_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(PromptError, match=message) as error:
        load_prompts(str(path))
    assert "\n" not in str(error.value)


def test_unknown_name_lists_the_choices():
    with pytest.raises(PromptError, match="gu_random"):
        load_prompts("nonexistent")


def test_generators_need_a_tokenizer():
    with pytest.raises(PromptError, match="built per tokenizer"):
        load_prompts("gu_random")


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_gu_sets_have_the_asked_shape_and_are_seeded(minilm, name):
    tokenizer = minilm.tokenizer
    prompts = load_prompts(name, tokenizer=tokenizer, length=64, n=10, seed=3)
    assert len(prompts) == 10 and all(len(p) == 64 for p in prompts)
    assert prompts == load_prompts(name, tokenizer=tokenizer, length=64, n=10, seed=3)
    special = set(tokenizer.all_special_ids)
    assert not special & {token for p in prompts for token in p}
    batch = tokenize(tokenizer, prompts, max_length=512)
    assert batch.tokens.shape == (10, 64) and batch.tokens.tolist() == prompts


def test_repeated_is_one_token_and_random_varies(minilm):
    repeated = load_prompts("gu_repeated", tokenizer=minilm.tokenizer, length=16, n=5)
    assert all(len(set(p)) == 1 for p in repeated)
    random = load_prompts("gu_random", tokenizer=minilm.tokenizer, length=16, n=5)
    assert all(len(set(p)) > 8 for p in random)
    other_seed = load_prompts("gu_random", tokenizer=minilm.tokenizer, length=16, n=5, seed=1)
    assert random != other_seed


def test_natural_windows_are_contiguous_prose(minilm):
    (window,) = load_prompts("gu_natural", tokenizer=minilm.tokenizer, length=12, n=1)
    text = minilm.tokenizer.decode(window)
    joined = " ".join(load_prompts("prose")).lower()
    assert text.replace(" ", "") in joined.replace(" ", "")


@pytest.mark.parametrize(
    "name, body", [("p.txt", "Hello there.\nSecond one."), ("p.jsonl", '{"text": "Hello there."}')]
)
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_prompt(tmp_path, minilm, name, body):
    path = tmp_path / name
    path.write_bytes("\ufeff".encode() + body.encode())
    first = load_prompts(str(path))[0]
    assert first == "Hello there."
    tokens = tokenize(minilm.tokenizer, [first], 32).token_strings[0]
    assert tokens[:3] == ["[CLS]", "hello", "there"]
