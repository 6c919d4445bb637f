"""Tokenizer folders holding only tokenizer.json (and tokenizer_config.json), as transformers 5
saves every tokenizer: no vocab.json, no merges.txt.

Writes tests/fixtures/tokenizer/json_sd15/ and json_sd2/: the reduced CLIP table of
tests/fixtures/tokenizer/vocab/ with SD 1.x's and SD 2.x's special tokens, loaded by
transformers 5's CLIPTokenizer and saved with `save_pretrained`. It then loads each saved
folder again and checks that it tokenizes every prompt of make_tokenizer_fixtures.py exactly as
expected.json's fast rows say, so tests/tokenizer.rs can hold these folders to expected.json in
both flavors (the slow flavor reads the same vocabulary, merges and special tokens).

  /work/venv/bin/python tools/reference/make_tokenizer_json_fixtures.py
"""

import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_fixtures as base  # noqa: E402

TOKENIZER = os.path.abspath(base.FIXTURE_DIR)


def main():
    import transformers
    from transformers import CLIPTokenizer

    if int(transformers.__version__.split(".")[0]) < 5:
        sys.exit(f"transformers {transformers.__version__}: this script needs 5.x (whose tokenizers save only tokenizer.json)")
    with open(os.path.join(TOKENIZER, "expected.json"), encoding="utf-8") as f:
        expected = json.load(f)
    for name, config_dir in (("sd15", "vocab"), ("sd2", "sd2_config")):
        with tempfile.TemporaryDirectory() as tmp:
            for f in ("vocab.json", "merges.txt"):
                shutil.copy(os.path.join(TOKENIZER, "vocab", f), tmp)
            for f in ("tokenizer_config.json", "special_tokens_map.json"):
                shutil.copy(os.path.join(TOKENIZER, config_dir, f), tmp)
            out = os.path.join(TOKENIZER, f"json_{name}")
            shutil.rmtree(out, ignore_errors=True)
            CLIPTokenizer.from_pretrained(tmp).save_pretrained(out)
        files = sorted(os.listdir(out))
        assert files == ["tokenizer.json", "tokenizer_config.json"], files
        tok = CLIPTokenizer.from_pretrained(out)
        for i, (prompt, row) in enumerate(zip(base.PROMPTS, expected["cases"][f"fast_{name}"]["rows"])):
            ids = tok(prompt, add_special_tokens=False).input_ids
            assert ids == row["ids"], f"{name} prompt {i} {prompt!r}: {ids} != {row['ids']}"
            padded = base.trimmed(tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids, tok.pad_token_id)
            assert padded == row["padded77"], f"{name} prompt {i}: padded ids differ"
        size = sum(os.path.getsize(os.path.join(out, f)) for f in files)
        print(f"wrote {os.path.relpath(out)} ({size / 1024:.0f} KiB, transformers {transformers.__version__}): "
              f"{len(base.PROMPTS)} prompts as expected.json's fast_{name} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
