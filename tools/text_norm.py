"""Spoken-form text normalization for English transcripts: the model's units are "a-z ' space",
so everything a speaker says has to be written with those.

normalize(text) returns the spoken form, or None when the text cannot be written down with
certainty (non-speech markers such as "[beep tone]", or a number whose reading is ambiguous):

  * a trailing "[x]" that shows which symbol a spoken name stands for goes ("dollar [$]"), and so
    do remarks in parentheses ("... press pound. (simple tone sound plays)"); a text that is only
    a remark ("(4 seconds of silence)") is not speech
  * lower case; "-", "/" and the other separators become spaces; sentence punctuation goes
  * numbers of one or two digits become cardinal words ("press 9" -> "press nine");
    longer numbers and decimals are ambiguous when read aloud ("1234" is "one two three four"
    as an extension and "twelve thirty four" as a year), so the text is refused
  * "*" -> "star", "#" -> "pound" (the telephone keys), "&" -> "and", "%" -> "percent"
  * all-capital abbreviations are spelled ("PBX" -> "p b x"); a few are words ("OK")
  * a digit glued to letters is split ("3D" -> "three d")

Used by tools/fetch_real_speech.py (the Asterisk prompts) and by train/make_corpus.py (training
text with small numbers), so both write numbers the same way.
"""
import re

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
        "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SYMBOL_WORDS = {"*": " star ", "#": " pound ", "&": " and ", "%": " percent ", "+": " plus ",
                "@": " at ", "=": " equals "}
SPOKEN_ABBREVIATIONS = {"OK": "okay"}


def number_to_words(n):
    """Cardinal words of 0 <= n < 100."""
    if not 0 <= n < 100:
        raise ValueError(f"{n}: only 0..99 have one obvious reading")
    if n < 20:
        return ONES[n]
    return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])


def _spell_abbreviation(match):
    word = match.group(0)
    return " " + SPOKEN_ABBREVIATIONS.get(word, " ".join(word.lower())) + " "


def normalize(text):
    """The spoken form of text in the model's alphabet, or None if it cannot be known."""
    text = re.sub(r"\s*\[.\]$", "", text.strip())  # "dollar [$]": the name is spoken, not the symbol
    text = re.sub(r"\([^()]*\)", " ", text).strip()  # remarks: "(simple tone sound plays)"
    if not text or re.search(r"[\[\]<>]", text):  # "[beep tone]", "<beep ascending>": not speech
        return None
    if re.search(r"\d[.,:]\d|\d{3,}", text):  # decimals, times, long numbers: ambiguous reading
        return None
    for symbol, words in SYMBOL_WORDS.items():
        text = text.replace(symbol, words)
    text = re.sub(r"(?<=\d)(?=[A-Za-z])|(?<=[A-Za-z])(?=\d)", " ", text)  # "3D" -> "3 D"
    text = re.sub(r"\b[A-Z]{2,}\b", _spell_abbreviation, text)
    text = re.sub(r"\d+", lambda m: " " + number_to_words(int(m.group(0))) + " ", text)
    text = text.lower()
    text = re.sub(r"[-/_,.!?;:\"()]", " ", text)
    text = re.sub(r"(^|\s)'+|'+(\s|$)", " ", text)  # quotes, not apostrophes inside words
    if re.search(r"[^a-z' ]", text):
        return None
    words = text.split()
    return " ".join(words) if words else None
