"""Reference token ids for revelio's CLIP tokenizer (src/models/clip/tokenizer.rs).

Writes tests/fixtures/tokenizer/:
  vocab/          a reduced vocab.json + merges.txt (original ids and merge order kept) that
                  tokenizes every test prompt exactly as the full CLIP table does, plus SD 1.x's
                  tokenizer_config.json and special_tokens_map.json (pad token <|endoftext|>)
  sd2_config/     SD 2.x's tokenizer_config.json and special_tokens_map.json (pad token "!")
  expected.json   for each prompt and each (flavor, config): the ids without special tokens and
                  the ids padded/truncated to 77 and to 16, as transformers gives them

Two flavors of Hugging Face's CLIP tokenizer are recorded, because they differ:
  slow  transformers 4.x `CLIPTokenizer` (the Python one; diffusers' SD pipelines load it from
        tokenizer/ with the pinned transformers 4.44), with ftfy NOT installed, so it normalises
        text with its BasicTokenizer
  fast  transformers 5.x `CLIPTokenizer` (backed by the tokenizers library; the same pipeline
        as 4.x's CLIPTokenizerFast except for upper-case special tokens)

Run it with the project's reference venv (transformers 5.x) and point --slow-python at a Python
that has transformers 4.x and no ftfy (a venv with `pip install "transformers==4.44.0"
"tokenizers<0.20" "huggingface_hub<1.0"`):

  /work/refvenv/bin/python tools/reference/make_tokenizer_fixtures.py \
      --slow-python /tmp/tf444venv/bin/python

The full CLIP table is built from open_clip's bpe_simple_vocab_16e6.txt.gz (shipped in the
open_clip_torch wheel) into --full-dir (default /tmp/revelio-clip-vocab). It is not committed
(1.6 MB); set REVELIO_CLIP_VOCAB_DIR to that folder to run the Rust test on the full table.
"""

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

import common

FORMAT_VERSION = 1
HINT = "re-run tools/reference/make_tokenizer_fixtures.py"
FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "tokenizer")

LONG_1 = ("a highly detailed matte painting of a medieval castle on a cliff above a stormy sea, "
          "dramatic lighting, volumetric clouds, golden hour, by greg rutkowski and thomas kinkade, "
          "trending on artstation, 8k resolution, unreal engine 5, octane render, cinematic composition, "
          "ultra wide angle lens, sharp focus, intricate details, masterpiece, award winning photograph")
LONG_2 = " ".join(["cat"] * 90)

PROMPTS = [
    "",
    "a photo of a cat",
    "A PHOTO OF A CAT",
    "Hello, World!!! How're you? I'm fine; they'd've said 'no'.",
    "it's   a\ttab\nnewline\r\ncarriage    runs",
    "   leading and trailing spaces   ",
    " \t\n\r ",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 fa\u00e7ade \u00c5ngstr\u00f6m",
    "cafe\u0301 decomposed e\u0301 a\u0308\u0301 e\u0323\u0302 o\u0302\u0323",
    "emoji \U0001F431\U0001F525 party \U0001F389\U0001F44D\U0001F3FD flags \U0001F1EB\U0001F1F7",
    "family \U0001F468\u200d\U0001F469\u200d\U0001F467 zwj and \u2764\ufe0f \u263a\ufe0e variation",
    "\u6771\u4eac\u30bf\u30ef\u30fc \u4e2d\u6587\u5b57\u7b26 \ud55c\uad6d\uc5b4 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "supplementary CJK \U00020000\U00020001 \U0002A700 compat \uf900\uf901 \U0002F800",
    "digits 12345 and 3.14159, 1,000,000 and 2nd 3rd 42nd",
    "<|endoftext|> inside text",
    "before<|startoftext|>after<|endoftext|>",
    "<|ENDOFTEXT|> upper special and <|StartOfText|>",
    "mixed<|endoftext|>!!!<|startoftext|> end",
    "hello! wow!! great!!! ! done",
    "\u03a3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2 \u039f\u0394\u039f\u03a3 \u03a3\u0391\u03a3 \u03a3 \u0391\u03a3. \u03c3\u03c2",
    "\u0130stanbul stra\u00dfe \u00df \u01c5 \ufb01 ligature \u212a kelvin \u2126 ohm \u212b angstrom",
    "control\u0000chars\u0007here\u200bzero\ufeffwidth\ufffdreplacement\u0085nel\x1cfs\x0bvt",
    "non\u00a0breaking\u2003em\u3000ideographic\u2028line\u2029para spaces",
    "punctuation... !!! ??? --- (brackets) [square] {curly} <angle> @#$%^&*_+=~`|\\/",
    "don't can't won't shouldn't y'all it's I'M YOU'RE WE'VE THEY'LL HE'D 's 'S '\u017f",
    "quotes \u2018curly\u2019 \u201cdouble\u201d \u00abguillemets\u00bb \u201elow\u201c",
    "Cyrillic: \u041c\u043e\u0441\u043a\u0432\u0430 \u041f\u0420\u0418\u0412\u0415\u0422 \u043c\u0438\u0440",
    "Arabic \u0627\u0644\u0639\u0631\u0628\u064a\u0629 Hebrew \u05e2\u05d1\u05e8\u05d9\u05ea Hindi \u0939\u093f\u0928\u094d\u0926\u0940 Thai \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",
    "math \u2211\u222b\u221a\u221e \u2248 \u2260 \u00b1 \u00d7 \u00f7 \u00b2 \u00b3 \u00bd \u00bc \u2153 \u216b \u0663\u0664",
    "fullwidth \uff21\uff22\uff23\uff11\uff12\uff13 \uff48\uff45\uff4c\uff4c\uff4f",
    "hangul jamo \u1100\u1161\u11a8 and syllable \uac01",
    "a painting of a fox in the style of Van Gogh, highly detailed, 4k, trending on artstation",
    "\uff29\u2665NY \u2665 \u2605 \u2606 \u266a \u00a9 \u00ae \u2122",
    "xyzzy qwfp zxcvbnm unusualletterruns",
    "a" * 120,
    "tab\tseparated\tvalues\nand\nlines",
    "apostrophes ''' ''s 'tis o'clock rock'n'roll",
    "devanagari \u0915\u093c nukta and \u0958 excluded",
    LONG_1,
    LONG_2,
]


def find_open_clip_bpe():
    import importlib.util
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("open_clip is not installed: pass --bpe PATH/bpe_simple_vocab_16e6.txt.gz")
    return os.path.join(list(spec.submodule_search_locations)[0], "bpe_simple_vocab_16e6.txt.gz")


def build_full_table(bpe_path, out_dir):
    """The CLIP vocab.json + merges.txt as openai/clip-vit-large-patch14 ships them: 256 byte
    tokens, their </w> forms, one token per merge (the first 48894 merges), then the two
    special tokens."""
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    byte_tokens = common.bytes_to_unicode()
    vocab = byte_tokens + [t + "</w>" for t in byte_tokens]
    vocab += ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    encoder = dict(zip(vocab, range(len(vocab))))
    assert len(encoder) == 49408, len(encoder)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(encoder, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return encoder, merges


def added(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
            "rstrip": False, "single_word": False}


def write_configs(out_dir, pad):
    """tokenizer_config.json and special_tokens_map.json as the SD 1.5 and SD 2.1 tokenizer/
    folders have them (SD 2.x names "!" as its pad token, as a plain string)."""
    pad_entry = pad if pad == "!" else added(pad)
    cfg = {"add_prefix_space": False, "bos_token": added("<|startoftext|>"), "do_lower_case": True,
           "eos_token": added("<|endoftext|>"), "errors": "replace", "model_max_length": 77,
           "name_or_path": "openai/clip-vit-large-patch14", "pad_token": pad_entry,
           "special_tokens_map_file": "./special_tokens_map.json", "tokenizer_class": "CLIPTokenizer",
           "unk_token": added("<|endoftext|>")}
    smap = {"bos_token": added("<|startoftext|>"), "eos_token": added("<|endoftext|>"),
            "pad_token": pad_entry, "unk_token": added("<|endoftext|>")}
    for entry in smap.values():
        if isinstance(entry, dict):
            entry.pop("__type")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w") as f:
        json.dump(smap, f, indent=2)


def trimmed(ids, pad_id):
    """A padded id list without its trailing pad ids (the Rust test pads it back)."""
    end = len(ids)
    while end > 0 and ids[end - 1] == pad_id:
        end -= 1
    return ids[:end]


def tokenize_all(folders):
    """Worker: ids for every prompt with the tokenizer loaded from each folder (the installed
    transformers' CLIPTokenizer), as JSON on stdout."""
    import transformers
    from transformers import CLIPTokenizer
    major = int(transformers.__version__.split(".")[0])
    if major < 5:
        try:
            import ftfy  # noqa: F401
            sys.exit("ftfy is installed in this Python: the slow CLIPTokenizer would use it instead of BasicTokenizer")
        except ImportError:
            pass
    out = {"transformers": transformers.__version__, "flavor": "slow" if major < 5 else "fast", "results": {}}
    for name, folder in folders.items():
        tok = CLIPTokenizer.from_pretrained(folder)
        if major < 5:
            assert type(tok).__module__.endswith("tokenization_clip"), type(tok)
        rows = []
        for p in PROMPTS:
            ids = tok(p, add_special_tokens=False).input_ids
            row = {"ids": ids, "tokens": tok.convert_ids_to_tokens(ids)}
            for n in (77, 16):
                padded = tok(p, padding="max_length", max_length=n, truncation=True).input_ids
                assert len(padded) == n
                row[f"padded{n}"] = trimmed(padded, tok.pad_token_id)
            rows.append(row)
        out["results"][name] = {"pad_id": tok.pad_token_id, "bos_id": tok.bos_token_id,
                                "eos_id": tok.eos_token_id, "model_max_length": tok.model_max_length,
                                "rows": rows}
    return out


def run_flavors(slow_python, folders):
    """Runs the worker here (fast) and under `slow_python` (slow)."""
    here = tokenize_all(folders)
    proc = subprocess.run([slow_python, os.path.abspath(__file__), "--worker", json.dumps(folders)],
                          check=True, capture_output=True, text=True)
    slow = json.loads(proc.stdout)
    assert here["flavor"] == "fast" and slow["flavor"] == "slow", (here["flavor"], slow["flavor"])
    return {"fast": here, "slow": slow}


def reduced_table(encoder, merges, token_lists):
    """The merges needed to build every token in token_lists (each token's creating merge, and
    recursively the merges that built its halves), in their original order, and the vocab of
    byte tokens, special tokens and those merges' results, with the original ids."""
    made_by = {}
    for rank, m in enumerate(merges):
        a, b = m.split()
        made_by.setdefault(a + b, (rank, a, b))
    need, stack = set(), [t for toks in token_lists for t in toks]
    while stack:
        t = stack.pop()
        if t in made_by and made_by[t][0] not in need:
            rank, a, b = made_by[t]
            need.add(rank)
            stack += [a, b]
    kept = [merges[r] for r in sorted(need)]
    byte_tokens = common.bytes_to_unicode()
    keep = set(byte_tokens) | {t + "</w>" for t in byte_tokens} | {"<|startoftext|>", "<|endoftext|>"}
    keep |= {"".join(m.split()) for m in kept}
    vocab = {t: i for t, i in encoder.items() if t in keep}
    return vocab, kept


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--slow-python", default=os.environ.get("REVELIO_TF4_PYTHON", "/tmp/tf444venv/bin/python"),
                    help="a Python with transformers 4.x and without ftfy")
    ap.add_argument("--bpe", help="open_clip's bpe_simple_vocab_16e6.txt.gz (default: the installed open_clip's)")
    ap.add_argument("--full-dir", default="/tmp/revelio-clip-vocab", help="where to write the full table")
    args = ap.parse_args()
    if args.worker:
        json.dump(tokenize_all(json.loads(args.worker)), sys.stdout)
        return

    encoder, merges = build_full_table(args.bpe or find_open_clip_bpe(), args.full_dir)
    with tempfile.TemporaryDirectory() as tmp:
        full = {}
        for name, pad in (("sd15", "<|endoftext|>"), ("sd2", "!")):
            full[name] = os.path.join(tmp, "full_" + name)
            shutil.copytree(args.full_dir, full[name])
            write_configs(full[name], pad)
        on_full = run_flavors(args.slow_python, full)

        token_lists = [row["tokens"] for res in on_full.values() for cfg in res["results"].values() for row in cfg["rows"]]
        vocab, kept = reduced_table(encoder, merges, token_lists)

        vocab_dir = os.path.join(FIXTURE_DIR, "vocab")
        sd2_dir = os.path.join(FIXTURE_DIR, "sd2_config")
        shutil.rmtree(vocab_dir, ignore_errors=True)
        os.makedirs(vocab_dir)
        with open(os.path.join(vocab_dir, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False, indent=0)
        with open(os.path.join(vocab_dir, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(kept) + "\n")
        write_configs(vocab_dir, "<|endoftext|>")
        write_configs(sd2_dir, "!")

        reduced = {"sd15": vocab_dir, "sd2": os.path.join(tmp, "reduced_sd2")}
        shutil.copytree(vocab_dir, reduced["sd2"])
        write_configs(reduced["sd2"], "!")
        on_reduced = run_flavors(args.slow_python, reduced)

    for flavor in ("slow", "fast"):
        for name in ("sd15", "sd2"):
            a = on_full[flavor]["results"][name]
            b = on_reduced[flavor]["results"][name]
            assert a == b, f"{flavor}/{name}: the reduced table tokenizes differently from the full one"

    expected = {
        "format_version": FORMAT_VERSION,
        "hint": HINT,
        "versions": {f: on_full[f]["transformers"] for f in ("slow", "fast")},
        "prompts": PROMPTS,
        "cases": {},
    }
    for flavor in ("slow", "fast"):
        for name in ("sd15", "sd2"):
            res = on_full[flavor]["results"][name]
            rows = [{k: row[k] for k in ("ids", "padded77", "padded16")} for row in res["rows"]]
            expected["cases"][f"{flavor}_{name}"] = {k: res[k] for k in ("pad_id", "bos_id", "eos_id", "model_max_length")}
            expected["cases"][f"{flavor}_{name}"]["rows"] = rows
    with open(os.path.join(FIXTURE_DIR, "expected.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(expected, ensure_ascii=True, separators=(",", ":")) + "\n")

    differ = [(i, p) for i, p in enumerate(PROMPTS)
              if on_full["slow"]["results"]["sd15"]["rows"][i]["ids"] != on_full["fast"]["results"]["sd15"]["rows"][i]["ids"]]
    print(f"reduced table: {len(vocab)} tokens, {len(kept)} merges; {len(PROMPTS)} prompts")
    print(f"slow and fast differ on {len(differ)} prompts: {[i for i, _ in differ]}")
    print(f"full table in {args.full_dir}: REVELIO_CLIP_VOCAB_DIR={args.full_dir} cargo test --release --test tokenizer")


if __name__ == "__main__":
    main()
