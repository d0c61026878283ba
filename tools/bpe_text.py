"""Text -> BPE pieces as WeNet's Python does it (one definition for the tools: the fixture maker's
oracle, build_tlg.py's lexicon). The engine's C++ restatement is src/u2/decode/bpe_tokenizer.h;
tests/data/bpe/cases*.tsv hold the cases both must agree on."""
import re


def wenet_pieces(sp, text, non_lang_syms):
    """WeNet's BpeTokenizer.text2tokens (wenet/text/bpe_tokenizer.py + tokenize_utils.py),
    restated: strip; with a non-language symbol list, upper-case and split at [..] <..> {..}
    (symbols in the list stay whole); each other part upper-cased, split at CJK characters
    U+4E00..U+9FFF (kept as tokens), the rest encoded by sentencepiece; whitespace-only parts
    dropped."""
    line = text.strip()
    if non_lang_syms is not None:  # WeNet: only when a symbols file is given
        parts = [p for p in re.split(r"(\[[^\[\]]+\]|<[^<>]+>|{[^{}]+})", line.upper())
                 if p.strip()]
    else:
        parts = [line]
    out = []
    for part in parts:
        if part in (non_lang_syms or ()):
            out.append(part)
            continue
        for chunk in re.split("([\u4e00-\u9fff])", part.upper()):
            if not chunk.strip():
                continue
            if re.fullmatch("[\u4e00-\u9fff]", chunk):
                out.append(chunk)
            else:
                out.extend(sp.encode_as_pieces(chunk))
    return out
